//! CUDA kernels behind the fused ops (feature `cuda`): `kernels/*.cu`, compiled to PTX by
//! `build.rs` and loaded once per device, launched on candle's stream (so ordering with candle's
//! own kernels holds). Attention runs the flash kernels on bf16 (heads of 64 or 128) and an
//! interim op on cuBLAS scores otherwise. Most ops run their forward kernel as a candle custom op and launch their
//! backward kernel from the op's `bwd`; attention and the lm head compute their forward with
//! tensor ops outside the graph and hand the result to an op that carries their backward (which
//! for the lm head was computed in the forward). f32 and bf16, arithmetic in f32; other dtypes
//! run the composite code. Gradients and saved state are tensors without a graph.

mod args;
mod attention;
mod cross_entropy;
mod embedding;
mod flash;
mod gate;
mod launch;
mod lm_head;
mod norm;
mod optim;
mod relu_sq;
mod rope;

pub(crate) use attention::attention;
pub(crate) use cross_entropy::softcap_cross_entropy;
pub(crate) use embedding::embedding;
pub(crate) use gate::value_gate;
pub(crate) use lm_head::linear_softcap_cross_entropy;
pub(crate) use norm::{lambda_mix, rms_norm};
pub(crate) use optim::adamw_step;
pub(crate) use relu_sq::relu_sq;
pub(crate) use rope::rope_norm;

use candle_core::{DType, Result, Tensor};

use crate::dispatch::{composite_ops, CudaOp};

/// Whether `op`'s CUDA kernels apply: every tensor on a CUDA device, in f32 or bf16, and the op
/// not sent to the composite code (`AUTORESEARCH_COMPOSITE`).
pub(crate) fn applies(op: CudaOp, tensors: &[&Tensor]) -> Result<bool> {
    let on_cuda = tensors
        .iter()
        .all(|t| t.device().is_cuda() && matches!(t.dtype(), DType::F32 | DType::BF16));
    Ok(on_cuda && !composite_ops()?.contains(&op))
}
