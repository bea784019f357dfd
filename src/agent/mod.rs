//! The agent: a local GGUF model, run in-process through llama.cpp, that proposes edits to the
//! training file in a grammar-constrained format, and the machinery that turns its proposals into
//! training files that apply and compile.

pub mod edit;
pub mod engine;
pub mod gguf;
pub mod grammar;
pub mod inert;
pub mod ledger;
pub mod prompt;
pub mod propose;
pub mod source;
pub mod template;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("model file {0} does not exist: pass a GGUF file to --model (scripts/fetch-default-model.sh fetches the default one into models/)")]
    ModelMissing(PathBuf),
    #[error("cannot read model file {path}: {reason}")]
    ModelUnreadable { path: PathBuf, reason: String },
    #[error("{path} is not a GGUF model file ({reason}): pass a .gguf file made for llama.cpp")]
    NotGguf { path: PathBuf, reason: String },
    #[error("model file {path} is truncated ({reason}): download it again")]
    Truncated { path: PathBuf, reason: String },
    #[error("llama.cpp could not load {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("{0} is not a model: give a GGUF path or hf:OWNER/REPO/FILE.gguf")]
    BadSpec(String),
    #[error("cannot get {spec} from the Hugging Face hub{}: {reason}", if *offline { " (HF_HUB_OFFLINE is set, so only the local cache was searched: unset it, or put the file in the cache)" } else { "" })]
    Hub {
        spec: String,
        reason: String,
        offline: bool,
    },
    #[error("llama.cpp: {0}")]
    Llama(String),
    #[error("the prompt needs {needed} tokens but the context holds {context}, even cut to its minimum: use a model with a longer context or a larger --ctx")]
    PromptTooLong { needed: usize, context: usize },
}

/// Formats any llama.cpp error into ours.
pub(crate) fn llama(e: impl std::fmt::Display) -> AgentError {
    AgentError::Llama(e.to_string())
}
