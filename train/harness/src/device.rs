//! The device the experiment runs on, its peak throughput (for MFU) and its memory high-water mark.
//! On CPU, "peak VRAM" is the process's peak resident memory; on CUDA it is the device's peak
//! used memory sampled at every step.

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// The figure MFU is measured against, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakFlops {
    pub flops_per_second: f64,
    pub basis: String,
}

pub struct DeviceInfo {
    pub device: Device,
    pub name: String,
    pub peak: Option<PeakFlops>,
    peak_used_bytes: u64,
    /// Device memory held for the whole run so that the rest of it is a smaller card's
    /// ([`bytes_to_hold`]); not counted in the peak.
    _held: Option<candle_core::Tensor>,
    held_bytes: u64,
}

/// What to hold of a card of `total` bytes, `free` of them free now, for the run to have a card
/// of `limit_gib` GiB: the difference, or why it cannot.
pub fn bytes_to_hold(total: u64, free: u64, limit_gib: f64) -> Result<u64, String> {
    const GIB: f64 = (1u64 << 30) as f64;
    if !(limit_gib.is_finite() && limit_gib > 0.0) {
        return Err(format!("{limit_gib} GiB is not a positive size"));
    }
    let limit = (limit_gib * GIB) as u64;
    if limit >= total {
        return Err(format!(
            "the card has {:.1} GiB, not more than {limit_gib} GiB",
            total as f64 / GIB
        ));
    }
    let held = total - limit;
    if held > free {
        return Err(format!(
            "holding {:.1} GiB would need that much free; {:.1} GiB is",
            held as f64 / GIB,
            free as f64 / GIB
        ));
    }
    Ok(held)
}

impl DeviceInfo {
    /// CUDA device 0 when this build has CUDA and a GPU is present, else the CPU. With
    /// `gpu_memory_gib`, the run behaves as on a card of that size: the harness holds the rest of
    /// the device's memory (a 24 GB card's setting, measured on a larger one).
    pub fn detect(gpu_memory_gib: Option<f64>) -> candle_core::Result<Self> {
        #[cfg(feature = "cuda")]
        if candle_core::utils::cuda_is_available() {
            let device = Device::new_cuda(0)?;
            let cuda = device.as_cuda_device()?;
            // SAFETY: the trainer runs every kernel on the device's one stream (candle's, which
            // the fused ops launch on too), so stream order alone keeps each buffer's uses in
            // order; cudarc's per-allocation events (a record and a wait around every launch)
            // would only add host work to every kernel.
            unsafe { cuda.disable_event_tracking() };
            let context = cuda.cuda_stream().context().clone();
            if let Err(e) = keep_freed_memory(&context) {
                // Where the device has no memory pools, cudarc allocates without one.
                eprintln!("note: the CUDA memory pool's release threshold stays as it is: {e}");
            }
            let mut name = context
                .name()
                .unwrap_or_else(|_| "unknown CUDA device".into());
            let peak = gpu_peak_bf16(&name);
            let (held, held_bytes) = match gpu_memory_gib {
                Some(gib) => {
                    let (free, total) = context.mem_get_info().map_err(candle_core::Error::wrap)?;
                    let bytes = bytes_to_hold(total as u64, free as u64, gib).map_err(|why| {
                        candle_core::Error::Msg(format!("cannot run as a {gib} GiB card: {why}"))
                    })?;
                    name = format!("{name} (as a {gib} GiB card)");
                    let held = candle_core::Tensor::zeros(
                        bytes as usize,
                        candle_core::DType::U8,
                        &device,
                    )?;
                    (Some(held), bytes)
                }
                None => (None, 0),
            };
            return Ok(Self {
                device,
                name,
                peak,
                peak_used_bytes: 0,
                _held: held,
                held_bytes,
            });
        }
        if gpu_memory_gib.is_some() {
            candle_core::bail!(
                "AUTORESEARCH_GPU_MEMORY_GIB limits a GPU's memory, but the run is on the CPU: \
                 unset it"
            );
        }
        let (name, peak) = cpu_peak_f32();
        Ok(Self {
            device: Device::Cpu,
            name,
            peak: Some(peak),
            peak_used_bytes: 0,
            _held: None,
            held_bytes: 0,
        })
    }

    /// Records the current memory use; called once per training step.
    pub fn sample_memory(&mut self) {
        if let Some(used) = self.used_bytes() {
            self.peak_used_bytes = self.peak_used_bytes.max(used);
        }
    }

    fn used_bytes(&self) -> Option<u64> {
        match &self.device {
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => {
                let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
                Some((total - free) as u64)
            }
            _ => None,
        }
    }

    /// Peak memory in MiB: device memory on a GPU (without what the harness holds), peak resident
    /// set on the CPU.
    pub fn peak_memory_mb(&mut self) -> f64 {
        self.sample_memory();
        match self.device {
            Device::Cpu => process_peak_rss_kb().unwrap_or(0) as f64 / 1024.0,
            _ => self.peak_used_bytes.saturating_sub(self.held_bytes) as f64 / (1024.0 * 1024.0),
        }
    }
}

/// candle allocates from the device's default stream-ordered memory pool, which by default
/// gives every freed byte back to the driver at each synchronisation (once per step here, when
/// the loss is read): the next step then maps all of its memory afresh, and the per-step memory
/// samples, taken after that synchronisation, would miss the step's peak. Keeping freed memory
/// in the pool (as PyTorch's caching allocator does) fixes both; the process gives it all back
/// when it exits.
#[cfg(feature = "cuda")]
fn keep_freed_memory(
    context: &candle_core::cuda::cudarc::driver::CudaContext,
) -> candle_core::Result<()> {
    use candle_core::cuda::cudarc::driver::{result, sys};
    let mut threshold = u64::MAX;
    // SAFETY: the device comes from a live context, and the release threshold attribute takes
    // a u64, which `threshold` is.
    unsafe {
        let pool = result::device::get_default_mem_pool(context.cu_device())
            .map_err(candle_core::Error::wrap)?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            &mut threshold as *mut u64 as *mut std::ffi::c_void,
        )
        .map_err(candle_core::Error::wrap)
    }
}

/// Gives the memory that freed tensors left in the device's pool back to the driver (after the
/// stream finishes its frees), so that the memory in use reads as what live tensors hold. For
/// after a probe that ran out of memory: [`keep_freed_memory`] would keep the whole card
/// reserved. Nothing to do on the CPU; where the device has no memory pool there is nothing to
/// trim, and a failed trim only costs the peak's accuracy, so it is a note, not an error.
pub fn release_cached_memory(device: &Device) -> candle_core::Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            use candle_core::cuda::cudarc::driver::result;
            device.synchronize()?;
            let context = d.cuda_stream().context().clone();
            // SAFETY: the pool is the live device's default pool; trimming only returns memory
            // no allocation holds.
            let trimmed = unsafe {
                result::device::get_default_mem_pool(context.cu_device())
                    .and_then(|pool| result::mem_pool::trim_to(pool, 0))
            };
            if let Err(e) = trimmed {
                eprintln!(
                    "note: the CUDA memory pool was not trimmed ({e}): the peak may read high"
                );
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts where both exist).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn gpu_peak_bf16(name: &str) -> Option<PeakFlops> {
    let table: [(&str, f64); 8] = [
        ("H200", 989.5e12),
        ("H100", 989.5e12),
        ("GH200", 989.5e12),
        ("A100", 312e12),
        ("L40S", 362.1e12),
        ("L4", 121e12),
        ("RTX 4090", 165.2e12),
        ("RTX 3090", 71e12),
    ];
    table
        .iter()
        .find(|(key, _)| name.contains(key))
        .map(|(key, flops)| PeakFlops {
            flops_per_second: *flops,
            basis: format!(
                "{key} dense bf16 data-sheet peak, {:.1} TFLOP/s",
                flops / 1e12
            ),
        })
}

/// An estimate of the CPU's f32 peak: cores x clock x FLOPs per cycle of its widest FMA units.
fn cpu_peak_f32() -> (String, PeakFlops) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let mhz: f64 = field("cpu MHz")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000.0);
    let (per_cycle, isa) = flops_per_cycle(
        &field("flags").unwrap_or_default(),
        field("vendor_id").as_deref(),
        field("cpu family").and_then(|v| v.parse().ok()),
    );
    let flops = cores as f64 * mhz * 1e6 * per_cycle;
    let basis = format!(
        "estimated CPU f32 peak: {cores} cores x {:.2} GHz x {per_cycle} FLOP/cycle ({isa}) = {:.1} GFLOP/s",
        mhz / 1000.0,
        flops / 1e9
    );
    (
        format!("{model} ({cores} cores)"),
        PeakFlops {
            flops_per_second: flops,
            basis,
        },
    )
}

/// f32 FLOPs per cycle and core of the widest FMA units `flags` name: two units, 2 FLOPs per lane.
/// AMD's Zen 4 (family 25, as Zen 3) runs AVX-512 on 256-bit units, so it peaks as AVX2 does;
/// counting 512-bit lanes there would halve every MFU it reports.
fn flops_per_cycle(flags: &str, vendor: Option<&str>, family: Option<u32>) -> (f64, &'static str) {
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let amd_256_bit = vendor == Some("AuthenticAMD") && family.is_some_and(|f| f <= 25);
    if has("avx512f") && !amd_256_bit {
        (64.0, "AVX-512+FMA")
    } else if has("avx512f") {
        (32.0, "AVX-512+FMA on 256-bit units")
    } else if has("avx2") && has("fma") {
        (32.0, "AVX2+FMA")
    } else {
        (8.0, "SSE")
    }
}

fn process_peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_peak_counts_the_fma_units_width_not_the_instruction_sets() {
        let avx512 = "fpu sse2 avx avx2 fma avx512f avx512bw";
        assert_eq!(
            flops_per_cycle(avx512, Some("GenuineIntel"), Some(6)),
            (64.0, "AVX-512+FMA")
        );
        // Zen 4 (family 25) splits 512-bit work over 256-bit units; Zen 5 (26) has 512-bit ones.
        assert_eq!(
            flops_per_cycle(avx512, Some("AuthenticAMD"), Some(25)),
            (32.0, "AVX-512+FMA on 256-bit units")
        );
        assert_eq!(
            flops_per_cycle(avx512, Some("AuthenticAMD"), Some(26)),
            (64.0, "AVX-512+FMA")
        );
        assert_eq!(
            flops_per_cycle("sse2 avx avx2 fma", Some("AuthenticAMD"), Some(25)),
            (32.0, "AVX2+FMA")
        );
        assert_eq!(flops_per_cycle("sse2", None, None), (8.0, "SSE"));
    }

    #[test]
    fn a_smaller_card_holds_the_difference() {
        // An H200's 139.8 GiB as a 24 GiB card, with the context's half GiB already in use.
        let total = 1398 * GIB / 10;
        let held = bytes_to_hold(total, total - GIB / 2, 24.0).unwrap();
        assert_eq!(held, total - 24 * GIB);
    }

    #[test]
    fn a_limit_the_card_cannot_give_is_refused_with_the_reason() {
        let total = 24 * GIB;
        assert_eq!(
            bytes_to_hold(total, total, 24.0).unwrap_err(),
            "the card has 24.0 GiB, not more than 24 GiB"
        );
        assert_eq!(
            bytes_to_hold(80 * GIB, 40 * GIB, 24.0).unwrap_err(),
            "holding 56.0 GiB would need that much free; 40.0 GiB is"
        );
        for bad in [0.0, -3.0, f64::NAN] {
            assert!(bytes_to_hold(total, total, bad)
                .unwrap_err()
                .contains("is not a positive size"));
        }
    }

    #[test]
    fn a_memory_limit_on_the_cpu_is_an_error() {
        #[cfg(feature = "cuda")]
        if candle_core::utils::cuda_is_available() {
            return;
        }
        let err = DeviceInfo::detect(Some(24.0)).err().unwrap();
        assert!(err.to_string().contains("the run is on the CPU"), "{err}");
    }
}
