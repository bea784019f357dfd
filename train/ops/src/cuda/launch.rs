//! What every CUDA op needs: the kernels' PTX modules, the entry point for a dtype, views of
//! contiguous inputs (as custom-op storages or as tensors read by a backward), new buffers
//! wrapped as tensors, and the launch geometries the kernels are written for.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaView, DeviceRepr, LaunchConfig,
};
use candle_core::cuda_backend::CudaDType;
use candle_core::op::BackpropOp;
use candle_core::{bail, CudaDevice, CudaStorage, DType, Device, Layout, Result, Shape, Storage};
use candle_core::{StorageRef, Tensor};

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// One kernel file's PTX, loaded as a module the first time a device needs it.
#[derive(Clone, Copy)]
pub(crate) struct Module {
    /// The module's name in candle's per-device cache (unique across the process).
    name: &'static str,
    ptx: &'static str,
}

/// The modules, one per kernel file, named after it.
macro_rules! modules {
    ($($file:ident),*) => {
        $(const $file: Module = Module {
            name: concat!("autoresearch_ops_", stringify!($file)),
            ptx: ptx::$file,
        };)*
    };
}

modules!(
    ATTENTION,
    CROSS_ENTROPY,
    ELEMENTWISE,
    EMBEDDING,
    FLASH,
    GATE,
    NORM,
    OPTIM,
    ROPE
);

/// A kernel: its file's module, the name of its entry points without the dtype suffix, and the
/// dtypes it is instantiated for.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    module: Module,
    name: &'static str,
    suffixes: &'static [&'static str],
}

const BOTH: &[&str] = &["f32", "bf16"];
const BF16: &[&str] = &["bf16"];

macro_rules! kernels {
    ($($id:ident = $module:ident :: $name:literal for $suffixes:expr;)*) => {
        $(pub(crate) const $id: Kernel = Kernel { module: $module, name: $name, suffixes: $suffixes };)*
        /// Every kernel the ops launch.
        #[cfg(test)]
        pub(crate) const ALL: &[Kernel] = &[$($id),*];
    };
}

kernels! {
    WINDOW_SOFTMAX_FWD = ATTENTION::"window_softmax_fwd" for BOTH;
    WINDOW_SOFTMAX_BWD = ATTENTION::"window_softmax_bwd" for BOTH;
    SOFTCAP_CE_FWD = CROSS_ENTROPY::"softcap_ce_fwd" for BOTH;
    SOFTCAP_CE_BWD = CROSS_ENTROPY::"softcap_ce_bwd" for BOTH;
    RELU_SQ_FWD = ELEMENTWISE::"relu_sq_fwd" for BOTH;
    RELU_SQ_BWD = ELEMENTWISE::"relu_sq_bwd" for BOTH;
    EMBEDDING_FWD = EMBEDDING::"embedding_fwd" for &["f32"];
    EMBEDDING_BWD = EMBEDDING::"embedding_bwd" for &["f32"];
    FLASH_FWD_HD64 = FLASH::"flash_fwd_hd64" for BF16;
    FLASH_FWD_HD128 = FLASH::"flash_fwd_hd128" for BF16;
    FLASH_DELTA = FLASH::"flash_delta" for BF16;
    FLASH_DKDV_HD64 = FLASH::"flash_dkdv_hd64" for BF16;
    FLASH_DKDV_HD128 = FLASH::"flash_dkdv_hd128" for BF16;
    FLASH_DQ_HD64 = FLASH::"flash_dq_hd64" for BF16;
    FLASH_DQ_HD128 = FLASH::"flash_dq_hd128" for BF16;
    GATE_MIX_FWD = GATE::"gate_mix_fwd" for BOTH;
    GATE_MIX_BWD = GATE::"gate_mix_bwd" for BOTH;
    ADAMW = OPTIM::"adamw" for &["f32"];
    RMS_NORM_FWD = NORM::"rms_norm_fwd" for BOTH;
    RMS_NORM_BWD = NORM::"rms_norm_bwd" for BOTH;
    LAMBDA_MIX_FWD = NORM::"lambda_mix_fwd" for BOTH;
    LAMBDA_MIX_BWD = NORM::"lambda_mix_bwd" for BOTH;
    ROPE_NORM_FWD = ROPE::"rope_norm_fwd" for BOTH;
    ROPE_NORM_BWD = ROPE::"rope_norm_bwd" for BOTH;
}

#[cfg(test)]
impl Kernel {
    /// The entry points' names, as the PTX declares them.
    pub(crate) fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.suffixes.iter().map(|s| format!("{}_{s}", self.name))
    }

    /// The PTX of the kernel's file.
    pub(crate) fn ptx(&self) -> &'static str {
        self.module.ptx
    }
}

/// An element type the kernels are instantiated for, with the suffix of its entry points.
pub(crate) trait Elem: CudaDType + DeviceRepr {
    const SUFFIX: &'static str;
}

impl Elem for f32 {
    const SUFFIX: &'static str = "f32";
}

impl Elem for half::bf16 {
    const SUFFIX: &'static str = "bf16";
}

/// Calls `$run::<T>(args)` with `T` the element type of `$dtype` (f32 or bf16).
macro_rules! by_dtype {
    ($op:expr, $dtype:expr, $run:ident($($arg:expr),* $(,)?)) => {
        match $dtype {
            candle_core::DType::F32 => $run::<f32>($($arg),*),
            candle_core::DType::BF16 => $run::<half::bf16>($($arg),*),
            other => candle_core::bail!("{}: f32 or bf16 tensors only, got {other:?}", $op),
        }
    };
}
pub(crate) use by_dtype;

/// The entry point of `kernel` for `T`, to launch on `dev.cuda_stream()` (candle's stream).
pub(crate) fn function<T: Elem>(dev: &CudaDevice, kernel: Kernel) -> Result<CudaFunction> {
    let name = format!("{}_{}", kernel.name, T::SUFFIX);
    if !kernel.suffixes.contains(&T::SUFFIX) {
        bail!("{}: no {} kernel", kernel.name, T::SUFFIX);
    }
    let module = kernel.module;
    Ok(dev
        .get_or_load_custom_func(&name, module.name, module.ptx)?
        .into_cuda_function())
}

/// The contiguous elements of a custom-op input (values, or u32 ids and targets).
pub(crate) fn view<'a, T: CudaDType>(
    op: &str,
    storage: &'a CudaStorage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{op}: contiguous tensors only");
    };
    Ok(storage.as_cuda_slice::<T>()?.slice(start..end))
}

/// A read lock on a contiguous CUDA tensor's storage, for the backward passes (which get
/// tensors, not storages).
pub(crate) struct Read<'a> {
    storage: StorageRef<'a>,
    layout: &'a Layout,
    op: &'static str,
}

impl<'a> Read<'a> {
    /// Locks `t`, which must be contiguous (call `.contiguous()` first).
    pub(crate) fn new(op: &'static str, t: &'a Tensor) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        Ok(Self {
            storage,
            layout,
            op,
        })
    }

    fn cuda(&self) -> Result<&CudaStorage> {
        match &*self.storage {
            Storage::Cuda(s) => Ok(s),
            _ => bail!("{}: CUDA tensors only", self.op),
        }
    }

    /// The elements, as `T` (values, or u32 ids and targets).
    pub(crate) fn view<T: CudaDType>(&self) -> Result<CudaView<'_, T>> {
        view(self.op, self.cuda()?, self.layout)
    }

    /// The device the tensor lives on.
    pub(crate) fn device(&self) -> Result<CudaDevice> {
        Ok(self.cuda()?.device().clone())
    }
}

/// A copy of a CUDA tensor's elements, as a custom op's output: for ops whose result was
/// computed with tensor ops before the op that carries its backward runs. The tensor must start
/// its storage and be contiguous (candle copies the whole buffer, whatever the layout).
pub(crate) fn stored(t: &Tensor) -> Result<CudaStorage> {
    let (s, layout) = t.storage_and_layout();
    if layout.contiguous_offsets().map(|(start, _)| start) != Some(0) {
        bail!("stored: a contiguous tensor at the start of its storage was expected");
    }
    match &*s {
        Storage::Cuda(s) => s.try_clone(layout),
        _ => bail!("stored: a CUDA tensor was expected"),
    }
}

/// A buffer of `len` elements, uninitialised: every kernel here writes all of its output.
pub(crate) fn output<T: DeviceRepr>(dev: &CudaDevice, len: usize) -> Result<CudaSlice<T>> {
    // SAFETY: the launch that follows writes every element before anything reads it.
    unsafe { dev.alloc::<T>(len) }
}

/// A custom-op output storage around `slice`.
pub(crate) fn storage<T: Elem>(slice: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// A tensor of `shape` around `slice`, outside the graph (saved state, gradients).
pub(crate) fn tensor<T: Elem>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
    shape: impl Into<Shape>,
) -> Tensor {
    Tensor::from_storage(
        Storage::Cuda(storage(slice, dev)),
        shape,
        BackpropOp::none(),
        false,
    )
}

/// Threads per block of every kernel (a multiple of 32, as the block reductions need).
const THREADS: u32 = 256;

/// `blocks` blocks (at least one) of `THREADS` threads.
fn blocks(blocks: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A grid-stride loop over `n` elements.
pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    blocks(n.div_ceil(THREADS as usize).min(1 << 16))
}

/// A grid-stride loop over `n` elements whose blocks each add into one shared total (an atomic
/// per block): a few blocks per SM, so the atomics do not queue up.
pub(crate) fn reduction(n: usize) -> LaunchConfig {
    blocks(n.div_ceil(THREADS as usize).min(1024))
}

/// One warp per row.
pub(crate) fn warp_per_row(rows: usize) -> LaunchConfig {
    blocks(rows.div_ceil(THREADS as usize / 32))
}

/// One block per row.
pub(crate) fn block_per_row(rows: usize) -> LaunchConfig {
    blocks(rows)
}

/// The `cpu_fwd` of a custom op with 1, 2 or 3 inputs that exists for CUDA tensors only (the
/// public functions send CPU tensors to the CPU code): an error, never reached through them.
macro_rules! cpu_fwd_cuda_only {
    (@error $self:ident) => {
        candle_core::bail!("{}: the CUDA op was given CPU tensors", $self.name())
    };
    (1) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
    (2) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
    (3) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            cpu_fwd_cuda_only!(@error self)
        }
    };
}
pub(crate) use cpu_fwd_cuda_only;

/// `ids` (any shape, any integer dtype) as flat u32 on `device`, each below `bound`; otherwise
/// the error `refused(id)` names, as the CPU paths refuse them, where the kernels would only give
/// NaNs. The check is a reduction and a 4-byte read, which waits for the device's queue: once
/// per call, a few times per forward. i64 ids are checked before the cast, so a negative or
/// too-large one cannot wrap into range.
pub(crate) fn ids_below(
    ids: &Tensor,
    bound: usize,
    device: &Device,
    refused: impl FnOnce(i64) -> String,
) -> Result<Tensor> {
    let ids = ids.flatten_all()?.to_device(device)?;
    if ids.elem_count() > 0 {
        // The scalar comes to the host first: the cast there serves every integer dtype.
        let as_i64 = |t: Tensor| {
            t.to_device(&Device::Cpu)?
                .to_dtype(DType::I64)?
                .to_scalar::<i64>()
        };
        let smallest = match ids.dtype() {
            DType::I64 => as_i64(ids.min_all()?)?,
            _ => 0,
        };
        let largest = as_i64(ids.max_all()?)?;
        for id in [smallest, largest] {
            if id < 0 || id as u64 >= bound as u64 {
                bail!("{}", refused(id));
            }
        }
    }
    ids.to_dtype(DType::U32)
}

/// `n` as the kernels' `int`, refusing sizes past its range.
pub(crate) fn int(op: &str, n: usize) -> Result<i32> {
    match i32::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => bail!("{op}: a size of {n} exceeds the kernels' 32-bit range"),
    }
}

/// Launches the function `$f` on `$dev`'s stream (candle's) with geometry `$cfg` and the
/// arguments in order (values by reference, buffers as views or `&mut` slices).
///
/// Unsafe to call: the arguments must match the kernel's parameters in order and type, and every
/// buffer must hold what the kernel reads and writes at that geometry.
macro_rules! launch {
    ($dev:expr, $f:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
        use candle_core::cuda_backend::WrapErr;
        let stream = $dev.cuda_stream();
        let mut builder = stream.launch_builder(&$f);
        $( builder.arg($arg); )+
        builder.launch($cfg).map(|_| ()).w()
    }};
}
pub(crate) use launch;
