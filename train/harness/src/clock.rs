//! The training clock. A run's budget is training time, and on a shared machine the wall clock
//! also counts time the hypervisor gave to someone else (steal, which this VM shows at around a
//! tenth of its time): the same file then trains a different number of steps from one run to the
//! next. On the CPU the clock takes the steal off each step (its share per CPU, from
//! `/proc/stat`, which the kernel counts for every guest); on a GPU the device does the work and
//! the wall clock stands.

use std::time::Instant;

/// What `/proc/stat` counts time in: USER_HZ, 100 on every Linux.
const TICKS_PER_SECOND: f64 = 100.0;

pub struct Clock {
    /// Take steal off (the CPU trainer).
    correct: bool,
    started: Option<(Instant, Option<Steal>)>,
    /// Steal taken off so far, in seconds.
    pub stolen_seconds: f64,
}

impl Clock {
    pub fn new(correct_for_steal: bool) -> Self {
        Clock {
            correct: correct_for_steal,
            started: None,
            stolen_seconds: 0.0,
        }
    }

    /// A step begins now, unless one has begun already.
    pub fn start(&mut self) {
        if self.started.is_none() {
            self.started = Some((Instant::now(), self.steal()));
        }
    }

    /// Ends the step begun last and begins the next: its wall seconds and its training seconds
    /// (wall less the steal during it).
    pub fn lap(&mut self) -> (f64, f64) {
        let now = Instant::now();
        let steal = self.steal();
        let (start, steal_at_start) = self.started.replace((now, steal)).unwrap_or((now, steal));
        let wall = (now - start).as_secs_f64();
        let stolen = match (steal_at_start, steal) {
            (Some(a), Some(b)) => {
                b.ticks.saturating_sub(a.ticks) as f64 / TICKS_PER_SECOND / b.cpus.max(1) as f64
            }
            _ => 0.0,
        };
        let stolen = stolen.min(wall);
        self.stolen_seconds += stolen;
        (wall, wall - stolen)
    }

    fn steal(&self) -> Option<Steal> {
        if !self.correct {
            return None;
        }
        steal(&std::fs::read_to_string("/proc/stat").ok()?)
    }
}

/// The machine's steal so far, summed over its CPUs, and how many CPUs that sum is over.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Steal {
    ticks: u64,
    cpus: usize,
}

/// The steal of `/proc/stat`: the eighth number of its `cpu` line (all the machine's CPUs,
/// whatever this process may use), and the count of its `cpuN` lines, the CPUs in that sum.
fn steal(stat: &str) -> Option<Steal> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks = line.split_whitespace().nth(8)?.parse().ok()?;
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    Some(Steal { ticks, cpus })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_read_from_the_cpu_line() {
        let stat =
            "cpu  916174 112496 154493 230244 2317 0 627 12981 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            steal(stat),
            Some(Steal {
                ticks: 12981,
                cpus: 1
            })
        );
        assert_eq!(steal("intr 1 2 3"), None);
        // This machine's, for real (a Linux without steal accounting reads 0).
        let here = steal(&std::fs::read_to_string("/proc/stat").unwrap()).unwrap();
        assert!(here.cpus >= 1);
    }

    #[test]
    fn without_correction_a_lap_is_wall_time() {
        let mut clock = Clock::new(false);
        clock.start();
        let (wall, training) = clock.lap();
        assert_eq!(training, wall);
        let mut corrected = Clock::new(true);
        corrected.start();
        let (wall, training) = corrected.lap();
        assert!(training <= wall && training >= 0.0);
    }
}
