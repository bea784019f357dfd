use std::path::PathBuf;

/// Everything that can go wrong inside the harness. Each message names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("no prepared data in {dir}: run `autoresearch prepare` (or pass the --data-dir that was prepared)")]
    NotPrepared { dir: PathBuf },
    #[error("data metadata {path} is unreadable or corrupt ({reason}): run `autoresearch prepare --force` to rebuild the data")]
    CorruptMeta { path: PathBuf, reason: String },
    #[error("data file {path} is corrupt ({reason}): run `autoresearch prepare --force` to rebuild the data")]
    CorruptData { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the time budget {0:?} is not a positive number of seconds")]
    BadBudget(String),
    #[error("AUTORESEARCH_GPU_MEMORY_GIB={0:?} is not a number of GiB (e.g. 24 for a 24 GB card)")]
    BadMemoryLimit(String),
    #[error("the model's logits have shape {got:?}, the harness expects [batch, seq_len, vocab] = {want:?}")]
    LogitsShape { got: Vec<usize>, want: Vec<usize> },
    #[error("these variables receive no usable gradient, so they never train: {0}. Use ops that carry gradients (candle_nn::ops::softmax, hand-written RMSNorm and RoPE)")]
    Gradients(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, HarnessError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}
