//! The two experiment profiles. A profile fixes everything that makes two experiments comparable:
//! sequence length, vocabulary, evaluation size and the time budget. It is chosen when the data is
//! prepared and recorded with it, so a training run cannot pick a different one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// `gpu` or `cpu`.
    pub name: String,
    /// Tokens per training row (each row holds `seq_len + 1` tokens: inputs and shifted targets).
    pub seq_len: usize,
    /// Vocabulary size including the special tokens.
    pub vocab_size: usize,
    /// The baseline model depth for this profile; the training file may choose another.
    pub depth: usize,
    /// Validation tokens scored by the evaluation (capped by what the validation split holds).
    pub eval_tokens: usize,
    /// Rows per evaluation batch: fixed, so the training file's batch size cannot change the result.
    pub eval_batch_rows: usize,
    /// Training time budget in seconds.
    pub budget_seconds: f64,
    /// Steps whose time is not counted against the budget (kernel warm-up, first allocations).
    pub warmup_steps: usize,
    /// Longest document chunk, in bytes, that preparation cuts the corpus into.
    pub max_doc_bytes: usize,
}

impl Profile {
    /// The reference's constants (karpathy/autoresearch on one H100).
    pub fn gpu() -> Self {
        Self {
            name: "gpu".into(),
            seq_len: 2048,
            vocab_size: 8192,
            depth: 8,
            eval_tokens: 40 * 524_288,
            eval_batch_rows: 32,
            budget_seconds: 300.0,
            warmup_steps: 11,
            max_doc_bytes: 6144,
        }
    }

    /// Scaled for two CPU cores: a 300 s run must learn clearly better than chance. Short rows
    /// (256) keep attention cheap; a 2048 vocabulary keeps the embedding and head small while still
    /// merging common words; 65,536 evaluation tokens score in about ten seconds.
    pub fn cpu() -> Self {
        Self {
            name: "cpu".into(),
            seq_len: 256,
            vocab_size: 2048,
            depth: 4,
            eval_tokens: 65_536,
            eval_batch_rows: 32,
            budget_seconds: 300.0,
            warmup_steps: 2,
            max_doc_bytes: 768,
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "gpu" => Some(Self::gpu()),
            "cpu" => Some(Self::cpu()),
            _ => None,
        }
    }

    pub fn is_gpu(&self) -> bool {
        self.name == "gpu"
    }
}

/// Number of special tokens at the start of the vocabulary; id 0 is BOS.
pub const NUM_SPECIAL_TOKENS: usize = 4;
pub const SPECIAL_TOKENS: [&str; NUM_SPECIAL_TOKENS] = ["<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"];
pub const BOS_ID: u32 = 0;
