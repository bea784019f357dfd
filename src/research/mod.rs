//! The research loop: propose, commit, train, judge against the noise floor, keep or discard,
//! record; forever, resumable after any interruption, with every result kept.
//!
//! `record` is the vocabulary, `journal` stores it, `history` answers every question asked of
//! it; `session` is the loop, which takes its candidates from a `sourcing::Proposer` (for real:
//! `local_agent`) and its results from a `runner::Trainer`. Above the agent, the `controller`
//! picks each experiment's move, `request` turns it into what the agent is asked, `tuning` gives
//! TUNE replies their values from the `sampler`, and `early_stop` ends runs that fall behind.

pub mod changes;
pub mod confirmation;
pub mod context;
pub mod controller;
pub mod draft;
pub mod early_stop;
pub mod git;
pub mod history;
pub mod journal;
pub mod live;
pub mod local_agent;
pub mod locate;
pub mod lock;
pub mod noise;
pub mod parallel;
pub mod pending;
pub mod plot;
pub mod progress;
pub mod record;
pub mod request;
pub mod runner;
pub mod sampler;
pub mod session;
pub mod settings;
pub mod sourcing;
pub mod stop;
pub mod tag;
pub mod tuning;

#[cfg(test)]
mod loop_tests;
#[cfg(test)]
mod moves_tests;

use std::path::PathBuf;

use crate::agent::propose::ProposeError;
use crate::trainer::TrainerError;

#[derive(Debug, thiserror::Error)]
pub enum ResearchError {
    #[error("{path} is not inside a git repository ({reason}): run inside the autoresearch checkout or pass --repo")]
    NotARepository { path: PathBuf, reason: String },
    #[error("the run's worktree has no training file at {0}: the repository must hold train/src/train.rs")]
    NoTrainFile(PathBuf),
    #[error("git: {what}: {reason}")]
    Git { what: String, reason: String },
    #[error("run tag {tag} is already being run by another autoresearch ({holder}): stop it first, or pick another --tag")]
    Locked { tag: String, holder: String },
    #[error("the journal {path} is unreadable at line {line}: it was not written by a crash (only a last line can be torn); move that line aside or pick another --tag")]
    CorruptJournal { path: PathBuf, line: usize },
    #[error("cannot write the journal {path}: free disk space, then resume with the same --tag (nothing finished is lost)")]
    JournalWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no journal in {0}: run `autoresearch run` first, or name a run with --tag")]
    NoJournal(PathBuf),
    /// The machine failed a build; the candidate stays pending and runs again on resume.
    #[error("the loop stopped: a candidate could not be built for a reason outside the training file (nothing is held against the agent; the candidate runs again when the run is resumed with the same --tag)")]
    Build(#[source] TrainerError),
    #[error("the loop stopped while the agent was proposing")]
    Propose(#[from] ProposeError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ResearchError {
    let what = what.into();
    move |source| ResearchError::Io { what, source }
}

/// The time now, as records and the live state write it.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Writes through a temporary file, fsync'd, then renamed: readers see the old or the new file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
