//! Data preparation: reading a corpus, cutting it into documents, training the tokenizer and
//! writing the token shards that the harness reads.

pub mod chunk;
pub mod corpus;
pub mod prepare;
pub mod tokenizer;

use std::path::PathBuf;

/// What can go wrong while preparing data. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("corpus path {0} does not exist: pass an existing file or folder to --corpus")]
    MissingCorpus(PathBuf),
    #[error("cannot read corpus file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("corpus file {0} is not UTF-8 text (binary or another encoding): convert it to UTF-8 or leave it out")]
    NotText(PathBuf),
    #[error("the corpus {0} holds no text: give it at least a few kilobytes of documents")]
    EmptyCorpus(String),
    #[error("the corpus is too small: {0}")]
    TooSmall(String),
    #[error("{dir} already holds data prepared from another corpus or profile ({existing}): pass --force to replace it, or --data-dir for a separate one")]
    DifferentDataset { dir: PathBuf, existing: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Harness(#[from] harness::HarnessError),
}
