//! Building and running the training program: the agent-editable training file is compiled against
//! the appliance's own copy of the harness, then run as a child process whose result is read only
//! from the harness's `result.json`.

pub mod build;
pub mod gate;
pub mod run;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("training file {0} does not exist: pass an existing .rs file to --train-file")]
    MissingTrainFile(PathBuf),
    #[error("the training file {file} was refused before compiling; a training file may use only the harness's API, candle and the standard library's computation:\n{reasons}")]
    Refused { file: PathBuf, reasons: String },
    #[error("the training file {file} does not compile:\n{errors}")]
    Compile { file: PathBuf, errors: String },
    #[error("cannot run cargo to build the training program ({0}): is the Rust toolchain installed and on PATH?")]
    Cargo(String),
    #[error("--timeout must be a positive number of seconds, not {0}")]
    BadTimeout(f64),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainerError {
    let what = what.into();
    move |source| TrainerError::Io { what, source }
}
