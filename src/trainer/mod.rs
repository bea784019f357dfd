//! Building and running the training program: the agent-editable training file is compiled against
//! the appliance's own copy of the harness, then run as a child process whose result is read only
//! from the harness's `result.json`.

pub mod build;
pub mod describe;
pub mod gate;
pub mod run;

use std::path::PathBuf;

/// Why a training program could not be built or run. Only `Refused` and `Compile` are the
/// training file's fault; every other one is the machine's.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("training file {0} does not exist: pass an existing .rs file to --train-file")]
    MissingTrainFile(PathBuf),
    #[error("the training file {file} was refused before compiling; a training file may use only the harness's API, candle and the standard library's computation:\n{reasons}")]
    Refused { file: PathBuf, reasons: String },
    #[error("the training file {file} does not compile:\n{errors}")]
    Compile { file: PathBuf, errors: String },
    #[error("cargo is not on PATH (nor in CARGO): install the Rust toolchain (rustup) or put it on PATH")]
    NoCargo,
    #[error("cannot run cargo ({cargo}) to build the training program: is the Rust toolchain installed?")]
    Cargo {
        cargo: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the disk holding the build folder {target} is full ({detail}): free space there, then run again")]
    DiskFull { target: PathBuf, detail: String },
    #[error("cargo failed for a reason outside the training file:\n{detail}\ncheck the toolchain with `autoresearch doctor`, then run again")]
    Toolchain { detail: String },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster could not take the run: {0}")]
    Cluster(#[from] crate::executor::slurm::SlurmError),
}

impl TrainerError {
    /// The training file's own fault: the agent is told, and the loop goes on. Anything else
    /// ends the loop, with the fix named.
    pub fn is_agents_fault(&self) -> bool {
        matches!(
            self,
            TrainerError::Refused { .. } | TrainerError::Compile { .. }
        )
    }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainerError {
    let what = what.into();
    move |source| TrainerError::Io { what, source }
}
