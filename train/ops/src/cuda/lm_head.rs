//! The lm head, the soft-cap and the mean cross-entropy on CUDA, a chunk of rows at a time: the
//! `[N, V]` logits and their gradient exist one chunk at a time (`CHUNK x V`), where one product
//! over all rows would hold both whole (1 GiB each in bf16 at the gpu profile's 65,536 rows).
//! As on the CPU, the gradients are computed in the forward and saved; the backward scales them.

use candle_core::Tensor;
use candle_core::{CudaStorage, CustomOp2, DType, Layout, Result, Shape};

use super::cross_entropy::{loss_and_gradient, targets_on};
use super::launch::cpu_fwd_cuda_only;
use super::launch::stored;

/// Rows per chunk: 128 MiB of bf16 logits at V = 8192.
const CHUNK: usize = 8192;

/// The mean over rows of `−log softmax(cap · tanh(x wᵀ / cap))[target]` for `x: [N, C]` (f32 or
/// bf16), `w: [V, C]` (cast to x's dtype for the products) and N targets; gradients for `x` and
/// `w` (shapes checked by the caller).
pub(crate) fn linear_softcap_cross_entropy(
    x: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    cap: f64,
) -> Result<Tensor> {
    let (n, _) = x.dims2()?;
    let (v, _) = w.dims2()?;
    let targets = targets_on("linear_softcap_cross_entropy", targets, n, v, x.device())?;
    // The products run outside the graph: the op below carries the gradients.
    let xs = x.detach();
    let ws = w.detach().to_dtype(x.dtype())?;
    let scale = 1.0 / n as f32;
    let mut losses = Vec::new();
    let mut dx = Vec::new();
    let mut dw = Tensor::zeros(w.shape(), DType::F32, w.device())?;
    for start in (0..n).step_by(CHUNK) {
        let rows = CHUNK.min(n - start);
        let x_chunk = xs.narrow(0, start, rows)?;
        let logits = x_chunk.matmul(&ws.t()?)?; // [rows, V]
        let chunk_targets = targets.narrow(0, start, rows)?.contiguous()?;
        let (loss, dl) = loss_and_gradient(&logits, &chunk_targets, cap as f32, scale)?;
        losses.push(loss);
        dx.push(dl.matmul(&ws)?); // [rows, C]
        dw = (dw + dl.t()?.matmul(&x_chunk)?.to_dtype(DType::F32)?)?;
    }
    let loss = (Tensor::cat(&losses, 0)?.sum_all()? * scale as f64)?;
    let grads = Saved {
        loss,
        dx: Tensor::cat(&dx, 0)?,
        dw: dw.to_dtype(w.dtype())?,
    };
    x.apply_op2(w, grads)
}

/// The loss and the gradients of `x` and `w` for a unit gradient of the loss.
struct Saved {
    loss: Tensor,
    dx: Tensor,
    dw: Tensor,
}

impl CustomOp2 for Saved {
    fn name(&self) -> &'static str {
        "linear_softcap_cross_entropy"
    }

    cpu_fwd_cuda_only!(2);

    /// The loss computed already, as this op's scalar output.
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        Ok((stored(&self.loss)?, Shape::from(())))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _w: &Tensor,
        _loss: &Tensor,
        dloss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = |g: &Tensor| g.broadcast_mul(&dloss.to_dtype(g.dtype())?);
        Ok((Some(scale(&self.dx)?), Some(scale(&self.dw)?)))
    }
}
