//! Memory readings of the device the experiments run on: an NVIDIA GPU through NVML (the
//! driver's management library, loaded at run time, so a build or a machine without it needs
//! nothing), or the host's RAM through sysinfo. Each reading also carries this process's own
//! resident memory, which is what loading and unloading the agent changes on the CPU path
//! (mapped weights count as cache, not as used memory, in the system's figures).

use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::SchedulerError;
use crate::units::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gpu,
    HostRam,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub total: Bytes,
    pub free: Bytes,
    /// This process's resident memory.
    pub own_rss: Bytes,
}

/// Where readings come from: NVML, sysinfo, or a test's script.
pub trait Gauge: Send {
    fn read(&mut self) -> Result<Reading, String>;
}

pub struct Device {
    pub name: String,
    pub kind: Kind,
    gauge: Box<dyn Gauge>,
}

impl Device {
    /// The first NVIDIA GPU in CUDA builds when NVML answers, else host RAM.
    pub fn detect() -> Self {
        if cfg!(feature = "cuda") {
            if let Ok((gauge, name)) = NvmlGauge::open(0) {
                return Device::new(name, Kind::Gpu, Box::new(gauge));
            }
        }
        Device::new("host RAM".into(), Kind::HostRam, Box::new(HostGauge::new()))
    }

    /// NVIDIA GPUs the driver sees in CUDA builds (0 elsewhere): with as many as the loop has
    /// workers, each worker's runs get one of their own.
    pub fn gpu_count() -> usize {
        if !cfg!(feature = "cuda") {
            return 0;
        }
        Nvml::init()
            .and_then(|nvml| nvml.device_count())
            .map_or(0, |n| n as usize)
    }

    pub fn new(name: String, kind: Kind, gauge: Box<dyn Gauge>) -> Self {
        Device { name, kind, gauge }
    }

    pub fn read(&mut self) -> Result<Reading, SchedulerError> {
        self.gauge.read().map_err(SchedulerError::Memory)
    }

    /// What moving the agent changes: the device's used memory on a GPU, this process's
    /// resident memory on the host.
    pub fn used(&self, reading: &Reading) -> Bytes {
        match self.kind {
            Kind::Gpu => reading.total - reading.free,
            Kind::HostRam => reading.own_rss,
        }
    }

    /// The part of a trainer's reported peak that was its own. On the host the trainer reports
    /// its process's peak resident set, which is its own already. On a GPU it reports the
    /// device's peak use, which also counts what was in use when it started (a resident agent,
    /// this process's CUDA context, other processes): planning the next run with that would
    /// count the agent twice, once in the peak and once beside it.
    pub fn trainer_share(&self, reported_peak: Bytes, at_start: &Reading) -> Bytes {
        match self.kind {
            Kind::HostRam => reported_peak,
            Kind::Gpu => reported_peak - self.used(at_start),
        }
    }
}

/// This process's resident memory, as sysinfo reads it.
struct OwnProcess {
    system: System,
    pid: Pid,
}

impl OwnProcess {
    fn new() -> Self {
        OwnProcess {
            system: System::new(),
            pid: Pid::from_u32(std::process::id()),
        }
    }

    fn rss(&mut self) -> Bytes {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        Bytes(self.system.process(self.pid).map_or(0, |p| p.memory()))
    }
}

/// Host RAM: total and available memory.
struct HostGauge {
    own: OwnProcess,
}

impl HostGauge {
    fn new() -> Self {
        HostGauge {
            own: OwnProcess::new(),
        }
    }
}

impl Gauge for HostGauge {
    fn read(&mut self) -> Result<Reading, String> {
        let system = &mut self.own.system;
        system.refresh_memory();
        let (total, free) = (system.total_memory(), system.available_memory());
        if total == 0 {
            return Err("the system reports no memory".into());
        }
        Ok(Reading {
            total: Bytes(total),
            free: Bytes(free),
            own_rss: self.own.rss(),
        })
    }
}

/// An NVIDIA GPU through NVML.
struct NvmlGauge {
    nvml: Nvml,
    index: u32,
    own: OwnProcess,
}

impl NvmlGauge {
    fn open(index: u32) -> Result<(Self, String), String> {
        let nvml = Nvml::init().map_err(|e| format!("NVML is not available: {e}"))?;
        let name = nvml
            .device_by_index(index)
            .and_then(|d| d.name())
            .map_err(|e| format!("NVML has no GPU {index}: {e}"))?;
        let gauge = NvmlGauge {
            nvml,
            index,
            own: OwnProcess::new(),
        };
        Ok((gauge, name))
    }
}

impl Gauge for NvmlGauge {
    fn read(&mut self) -> Result<Reading, String> {
        let memory = self
            .nvml
            .device_by_index(self.index)
            .and_then(|d| d.memory_info())
            .map_err(|e| format!("NVML cannot read GPU {}'s memory: {e}", self.index))?;
        Ok(Reading {
            total: Bytes(memory.total),
            free: Bytes(memory.free),
            own_rss: self.own.rss(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GPU whose readings a test scripts: each read takes the next one, the last repeats.
    pub struct FakeNvml(pub Vec<Reading>);

    impl Gauge for FakeNvml {
        fn read(&mut self) -> Result<Reading, String> {
            match self.0.len() {
                0 => Err("no reading scripted".into()),
                1 => Ok(self.0[0]),
                _ => Ok(self.0.remove(0)),
            }
        }
    }

    pub fn gib(n: u64) -> Bytes {
        Bytes::mib(n * 1024)
    }

    #[test]
    fn the_host_is_read_for_real() {
        let mut device = Device::detect();
        assert_eq!(device.kind, Kind::HostRam);
        let reading = device.read().unwrap();
        assert!(reading.total > reading.free && reading.free > Bytes::ZERO);
        assert!(reading.own_rss > Bytes::mib(1));
        assert_eq!(device.used(&reading), reading.own_rss);
    }

    #[test]
    fn a_trainer_on_a_gpu_is_charged_only_for_what_it_added() {
        // An 80 GiB card with 10 GiB in use when the run began (a resident agent, contexts).
        let start = Reading {
            total: gib(80),
            free: gib(70),
            own_rss: Bytes::mib(300),
        };
        let mut gpu = Device::new("GPU".into(), Kind::Gpu, Box::new(FakeNvml(vec![start])));
        let reading = gpu.read().unwrap();
        assert_eq!(gpu.used(&reading), gib(10));
        assert_eq!(gpu.trainer_share(gib(30), &reading), gib(20));
        // A peak below the start (the agent's KV cache freed during the run) is not negative.
        assert_eq!(gpu.trainer_share(gib(5), &reading), Bytes::ZERO);
        let host = Device::new("host RAM".into(), Kind::HostRam, Box::new(FakeNvml(vec![])));
        assert_eq!(host.trainer_share(gib(3), &start), gib(3));
        let mut silent = Device::new("GPU".into(), Kind::Gpu, Box::new(FakeNvml(vec![])));
        let err = silent.read().unwrap_err().to_string();
        assert!(err.contains("cannot read the device's memory"), "{err}");
    }
}
