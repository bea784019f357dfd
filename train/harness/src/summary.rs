//! The result of one experiment: the block printed at the end (the reference's exact format, which
//! people and tools grep) and its machine-readable copy, which is what the appliance reads.

use serde::{Deserialize, Serialize};

use crate::device::PeakFlops;

pub const RESULT_FILE: &str = "result.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub val_bpb: f64,
    pub training_seconds: f64,
    pub total_seconds: f64,
    pub peak_vram_mb: f64,
    pub mfu_percent: f64,
    #[serde(rename = "total_tokens_M")]
    pub total_tokens_m: f64,
    pub num_steps: usize,
    #[serde(rename = "num_params_M")]
    pub num_params_m: f64,
    pub depth: usize,
    /// Beyond the reference's block: what was measured, where, and against what.
    pub profile: String,
    pub device: String,
    pub mfu_peak: Option<PeakFlops>,
    pub eval_tokens: usize,
    pub eval_seconds: f64,
    pub tokens_per_second: f64,
    pub epochs: usize,
    /// The timed steps split into forward, backward and optimizer, where the training file
    /// times them (`Harness::time`).
    #[serde(default)]
    pub parts: Option<Parts>,
    /// Seconds the hypervisor took from this machine's CPUs during the steps, which the
    /// training clock does not count (CPU runs; see `clock`).
    #[serde(default)]
    pub stolen_seconds: f64,
}

/// Seconds of the timed steps by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Parts {
    pub forward_seconds: f64,
    pub backward_seconds: f64,
    pub optimizer_seconds: f64,
    /// Timed steps in which any part was timed.
    pub steps: usize,
}

impl Parts {
    /// Adds one step's seconds (forward, backward, optimizer).
    pub fn add(&mut self, step: &[f64; 3]) {
        if step.iter().any(|s| *s > 0.0) {
            self.forward_seconds += step[0];
            self.backward_seconds += step[1];
            self.optimizer_seconds += step[2];
            self.steps += 1;
        }
    }

    pub fn total(&self) -> f64 {
        self.forward_seconds + self.backward_seconds + self.optimizer_seconds
    }
}

impl Summary {
    /// The reference's block, aligned as upstream prints it.
    pub fn block(&self) -> String {
        let rows = [
            ("val_bpb:", format!("{:.6}", self.val_bpb)),
            ("training_seconds:", format!("{:.1}", self.training_seconds)),
            ("total_seconds:", format!("{:.1}", self.total_seconds)),
            ("peak_vram_mb:", format!("{:.1}", self.peak_vram_mb)),
            ("mfu_percent:", format!("{:.2}", self.mfu_percent)),
            ("total_tokens_M:", format!("{:.1}", self.total_tokens_m)),
            ("num_steps:", self.num_steps.to_string()),
            ("num_params_M:", format!("{:.1}", self.num_params_m)),
            ("depth:", self.depth.to_string()),
        ];
        let mut out = String::from("---\n");
        for (key, value) in rows {
            out.push_str(&format!("{key:<18}{value}\n"));
        }
        out
    }

    /// Reads the key/value lines of a printed block back (used to check the two copies agree).
    pub fn parse_block(text: &str) -> Vec<(String, String)> {
        let start = text.rfind("---\n").map_or(0, |i| i + 4);
        text[start..]
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_matches_the_reference_layout() {
        let s = Summary {
            val_bpb: 0.9979,
            training_seconds: 300.1,
            total_seconds: 325.9,
            peak_vram_mb: 45060.2,
            mfu_percent: 39.8,
            total_tokens_m: 499.6,
            num_steps: 953,
            num_params_m: 50.3,
            depth: 8,
            profile: "gpu".into(),
            device: "H100".into(),
            mfu_peak: None,
            eval_tokens: 0,
            eval_seconds: 0.0,
            tokens_per_second: 0.0,
            epochs: 0,
            parts: None,
            stolen_seconds: 0.0,
        };
        let expected = "---\n\
val_bpb:          0.997900\n\
training_seconds: 300.1\n\
total_seconds:    325.9\n\
peak_vram_mb:     45060.2\n\
mfu_percent:      39.80\n\
total_tokens_M:   499.6\n\
num_steps:        953\n\
num_params_M:     50.3\n\
depth:            8\n";
        assert_eq!(s.block(), expected);
        let parsed = Summary::parse_block(&s.block());
        assert_eq!(parsed[0], ("val_bpb".to_string(), "0.997900".to_string()));
        assert_eq!(parsed.len(), 9);
    }

    #[test]
    fn only_steps_with_a_timed_part_count_in_the_split() {
        let mut parts = Parts::default();
        parts.add(&[0.0, 0.0, 0.0]);
        parts.add(&[1.0, 2.0, 0.5]);
        parts.add(&[1.0, 2.0, 0.5]);
        assert_eq!(parts.steps, 2);
        assert_eq!(parts.total(), 7.0);
        assert_eq!(parts.backward_seconds, 4.0);
        // A result written before the split existed still reads.
        let old = r#"{"val_bpb":1.0,"training_seconds":1.0,"total_seconds":1.0,"peak_vram_mb":1.0,"mfu_percent":1.0,"total_tokens_M":1.0,"num_steps":1,"num_params_M":1.0,"depth":1,"profile":"cpu","device":"x","mfu_peak":null,"eval_tokens":1,"eval_seconds":1.0,"tokens_per_second":1.0,"epochs":0}"#;
        assert_eq!(serde_json::from_str::<Summary>(old).unwrap().parts, None);
    }
}
