//! Interim attention on CUDA, until a flash-attention kernel replaces it: the scores and the
//! weighted sum are cuBLAS products (candle's matmul), and one kernel each way does the
//! windowed, scaled softmax, so no mask tensor, no scaled copy of q and no chain of elementwise
//! passes over the `[B, H, T, T]` scores exist.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::launch::{block_per_row, by_dtype, cuda_only, function, int, launch, output, storage};
use super::launch::{tensor, view, Elem, Read, WINDOW_SOFTMAX_BWD, WINDOW_SOFTMAX_FWD};

/// `softmax(scale · q kᵀ + mask) v` on `[B, T, H, hd]`, query `i` seeing keys
/// `i + 1 − window ..= i`. Saves the probabilities (`[B, H, T, T]`, q's dtype) for the backward.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    window: usize,
    scale: f64,
) -> Result<Tensor> {
    let (b, t, h, hd) = q.dims4()?;
    let heads_first = |x: &Tensor| x.transpose(1, 2)?.contiguous(); // [B, H, T, hd]
    let (q, k, v) = (heads_first(q)?, heads_first(k)?, heads_first(v)?);
    let scores = q.matmul(&k.t()?)?; // [B, H, T, T]
    let p = scores.apply_op1(WindowSoftmax {
        t,
        window,
        scale: scale as f32,
    })?;
    p.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h, hd))
}

struct WindowSoftmax {
    t: usize,
    window: usize,
    scale: f32,
}

impl WindowSoftmax {
    /// `(rows, t, window)` as the kernels' ints.
    fn dims(&self, len: usize) -> Result<(usize, i32, i32, i32)> {
        let rows = len / self.t;
        let name = self.name();
        let window = self.window.min(self.t);
        Ok((
            rows,
            int(name, rows)?,
            int(name, self.t)?,
            int(name, window)?,
        ))
    }
}

impl CustomOp1 for WindowSoftmax {
    fn name(&self) -> &'static str {
        "window_softmax"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        cuda_only(self.name())
    }

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(op: &WindowSoftmax, s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
            let dev = s.device();
            let scores = view::<T>(op.name(), s, l)?;
            let (rows, r, t, w) = op.dims(scores.len())?;
            let mut p = output::<T>(dev, scores.len())?;
            let f = function::<T>(dev, WINDOW_SOFTMAX_FWD)?;
            // SAFETY: window_softmax_fwd(int rows, int t, int window, float scale, const T* s,
            // T* p); s and p rows·t long; one block per row.
            unsafe {
                launch!(
                    dev,
                    f,
                    block_per_row(rows),
                    &r,
                    &t,
                    &w,
                    &op.scale,
                    &scores,
                    &mut p
                )
            }?;
            Ok(storage(p, dev))
        }
        let p = by_dtype!(self.name(), s.dtype(), run(self, s, l))?;
        Ok((p, l.shape().clone()))
    }

    fn bwd(&self, scores: &Tensor, p: &Tensor, dp: &Tensor) -> Result<Option<Tensor>> {
        fn run<T: Elem>(op: &WindowSoftmax, p: &Tensor, dp: &Tensor) -> Result<Tensor> {
            let (pr, dpr) = (Read::new(op.name(), p)?, Read::new(op.name(), dp)?);
            let dev = pr.device()?;
            let (ps, dps) = (pr.view::<T>()?, dpr.view::<T>()?);
            let (rows, r, t, w) = op.dims(ps.len())?;
            let mut ds = output::<T>(&dev, ps.len())?;
            let f = function::<T>(&dev, WINDOW_SOFTMAX_BWD)?;
            // SAFETY: window_softmax_bwd(int rows, int t, int window, float scale, const T* p,
            // const T* dp, T* ds), as the forward's buffers.
            unsafe {
                launch!(
                    dev,
                    f,
                    block_per_row(rows),
                    &r,
                    &t,
                    &w,
                    &op.scale,
                    &ps,
                    &dps,
                    &mut ds
                )
            }?;
            Ok(tensor(ds, &dev, p.shape()))
        }
        let dp = dp.contiguous()?;
        Ok(Some(by_dtype!(
            self.name(),
            scores.dtype(),
            run(self, p, &dp)
        )?))
    }
}
