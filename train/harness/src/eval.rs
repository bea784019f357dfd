//! The evaluation: bits per byte on the fixed validation rows. The harness computes the loss from
//! the model's logits itself, with its own batch size, so nothing in the training file can change
//! what is measured.
//!
//! val_bpb = (sum of per-token cross-entropy in nats over targets whose byte length > 0)
//!         / (ln 2 x sum of those targets' byte lengths).
//! Special tokens have byte length 0 and are not scored; every other token counts its exact bytes,
//! including tokens that hold a partial UTF-8 sequence (upstream counted those as 3 bytes).

use candle_core::{DType, Device, Tensor, D};

use crate::error::{HarnessError, Result};
use crate::memory::is_out_of_memory;
use crate::LanguageModel;

/// Nats and bytes summed over the scored targets of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Score {
    pub nats: f64,
    pub bytes: u64,
}

impl Score {
    pub fn add(&mut self, other: Score) {
        self.nats += other.nats;
        self.bytes += other.bytes;
    }

    pub fn bits_per_byte(&self) -> f64 {
        if self.bytes == 0 {
            return f64::NAN;
        }
        self.nats / (std::f64::consts::LN_2 * self.bytes as f64)
    }
}

/// Scores per-target negative log-likelihoods against the byte-length table.
pub fn score_targets(nll: &[f32], targets: &[u32], token_bytes: &[u16]) -> Score {
    let mut score = Score::default();
    for (&loss, &target) in nll.iter().zip(targets) {
        let bytes = token_bytes[target as usize];
        if bytes > 0 {
            score.nats += loss as f64;
            score.bytes += bytes as u64;
        }
    }
    score
}

/// Per-position negative log-likelihood of `targets` under `logits` ([B, T, V] -> B*T values).
pub fn token_nll(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Vec<f32>> {
    let logits = logits.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = log_probs.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    picked.neg()?.flatten_all()?.to_vec1::<f32>()
}

/// val_bpb of `model` over `rows` (each `seq_len + 1` tokens), `batch_rows` rows at a time, or
/// fewer where a batch runs out of device memory (halved until it fits, for the rest of the
/// rows too): the same targets scored, so the same sums.
pub fn evaluate(
    model: &dyn LanguageModel,
    rows: &[Vec<u32>],
    batch_rows: usize,
    seq_len: usize,
    vocab_size: usize,
    token_bytes: &[u16],
    device: &Device,
) -> Result<Score> {
    let mut total = Score::default();
    let mut batch_rows = batch_rows.max(1);
    let mut rest = rows;
    while !rest.is_empty() {
        let batch = &rest[..batch_rows.min(rest.len())];
        let score = match score_batch(model, batch, seq_len, vocab_size, token_bytes, device) {
            Err(HarnessError::Candle(e)) if batch.len() > 1 && is_out_of_memory(&e) => {
                batch_rows = batch.len() / 2;
                println!("note: evaluating {batch_rows} rows at a time: more do not fit in the device's memory");
                // The failed batch filled the memory pool; the run's peak must not read it.
                crate::device::release_cached_memory(device)?;
                continue;
            }
            score => score?,
        };
        total.add(score);
        rest = &rest[batch.len()..];
    }
    Ok(total)
}

/// The score of one batch of rows.
fn score_batch(
    model: &dyn LanguageModel,
    batch: &[Vec<u32>],
    seq_len: usize,
    vocab_size: usize,
    token_bytes: &[u16],
    device: &Device,
) -> Result<Score> {
    let flat: Vec<u32> = batch.iter().flatten().copied().collect();
    let (x, y) = crate::loader::rows_to_batch(flat, batch.len(), seq_len, device)?;
    let logits = model.forward(&x)?;
    let want = vec![batch.len(), seq_len, vocab_size];
    if logits.dims() != want.as_slice() {
        return Err(HarnessError::LogitsShape {
            got: logits.dims().to_vec(),
            want,
        });
    }
    let nll = token_nll(&logits, &y)?;
    let targets = y.flatten_all()?.to_vec1::<u32>()?;
    Ok(score_targets(&nll, &targets, token_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_byte_by_hand() {
        // Vocabulary: 0 = BOS (0 bytes), 1 = "a" (1 byte), 2 = "é" (2 bytes),
        // 3 = a lone UTF-8 lead byte 0xE2 (1 byte: its true length, not U+FFFD's 3).
        let token_bytes = [0u16, 1, 2, 1];
        let targets = [1u32, 0, 2, 3, 1];
        let nll = [0.5f32, 9.0, 1.5, 2.0, 0.25];
        let score = score_targets(&nll, &targets, &token_bytes);
        // The BOS target (9.0 nats) is not scored.
        assert_eq!(score.bytes, 1 + 2 + 1 + 1);
        assert!((score.nats - 4.25).abs() < 1e-9);
        let expected = 4.25 / (std::f64::consts::LN_2 * 5.0);
        assert!((score.bits_per_byte() - expected).abs() < 1e-12);
    }

    #[test]
    fn token_nll_matches_a_hand_computed_softmax() {
        // One position, three classes with logits [0, ln 2, ln 4]: p = [1/7, 2/7, 4/7].
        let logits = Tensor::new(&[[[0f32, 2f32.ln(), 4f32.ln()]]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[1u32]], &Device::Cpu).unwrap();
        let nll = token_nll(&logits, &targets).unwrap();
        assert!((nll[0] as f64 - (7.0f64 / 2.0).ln()).abs() < 1e-6);
    }

    /// Logits that depend on each token (`[id, 1, 2, 3]` over a vocabulary of 4), and a device
    /// that runs out of memory above `fits` rows.
    struct SmallCard {
        fits: usize,
        calls: std::cell::RefCell<Vec<usize>>,
    }

    impl LanguageModel for SmallCard {
        fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
            let (rows, t) = ids.dims2()?;
            self.calls.borrow_mut().push(rows);
            if rows > self.fits {
                candle_core::bail!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")");
            }
            let first = ids.to_dtype(DType::F32)?.unsqueeze(2)?;
            let rest = Tensor::new(&[1f32, 2.0, 3.0], ids.device())?.broadcast_as((rows, t, 3))?;
            Tensor::cat(&[first, rest], 2)
        }
    }

    #[test]
    fn a_batch_that_runs_out_of_memory_is_halved_and_scores_the_same() {
        let rows: Vec<Vec<u32>> = (0..5u32).map(|r| vec![r % 4, 1, 2, 3, r % 3]).collect();
        let token_bytes = [1u16, 1, 2, 1];
        let score = |fits| {
            let model = SmallCard {
                fits,
                calls: Default::default(),
            };
            let score = evaluate(&model, &rows, 4, 4, 4, &token_bytes, &Device::Cpu).unwrap();
            (score, model.calls.into_inner())
        };
        let (roomy, calls) = score(8);
        assert_eq!(calls, [4, 1]);
        let (small, calls) = score(2);
        // 4 rows fail, then 2 at a time for the rest: 2, 2, then the last 1.
        assert_eq!(calls, [4, 2, 2, 1]);
        assert_eq!(small.bytes, roomy.bytes);
        assert!((small.nats - roomy.nats).abs() < 1e-9);
    }

    #[test]
    fn uniform_prediction_scores_log2_vocab_per_token_byte() {
        let token_bytes = [0u16, 2, 2, 2];
        let nll = [(4f32).ln(); 3];
        let score = score_targets(&nll, &[1, 2, 3], &token_bytes);
        assert!((score.bits_per_byte() - 1.0).abs() < 1e-6);
    }
}
