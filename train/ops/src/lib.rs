//! Fused, differentiable operations for the training file, re-exported by the harness as
//! `harness::ops`.
//!
//! candle's CPU backend runs every elementwise op and reduction as its own single-threaded pass,
//! and its autograd adds a few more passes per op (a zero-filled tensor and an add for every
//! gradient it stores); outside the matrix products, the training step is made of those passes.
//! Each op here does the work of a chain of candle ops in one or two
//! multi-threaded passes (rayon over rows, heads or matrices; inner loops compiled for the CPU's
//! widest vector unit at run time), and implements its own backward as a candle custom op, so
//! it composes with the rest of the graph and `loss.backward()`.
//!
//! The fused code runs on f32 tensors on the CPU, matching the CPU trainer. Any other device or
//! dtype runs [`composite`]: the training file's own composite code, so a training file can call
//! these functions on every device. With the `cuda` feature, f32 and bf16 CUDA tensors run the
//! CUDA kernels of [`cuda`] where one exists for the op (attention, the soft-capped
//! cross-entropy, RMSNorm, the residual mix, RoPE with QK-norm, ReLU², the value-embedding gate,
//! the embedding, AdamW), the composite code elsewhere (Muon, batched by shape); [`dispatch`] says
//! which, and can send ops to the composite code on CUDA too. Inputs that are not contiguous are
//! copied first; outputs are contiguous.
//!
//! | op | function |
//! | --- | --- |
//! | causal sliding-window attention, `[B, T, H, hd]` | [`attention`] |
//! | soft-cap | [`softcap`] |
//! | soft-cap + mean cross-entropy on logits | [`softcap_cross_entropy`] |
//! | lm head + soft-cap + mean cross-entropy, chunked over rows | [`linear_softcap_cross_entropy`] |
//! | parameter-free RMSNorm | [`rms_norm`] |
//! | residual scalar mix `λr·x + λ0·x0` | [`lambda_mix`] |
//! | RoPE, QK-norm and scale | [`rope_norm`] |
//! | ReLU² | [`relu_sq`] |
//! | the MLP block, `relu(x W_fcᵀ)² W_projᵀ` | [`mlp`] |
//! | value-embedding gate `v + ve·2σ(x[.., :G]·gateᵀ)` | [`value_gate`] |
//! | embedding lookup, scatter-add backward | [`embedding`] |
//! | Newton-Schulz orthogonalisation | [`newton_schulz`] |
//! | Muon update (momentum, Nesterov, Newton-Schulz, cautious decay), in place | [`muon_step`] |
//! | AdamW update with bias correction, in place | [`adamw_step`] |

mod activation;
mod attention;
pub mod composite;
mod cpu;
mod cross_entropy;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod dispatch;
mod embedding;
mod gate;
mod inplace;
pub mod kernels;
mod lm_head;
mod matmul;
mod mlp;
mod muon_batched;
mod newton_schulz;
mod norm;
mod optim;
mod rope;
mod simd;
pub mod testing;

#[cfg(test)]
mod tests;

pub use activation::relu_sq;
pub use attention::attention;
pub use cross_entropy::{softcap, softcap_cross_entropy};
pub use embedding::embedding;
pub use gate::value_gate;
pub use lm_head::linear_softcap_cross_entropy;
pub use mlp::mlp;
pub use newton_schulz::newton_schulz;
pub use norm::{lambda_mix, rms_norm, RMS_NORM_EPS};
pub use optim::{adamw_step, muon_step, AdamStep, MuonParam, MuonStep};
pub use rope::rope_norm;
