//! Where the agent lives while a training run uses the device: a pure decision over figures, so
//! it can be tested on any machine against simulated devices.

use serde::{Deserialize, Serialize};

use crate::units::Bytes;

/// The trainer's expected peak is padded by this fraction, and by at least `SAFETY_MIN`.
pub const SAFETY_FRACTION: f64 = 0.10;
pub const SAFETY_MIN: Bytes = Bytes::mib(256);

#[derive(Debug, Clone)]
pub struct Inputs {
    /// What the product may use: the device's free memory with the agent unloaded, capped by
    /// `--vram-budget`.
    pub capacity: Bytes,
    pub agent_weights: Bytes,
    pub agent_context: Bytes,
    pub agent_layers: u32,
    /// The trainer's peak in its last run; None before the first one.
    pub trainer_peak: Option<Bytes>,
    /// Whether some layers can run off the device (a GPU; not host RAM).
    pub can_offload: bool,
    /// Seconds to load the agent again after an eviction.
    pub reload_seconds: f64,
    /// Seconds the agent spends per experiment with every layer on the device.
    pub proposal_seconds: f64,
    /// How many times slower a layer runs off the device.
    pub offload_slowdown: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "plan")]
pub enum Plan {
    /// The agent stays on the device beside the trainer.
    Resident,
    /// `gpu_layers` of the agent's layers stay on the device, the rest run on the CPU.
    PartialOffload { gpu_layers: u32 },
    /// The agent leaves the device during the run and is loaded again after it.
    Evict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub plan: Plan,
    pub reason: String,
    /// The trainer's expected peak with the safety margin.
    pub trainer_need: Option<Bytes>,
    pub agent_total: Bytes,
    pub capacity: Bytes,
}

impl Plan {
    pub fn is_resident(self) -> bool {
        self == Plan::Resident
    }
}

pub fn decide(i: &Inputs) -> Decision {
    let agent_total = i.agent_weights + i.agent_context;
    let decision = |plan, reason: String, need| Decision {
        plan,
        reason,
        trainer_need: need,
        agent_total,
        capacity: i.capacity,
    };
    let Some(peak) = i.trainer_peak else {
        return decision(
            Plan::Evict,
            "the trainer's peak is not known yet: its first run has the device to itself".into(),
            None,
        );
    };
    let need = peak + peak.scaled(SAFETY_FRACTION).max(SAFETY_MIN);
    let mib = Bytes::whole_mib;
    if need + agent_total <= i.capacity {
        return decision(
            Plan::Resident,
            format!(
                "trainer {} MiB (with margin) + agent {} MiB fit in {} MiB",
                mib(need),
                mib(agent_total),
                mib(i.capacity)
            ),
            Some(need),
        );
    }
    if need >= i.capacity {
        return decision(
            Plan::Evict,
            format!(
                "the trainer alone needs {} MiB (with margin) of {} MiB",
                mib(need),
                mib(i.capacity)
            ),
            Some(need),
        );
    }
    let per_layer = agent_total.0.div_ceil(i.agent_layers.max(1) as u64).max(1);
    let fit = (((i.capacity - need).0 / per_layer) as u32).min(i.agent_layers);
    if !i.can_offload || fit == 0 {
        return decision(
            Plan::Evict,
            format!(
                "trainer {} MiB + agent {} MiB exceed {} MiB",
                mib(need),
                mib(agent_total),
                mib(i.capacity)
            ),
            Some(need),
        );
    }
    // Running the rest on the CPU costs time on every proposal; evicting costs one reload.
    let off = 1.0 - fit as f64 / i.agent_layers.max(1) as f64;
    let offload_cost = i.proposal_seconds * off * (i.offload_slowdown - 1.0);
    if offload_cost < i.reload_seconds {
        decision(
            Plan::PartialOffload { gpu_layers: fit },
            format!(
                "{fit} of {} layers fit beside the trainer; the rest on the CPU costs ~{offload_cost:.1}s, a reload {:.1}s",
                i.agent_layers, i.reload_seconds
            ),
            Some(need),
        )
    } else {
        decision(
            Plan::Evict,
            format!(
                "only {fit} of {} layers fit beside the trainer; the rest on the CPU would cost ~{offload_cost:.1}s, a reload {:.1}s",
                i.agent_layers, i.reload_seconds
            ),
            Some(need),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn gib(n: u64) -> Bytes {
        Bytes::mib(n * 1024)
    }

    /// An 80 GiB card with a 1.5B-parameter agent at Q8 (1.6 GiB + 0.5 GiB of context, 28 layers).
    fn h100(trainer_peak: Option<Bytes>) -> Inputs {
        Inputs {
            capacity: gib(79),
            agent_weights: Bytes::mib(1_600),
            agent_context: Bytes::mib(512),
            agent_layers: 28,
            trainer_peak,
            can_offload: true,
            reload_seconds: 3.0,
            proposal_seconds: 20.0,
            offload_slowdown: 8.0,
        }
    }

    #[test]
    fn the_first_run_has_the_device_to_itself() {
        assert_eq!(decide(&h100(None)).plan, Plan::Evict);
    }

    #[test]
    fn the_agent_stays_when_both_fit_with_margin() {
        let d = decide(&h100(Some(gib(45))));
        assert_eq!(d.plan, Plan::Resident, "{}", d.reason);
        assert_eq!(d.trainer_need, Some(Bytes(gib(45).0 + gib(45).0 / 10)));
    }

    #[test]
    fn the_agent_is_evicted_when_the_trainer_needs_the_room() {
        // 75 GiB + 10% leaves nothing for the agent.
        let d = decide(&h100(Some(gib(75))));
        assert_eq!(d.plan, Plan::Evict, "{}", d.reason);
        assert!(d.reason.contains("the trainer alone needs"));
    }

    #[test]
    fn most_layers_stay_when_a_few_do_not_fit_and_offloading_is_cheaper() {
        // Need = 70 + 7 = 77 GiB, 2 GiB left: 27 of 28 layers (75.4 MiB each) fit.
        let mut inputs = h100(Some(gib(70)));
        inputs.reload_seconds = 10.0;
        let d = decide(&inputs);
        assert_eq!(
            d.plan,
            Plan::PartialOffload { gpu_layers: 27 },
            "{}",
            d.reason
        );
        // A fast reload makes eviction the better deal.
        inputs.reload_seconds = 1.0;
        assert_eq!(decide(&inputs).plan, Plan::Evict);
    }

    #[test]
    fn the_budget_cap_and_host_ram_rules() {
        let mut inputs = h100(Some(gib(45)));
        // --vram-budget 50 GiB: the trainer (49.5 GiB with margin) fits, the agent no longer does.
        inputs.capacity = gib(50);
        inputs.can_offload = false;
        let d = decide(&inputs);
        assert_eq!(d.plan, Plan::Evict, "{}", d.reason);
        assert!(d.reason.contains("exceed"));
        // Host RAM never splits the agent: resident or evicted.
        inputs.capacity = gib(60);
        assert_eq!(decide(&inputs).plan, Plan::Resident);
        // The margin is at least 256 MiB, even for a tiny trainer.
        let tiny = Inputs {
            capacity: Bytes::mib(600),
            trainer_peak: Some(Bytes::mib(100)),
            ..inputs
        };
        assert_eq!(decide(&tiny).trainer_need, Some(Bytes::mib(356)));
        assert_eq!(decide(&tiny).plan, Plan::Evict);
    }
}
