//! Memory readings of the device the experiments run on: an NVIDIA GPU through `nvidia-smi`
//! (part of the driver, so no CUDA library is needed to ask), or the host's RAM from
//! `/proc/meminfo`. Each reading also carries this process's own resident memory, which is what
//! loading and unloading the agent changes on the CPU path (mapped weights count as cache, not as
//! used memory, in the system's figures).

use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{SchedulerError, MIB};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gpu,
    HostRam,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub total: u64,
    pub free: u64,
    /// This process's resident memory.
    pub own_rss: u64,
}

pub struct Device {
    pub name: String,
    pub kind: Kind,
    gpu_index: Option<u32>,
}

impl Device {
    /// The first NVIDIA GPU in CUDA builds when the driver answers, else host RAM.
    pub fn detect() -> Self {
        if cfg!(feature = "cuda") {
            if let Ok((name, _)) = query_gpu(0) {
                return Device {
                    name,
                    kind: Kind::Gpu,
                    gpu_index: Some(0),
                };
            }
        }
        Device {
            name: "host RAM".into(),
            kind: Kind::HostRam,
            gpu_index: None,
        }
    }

    /// What moving the agent changes: the device's used memory on a GPU, this process's
    /// resident memory on the host.
    pub fn used(&self, reading: &Reading) -> u64 {
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
    pub fn trainer_share(&self, reported_peak: u64, at_start: &Reading) -> u64 {
        match self.kind {
            Kind::HostRam => reported_peak,
            Kind::Gpu => reported_peak.saturating_sub(self.used(at_start)),
        }
    }

    pub fn read(&self) -> Result<Reading, SchedulerError> {
        self.read_raw().map_err(SchedulerError::Memory)
    }

    fn read_raw(&self) -> Result<Reading, String> {
        let own_rss = own_rss().unwrap_or(0);
        match self.gpu_index {
            Some(index) => {
                let (_, (total, free)) = query_gpu(index)?;
                Ok(Reading {
                    total,
                    free,
                    own_rss,
                })
            }
            None => {
                let text = std::fs::read_to_string("/proc/meminfo")
                    .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
                let (total, free) = parse_meminfo(&text)?;
                Ok(Reading {
                    total,
                    free,
                    own_rss,
                })
            }
        }
    }
}

fn query_gpu(index: u32) -> Result<(String, (u64, u64)), String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total,memory.free",
            "--format=csv,noheader,nounits",
            "-i",
            &index.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot run nvidia-smi: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nvidia-smi failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout))
}

/// `name, total MiB, free MiB` as nvidia-smi prints it in CSV without units.
pub fn parse_nvidia_smi(line: &str) -> Result<(String, (u64, u64)), String> {
    let fields: Vec<&str> = line.trim().split(',').map(str::trim).collect();
    let [name, total, free] = fields[..] else {
        return Err(format!("unexpected nvidia-smi output {line:?}"));
    };
    let mib = |v: &str| {
        v.parse::<u64>()
            .map(|m| m * MIB)
            .map_err(|_| format!("unexpected nvidia-smi figure {v:?}"))
    };
    Ok((name.to_string(), (mib(total)?, mib(free)?)))
}

/// MemTotal and MemAvailable, in bytes.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64), String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| format!("/proc/meminfo has no {key}"))
    };
    Ok((field("MemTotal:")?, field("MemAvailable:")?))
}

fn own_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_and_meminfo_are_read() {
        assert_eq!(
            parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 80824\n").unwrap(),
            (
                "NVIDIA H100 80GB HBM3".to_string(),
                (81559 * MIB, 80824 * MIB)
            )
        );
        assert!(parse_nvidia_smi("No devices were found").is_err());
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo).unwrap(),
            (24_576_000 * 1024, 20_000_000 * 1024)
        );
        // This machine's own figures, for real.
        let reading = Device::detect().read().unwrap();
        assert!(reading.total > reading.free && reading.free > 0);
        assert!(reading.own_rss > 0);
    }

    #[test]
    fn a_trainer_is_charged_only_for_what_it_added() {
        let gpu = Device {
            name: "GPU".into(),
            kind: Kind::Gpu,
            gpu_index: Some(0),
        };
        // 80 GiB card, 10 GiB in use when the run began (a resident agent, contexts).
        let start = Reading {
            total: 80 * 1024 * MIB,
            free: 70 * 1024 * MIB,
            own_rss: 0,
        };
        assert_eq!(gpu.trainer_share(30 * 1024 * MIB, &start), 20 * 1024 * MIB);
        // A peak below the start (the agent's KV cache freed during the run) is not negative.
        assert_eq!(gpu.trainer_share(5 * 1024 * MIB, &start), 0);
        let host = Device {
            name: "host RAM".into(),
            kind: Kind::HostRam,
            gpu_index: None,
        };
        assert_eq!(host.trainer_share(3 * 1024 * MIB, &start), 3 * 1024 * MIB);
    }
}
