//! The scheduler at work: it owns the agent's model and the device's readings, decides before
//! each training run where the agent goes, acts, and puts the agent back afterwards, recording
//! what it saw and how long each move took.

use serde::{Deserialize, Serialize};

use super::memory::{Device, Kind, Reading};
use super::policy::{decide, Decision, Inputs, Plan};
use super::resident::ResidentAgent;
use super::SchedulerError;
use crate::units::Bytes;

/// How many times slower a layer of the agent runs on the CPU than on the GPU (a planning
/// figure; the exact ratio depends on the card and the CPU).
const OFFLOAD_SLOWDOWN: f64 = 8.0;
/// Memory that may stay with the process after an unload (allocator caches, other work).
const RETURN_TOLERANCE: Bytes = Bytes::mib(64);

/// One training run's scheduling, for the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    pub device: String,
    pub decision: Decision,
    /// Before the agent was first loaded, before this decision, after acting on it, and after
    /// the agent was back.
    pub before_load: Reading,
    pub before: Reading,
    pub after_move: Option<Reading>,
    pub after_reload: Option<Reading>,
    /// Seconds to evict (or reload with fewer layers on the device) and to load fully again.
    pub move_seconds: Option<f64>,
    pub reload_seconds: Option<f64>,
    /// After an eviction: whether the memory went back to what it was before the load (within
    /// 64 MiB), and how much stayed above that level. On a GPU the process keeps its CUDA context
    /// after the first load (592 MiB on the H200, the same after every cycle), so `false` there
    /// is expected; growth from one eviction to the next is what would be a leak.
    pub memory_returned: Option<bool>,
    pub kept_after_unload: Option<Bytes>,
}

/// What a plan makes room for: the trainer's peak once for each run on the device at once;
/// nothing, even before the first run, when no run is on it.
fn planned_peak(peak: Option<Bytes>, runs_beside: usize) -> Option<Bytes> {
    match runs_beside {
        0 => Some(Bytes::ZERO),
        n => peak.map(|p| p.scaled(n as f64)),
    }
}

pub struct DeviceOwner {
    pub device: Device,
    pub agent: ResidentAgent,
    budget: Option<Bytes>,
    before_load: Reading,
    trainer_peak: Option<Bytes>,
    /// Training runs on this device at once: a round's workers that share it each need the
    /// trainer's peak; none when the runs go to a cluster.
    runs_beside: usize,
    proposal_seconds: f64,
}

impl DeviceOwner {
    /// `before_load` is the device read before the agent was loaded.
    pub fn new(
        device: Device,
        agent: ResidentAgent,
        budget: Option<Bytes>,
        before_load: Reading,
    ) -> Self {
        DeviceOwner {
            device,
            agent,
            budget,
            before_load,
            trainer_peak: None,
            runs_beside: 1,
            proposal_seconds: 30.0,
        }
    }

    /// How many training runs share this device at once (see `runs_beside`).
    pub fn set_runs_beside(&mut self, runs: usize) {
        self.runs_beside = runs;
    }

    /// The trainer's peak in its latest run: the next decision plans for it.
    pub fn note_trainer_peak(&mut self, peak: Bytes) {
        self.trainer_peak = Some(peak);
    }

    pub fn note_proposal_seconds(&mut self, seconds: f64) {
        if seconds > 0.0 {
            self.proposal_seconds = seconds;
        }
    }

    /// Before a training run: decides where the agent goes, and moves it.
    pub fn make_room(&mut self) -> Result<Schedule, SchedulerError> {
        let before = self.device.read()?;
        // Between proposals only the weights are held: a KV cache lives as long as a proposal's
        // session (on the H200 an eviction freed 1,566 MiB of a 1,565 MiB model). So the reading
        // is given back the weights, and a resident agent is planned with its KV cache on top,
        // which a draft written beside the run allocates.
        let weights = self.agent.weights_bytes();
        let on_device = match (self.agent.is_loaded(), self.device.kind) {
            (false, _) => Bytes::ZERO,
            (true, Kind::HostRam) => weights,
            (true, Kind::Gpu) => {
                let share = self.agent.layers_loaded().min(self.agent.n_layers()) as f64
                    / self.agent.n_layers().max(1) as f64;
                weights.scaled(share)
            }
        };
        let free = before.free + on_device;
        let capacity = self.budget.map_or(free, |b| b.min(free));
        let decision = decide(&Inputs {
            capacity,
            agent_weights: self.agent.weights_bytes(),
            agent_context: self.agent.context_bytes(),
            agent_layers: self.agent.n_layers(),
            trainer_peak: planned_peak(self.trainer_peak, self.runs_beside),
            can_offload: self.device.kind == Kind::Gpu,
            reload_seconds: self.agent.last_load_seconds,
            proposal_seconds: self.proposal_seconds,
            offload_slowdown: OFFLOAD_SLOWDOWN,
        });
        let mut schedule = Schedule {
            device: self.device.name.clone(),
            decision,
            before_load: self.before_load,
            before,
            after_move: None,
            after_reload: None,
            move_seconds: None,
            reload_seconds: None,
            memory_returned: None,
            kept_after_unload: None,
        };
        match schedule.decision.plan {
            Plan::Resident => {}
            Plan::Evict => {
                schedule.move_seconds = Some(self.agent.evict());
                let after = self.device.read()?;
                let kept = self.device.used(&after) - self.device.used(&self.before_load);
                schedule.memory_returned = Some(kept <= RETURN_TOLERANCE);
                schedule.kept_after_unload = Some(kept);
                schedule.after_move = Some(after);
            }
            Plan::PartialOffload { gpu_layers } => {
                schedule.move_seconds = Some(self.agent.reload(gpu_layers)?);
                schedule.after_move = Some(self.device.read()?);
            }
        }
        Ok(schedule)
    }

    /// The trainer's own peak memory from the peak its run reported (see `Device::trainer_share`),
    /// measured against the device as the experiment's runs found it.
    pub fn trainer_share(&self, reported_peak: Bytes, schedule: &Schedule) -> Bytes {
        let start = schedule.after_move.unwrap_or(schedule.before);
        self.device.trainer_share(reported_peak, &start)
    }

    /// After the training run: the agent back, fully.
    pub fn restore(&mut self, schedule: &mut Schedule) -> Result<(), SchedulerError> {
        if schedule.decision.plan != Plan::Resident {
            schedule.reload_seconds = Some(self.agent.reload_full()?);
            schedule.after_reload = Some(self.device.read()?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_for_every_run_on_the_device() {
        assert_eq!(planned_peak(Some(gib(10)), 1), Some(gib(10)));
        assert_eq!(planned_peak(Some(gib(10)), 2), Some(gib(20)));
        assert_eq!(planned_peak(None, 2), None);
        // Runs on a cluster: the agent never makes room, not even for a first run.
        assert_eq!(planned_peak(None, 0), Some(Bytes::ZERO));
    }
    use crate::scheduler::memory::tests::{gib, FakeNvml};

    /// The GPU path on a scripted 24 GiB card (a fake NVML), with the real default model as the
    /// agent: it stays, leaves and comes back, or stays in part, as the readings say.
    #[test]
    fn on_a_gpu_the_agent_stays_leaves_or_splits_as_the_readings_say() {
        // Every layer "on the GPU" (a CPU build of llama.cpp runs them on the CPU regardless).
        let agent = ResidentAgent::load(&crate::cli::default_model(), 99, Some(2048)).unwrap();
        let weights = agent.weights_bytes();
        let reading = |free: Bytes| Reading {
            total: gib(24),
            free,
            own_rss: Bytes::mib(400),
        };
        // 1 GiB in use before the agent (contexts, other processes).
        let before_load = reading(gib(23));
        let loaded = reading(gib(23) - weights);
        // After an unload the CUDA context stays.
        let evicted_leaving_context = reading(gib(23) - Bytes::mib(512));
        let split = reading(gib(23) - weights.scaled(0.5));
        let script = vec![
            loaded,
            before_load,
            loaded, // evict for the first run, reload
            loaded, // resident
            loaded,
            evicted_leaving_context,
            loaded, // evict for a big trainer, reload
            loaded,
            split,
            loaded, // part of the agent stays, reload fully
        ];
        let device = Device::new("Fake 24 GiB".into(), Kind::Gpu, Box::new(FakeNvml(script)));
        let mut owner = DeviceOwner::new(device, agent, None, before_load);

        let mut first = owner.make_room().unwrap();
        assert_eq!(
            first.decision.plan,
            Plan::Evict,
            "{}",
            first.decision.reason
        );
        assert_eq!(first.memory_returned, Some(true));
        assert_eq!(first.kept_after_unload, Some(Bytes::ZERO));
        owner.restore(&mut first).unwrap();
        assert!(first.reload_seconds.unwrap() > 0.0);
        assert_eq!(first.after_reload, Some(loaded));

        owner.note_trainer_peak(gib(10));
        let resident = owner.make_room().unwrap();
        assert_eq!(
            resident.decision.plan,
            Plan::Resident,
            "{}",
            resident.decision.reason
        );
        // Charged only for what it added to the device as the run found it.
        assert_eq!(owner.trainer_share(gib(12), &resident), gib(11) - weights);

        owner.note_trainer_peak(gib(22));
        let mut big = owner.make_room().unwrap();
        assert_eq!(big.decision.plan, Plan::Evict);
        assert!(
            big.decision.reason.contains("the trainer alone needs"),
            "{}",
            big.decision.reason
        );
        assert_eq!(big.memory_returned, Some(false));
        assert_eq!(big.kept_after_unload, Some(Bytes::mib(512)));
        assert_eq!(
            owner.trainer_share(gib(22), &big),
            gib(22) - gib(1) - Bytes::mib(512)
        );
        owner.restore(&mut big).unwrap();

        // Room for a few layers beside the trainer, and a reload dearer than running the rest
        // on the CPU for a quick proposal.
        let agent_total = weights + owner.agent.context_bytes();
        let room = agent_total.scaled(0.5);
        let need = gib(23) - room;
        owner.note_trainer_peak(need.scaled(1.0 / 1.1));
        owner.note_proposal_seconds(1e-6);
        let mut partial = owner.make_room().unwrap();
        assert!(
            matches!(partial.decision.plan, Plan::PartialOffload { gpu_layers } if gpu_layers > 0 && gpu_layers < owner.agent.n_layers()),
            "{:?}: {}",
            partial.decision.plan,
            partial.decision.reason
        );
        assert_eq!(partial.after_move, Some(split));
        owner.restore(&mut partial).unwrap();
        assert_eq!(partial.after_reload, Some(loaded));
        assert_eq!(owner.agent.layers_loaded(), 99);
    }
}
