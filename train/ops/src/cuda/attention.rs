//! Attention on CUDA: the flash kernels (`flash.rs`) where they apply (bf16, heads of 64 or 128);
//! otherwise (f32, other head sizes, or `AUTORESEARCH_ATTENTION=interim`) this interim op: the
//! scores and the
//! weighted sums are cuBLAS products (candle's matmul) and one kernel each way does the windowed,
//! scaled softmax, so no mask tensor, no scaled copy of q and no chain of elementwise passes over
//! the `[B, H, T, T]` scores exist. The whole core is one op whose backward runs the products
//! itself: the graph keeps only the probabilities, not the scores beside them.

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::Tensor;
use candle_core::{bail, CudaStorage, CustomOp1, CustomOp3, Layout, Result, Shape};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, int, launch, output, storage, stored, tensor, view, Elem, Read,
};
use crate::kernels::{block_per_row, WINDOW_SOFTMAX_BWD, WINDOW_SOFTMAX_FWD};

/// `softmax(scale · q kᵀ + mask) v` on `[B, T, H, hd]`, query `i` seeing keys
/// `i + 1 − window ..= i`. The interim op saves the probabilities (`[B, H, T, T]`, q's dtype).
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    window: usize,
    scale: f64,
) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    if super::flash::applies(&q, &k, &v)? {
        return super::flash::attention(&q, &k, &v, window, scale);
    }
    let (q, k, v) = (&q, &k, &v);
    let t = q.dim(1)?;
    let softmax = WindowSoftmax {
        t,
        window,
        scale: scale as f32,
    };
    // Outside the graph: the op below is the graph's node, with its own backward.
    let [qh, kh, vh] = heads_first([q, k, v])?;
    let p = qh.matmul(&kh.t()?)?.apply_op1_no_bwd(&softmax)?; // [B, H, T, T]
    let o = p.matmul(&vh)?.transpose(1, 2)?.contiguous()?; // [B, T, H, hd]
    let op = Attention {
        softmax,
        p,
        o: Mutex::new(Some(o)),
    };
    q.apply_op3(k, v, op)
}

/// `[B, T, H, hd]` tensors as `[B, H, T, hd]` copies outside the graph.
fn heads_first<const N: usize>(xs: [&Tensor; N]) -> Result<[Tensor; N]> {
    let mut out = Vec::with_capacity(N);
    for x in xs {
        out.push(x.detach().transpose(1, 2)?.contiguous()?);
    }
    Ok(out
        .try_into()
        .unwrap_or_else(|_| unreachable!("N tensors in, N out")))
}

struct Attention {
    softmax: WindowSoftmax,
    /// The probabilities, `[B, H, T, T]`.
    p: Tensor,
    /// The output, computed before the op runs; handed over (and dropped here) by the forward.
    o: Mutex<Option<Tensor>>,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    cpu_fwd_cuda_only!(3);

    /// The output computed already, as this op's.
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let o = self.o.lock().ok().and_then(|mut o| o.take());
        let Some(o) = o else {
            bail!("attention: the output was handed over already");
        };
        Ok((stored(&o)?, o.shape().clone()))
    }

    /// `dP = dO vᵀ`, `dv = Pᵀ dO`, `dS = scale · P ∘ (dP − Σ P∘dP)` (the kernel), `dq = dS k`,
    /// `dk = dSᵀ q`, in `[B, H, T, ·]` and back.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _o: &Tensor,
        d_o: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let [qh, kh, vh, d_o] = heads_first([q, k, v, d_o])?;
        let dp = d_o.matmul(&vh.t()?)?;
        let dv = self.p.t()?.matmul(&d_o)?;
        let ds = self.softmax.backward(&self.p, &dp)?;
        drop(dp); // three [B, H, T, T] tensors at once would be one too many

        let dq = ds.matmul(&kh)?;
        let dk = ds.t()?.matmul(&qh)?;
        let back = |x: Tensor| x.transpose(1, 2)?.contiguous();
        Ok((Some(back(dq)?), Some(back(dk)?), Some(back(dv)?)))
    }
}

/// The windowed, scaled softmax over rows of `[B, H, T, T]` scores (forward only: its backward
/// is [`WindowSoftmax::backward`], which the attention op calls).
struct WindowSoftmax {
    t: usize,
    window: usize,
    scale: f32,
}

impl WindowSoftmax {
    /// `(rows, t, window)` as the kernels' ints.
    fn dims(&self, len: usize) -> Result<(usize, i32, i32, i32)> {
        let rows = len / self.t;
        let name = "window_softmax";
        let window = self.window.min(self.t);
        Ok((
            rows,
            int(name, rows)?,
            int(name, self.t)?,
            int(name, window)?,
        ))
    }

    /// The scores' gradient from the probabilities and theirs (contiguous, one shape).
    fn backward(&self, p: &Tensor, dp: &Tensor) -> Result<Tensor> {
        fn run<T: Elem>(op: &WindowSoftmax, p: &Tensor, dp: &Tensor) -> Result<Tensor> {
            let name = "window_softmax";
            let (pr, dpr) = (Read::new(name, p)?, Read::new(name, dp)?);
            let dev = pr.device()?;
            let (ps, dps) = (pr.view::<T>()?, dpr.view::<T>()?);
            let (rows, r, t, w) = op.dims(ps.len())?;
            let mut ds = output::<T>(&dev, ps.len())?;
            // SAFETY: window_softmax_bwd(int rows, int t, int window, float scale, const T* p,
            // const T* dp, T* ds); each rows·t long; one block per row.
            unsafe {
                launch::<T, _>(
                    &dev,
                    &WINDOW_SOFTMAX_BWD,
                    block_per_row(rows),
                    (&r, &t, &w, &op.scale, &ps, &dps, &mut ds),
                )
            }?;
            Ok(tensor(ds, &dev, p.shape()))
        }
        by_dtype!("window_softmax", p.dtype(), run(self, p, &dp.contiguous()?))
    }
}

impl CustomOp1 for WindowSoftmax {
    fn name(&self) -> &'static str {
        "window_softmax"
    }

    cpu_fwd_cuda_only!(1);

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(op: &WindowSoftmax, s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
            let dev = s.device();
            let scores = view::<T>(op.name(), s, l)?;
            let (rows, r, t, w) = op.dims(scores.len())?;
            let mut p = output::<T>(dev, scores.len())?;
            // SAFETY: window_softmax_fwd(int rows, int t, int window, float scale, const T* s,
            // T* p); s and p rows·t long; one block per row.
            unsafe {
                launch::<T, _>(
                    dev,
                    &WINDOW_SOFTMAX_FWD,
                    block_per_row(rows),
                    (&r, &t, &w, &op.scale, &scores, &mut p),
                )
            }?;
            Ok(storage(p, dev))
        }
        let p = by_dtype!(self.name(), s.dtype(), run(self, s, l))?;
        Ok((p, l.shape().clone()))
    }
}
