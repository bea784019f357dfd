//! The scheduler at work: it owns the agent's model and the device's readings, decides before
//! each training run where the agent goes, acts, and puts the agent back afterwards, recording
//! what it saw and how long each move took.

use serde::{Deserialize, Serialize};

use super::memory::{Device, Kind, Reading};
use super::policy::{decide, Decision, Inputs, Plan};
use super::resident::ResidentAgent;
use super::{SchedulerError, MIB};

/// How many times slower a layer of the agent runs on the CPU than on the GPU (a planning
/// figure; the exact ratio depends on the card and the CPU).
const OFFLOAD_SLOWDOWN: f64 = 8.0;
/// Memory that may stay with the process after an unload (allocator caches, other work).
const RETURN_TOLERANCE: u64 = 64 * MIB;

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
    pub kept_after_unload: Option<u64>,
}

pub struct DeviceOwner {
    pub device: Device,
    pub agent: ResidentAgent,
    budget: Option<u64>,
    before_load: Reading,
    trainer_peak: Option<u64>,
    proposal_seconds: f64,
}

impl DeviceOwner {
    /// `before_load` is the device read before the agent was loaded.
    pub fn new(
        device: Device,
        agent: ResidentAgent,
        budget: Option<u64>,
        before_load: Reading,
    ) -> Self {
        DeviceOwner {
            device,
            agent,
            budget,
            before_load,
            trainer_peak: None,
            proposal_seconds: 30.0,
        }
    }

    /// The trainer's peak in its latest run, in bytes: the next decision plans for it.
    pub fn note_trainer_peak(&mut self, bytes: u64) {
        self.trainer_peak = Some(bytes);
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
            (false, _) => 0,
            (true, Kind::HostRam) => weights,
            (true, Kind::Gpu) => {
                let share = self.agent.layers_loaded().min(self.agent.n_layers()) as f64
                    / self.agent.n_layers().max(1) as f64;
                (weights as f64 * share) as u64
            }
        };
        let free = before.free + on_device;
        let capacity = self.budget.map_or(free, |b| b.min(free));
        let decision = decide(&Inputs {
            capacity,
            agent_weights: self.agent.weights_bytes(),
            agent_context: self.agent.context_bytes(),
            agent_layers: self.agent.n_layers(),
            trainer_peak: self.trainer_peak,
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
                let kept = self
                    .device
                    .used(&after)
                    .saturating_sub(self.device.used(&self.before_load));
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
    pub fn trainer_share(&self, reported_peak: u64, schedule: &Schedule) -> u64 {
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
