//! The research loop: propose, commit, train, judge against the noise floor, keep or discard,
//! record; forever, resumable after any interruption, with every result kept.

pub mod draft;
pub mod git;
pub mod journal;
pub mod lock;
pub mod noise;
pub mod pending;
pub mod plot;
pub mod progress;
pub mod session;
pub mod stop;

use std::path::PathBuf;

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
    #[error("cannot write the journal {path} ({source}): free disk space, then resume with the same --tag (nothing finished is lost)")]
    JournalWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no journal in {0}: run `autoresearch run` first, or name a run with --tag")]
    NoJournal(PathBuf),
    #[error("{what}: {source}")]
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

/// Writes through a temporary file, fsync'd, then renamed: readers see the old or the new file.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
