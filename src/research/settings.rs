//! The loop's settings, valid by construction: the command line is checked once when it becomes
//! these (`cli::run_settings`), and the loop never checks them again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use super::tag::Tag;
use crate::units::Seconds;

/// Which kind of edit the agent is asked for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum ActionChoice {
    /// SEARCH/REPLACE blocks against the training file.
    Replace,
    /// Set hyperparameter constants to new values (the narrow action weak models do well).
    Set,
    /// Half of each.
    Mixed,
}

/// When the agent writes the next proposal during a training run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ThinkChoice {
    /// When the trainer runs on a GPU and the agent stays loaded beside it; never on a CPU-only
    /// build, where the agent would take the trainer's cores and change what it measures.
    Auto,
    /// Whenever the agent stays loaded, CPU-only builds too (many-core machines, tests).
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub tag: Tag,
    /// runs/<tag>: journal, results, lock, per-experiment folders, the worktree.
    pub dir: PathBuf,
    /// Training seconds per run.
    pub budget: Seconds,
    /// The hard limit on one run.
    pub timeout: Duration,
    /// Stop once the tag's journal holds this many experiments (baseline and interrupted ones
    /// not counted).
    pub max_experiments: Option<usize>,
    pub deadline: Option<Instant>,
    /// Runs of the unchanged file that measure the noise floor (at least 1).
    pub baseline_runs: usize,
    /// Most runs of one candidate (at least 1; 1 = no confirmation runs).
    pub max_runs: usize,
    /// The least improvement that can be kept, whatever the noise (zero or more).
    pub min_improvement: f64,
    /// Consecutive failures after which the agent starts over from the best file (at least 1).
    pub reset_after: usize,
    /// Proposals per experiment before it is recorded as rejected (at least 1).
    pub proposals: usize,
    /// The reply format with the controller off.
    pub action: ActionChoice,
    /// The research protocol, re-read before every proposal.
    pub program: PathBuf,
    /// The search controller picks each experiment's move (off: the fixed `action` plan).
    pub controller: bool,
    /// Hyperparameter moves take their values from the sampler (off: the agent writes them).
    pub sampler: bool,
    /// Runs whose loss falls behind the best file's are stopped early.
    pub early_stop: bool,
    /// A promising candidate is judged against the best file's latest runs, one made beside it,
    /// not against the best's value measured earlier (off: the recorded value).
    pub paired: bool,
    /// The trainer runs on a GPU (its `_GPU` constants matter, not the `_CPU` ones).
    pub gpu: bool,
    /// Candidates trained at once (1: one experiment at a time, each judged as it ends; more:
    /// rounds of this many, each candidate run once and the best that passes kept).
    pub workers: usize,
}

impl Settings {
    /// The spread of val_bpb known for this trainer's profile, which the noise floor pools with
    /// the baseline's runs: measured on the cpu profile; on a GPU, none yet.
    pub fn known_sigma(&self) -> Option<f64> {
        (!self.gpu).then_some(super::noise::CPU_SIGMA)
    }
}

/// A part of the search that can be switched off, to measure what it brings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn on(self) -> bool {
        self == Switch::On
    }
}
