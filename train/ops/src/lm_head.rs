//! The lm head, the logit soft-cap and the mean cross-entropy as one op, a chunk of rows at a time:
//! the `[N, V]` logits never exist as a whole.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, tensor, u32_slice, Read};
use crate::cross_entropy::check_targets;
use crate::matmul::{matmul, Parallelism, View, ViewMut};
use crate::simd::{dispatch, exp, max, sum, tanh};

/// Rows per chunk: a chunk's logits (`CHUNK x V` f32, 1 MiB at V = 2048) stay in the core's cache
/// between the product that makes them and the two that consume them.
const CHUNK: usize = 128;

/// The mean over rows of `−log softmax(cap · tanh(x wᵀ / cap))[target]` for `x: [N, C]`,
/// `w: [V, C]` and `targets: [N]` (u32, any shape of N elements): the training file's
/// `linear(x, lm_head)`, soft-cap and `cross_entropy` in one op. Returns a scalar; gradients for
/// `x` and `w`, none for the targets.
///
/// Threads split the rows; each walks its rows in chunks of `CHUNK`: logits by one product, then
/// one pass per row computes the loss and turns the row into its gradient
/// `(softmax(z) − onehot) · (1 − (z/cap)²) / N` in place, then two products add the chunk's share
/// of `dx = dl w` and `dw = dlᵀ x` (each thread sums its own `dw`, added up at the end).
///
/// The gradients are computed during the forward (as Liger's fused linear cross-entropy does),
/// because the training loss is always differentiated: it saves `dx` and `dw`, and the backward
/// only multiplies them by the incoming gradient (no copy when that is 1). Use
/// [`crate::softcap`] on `linear(x, w)` where only the logits are wanted (evaluation).
pub fn linear_softcap_cross_entropy(
    x: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    cap: f64,
) -> Result<Tensor> {
    if !(cap > 0.0 && cap.is_finite()) {
        bail!("linear_softcap_cross_entropy: the cap must be positive, got {cap}");
    }
    let (n, c) = x.dims2()?;
    let (_, wc) = w.dims2()?;
    if wc != c {
        bail!(
            "linear_softcap_cross_entropy: x {:?} and w {:?} do not fit",
            x.shape(),
            w.shape()
        );
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::LinearSoftcapCrossEntropy, &[x, w])? {
        return crate::cuda::linear_softcap_cross_entropy(x, w, targets, cap);
    }
    if !is_cpu_f32(&[x, w]) || !targets.device().is_cpu() {
        // The soft-capped cross-entropy dispatches on its own: to the CUDA kernel where it
        // applies.
        return crate::softcap_cross_entropy(&composite::linear(x, w)?, targets, cap);
    }
    let targets = check_targets("linear_softcap_cross_entropy", targets, n)?;
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &targets,
        LinearSoftcapCrossEntropy {
            cap: cap as f32,
            grads: OnceLock::new(),
        },
    )
}

struct LinearSoftcapCrossEntropy {
    cap: f32,
    /// `(dx, dw)` for a unit gradient of the loss, set by the forward.
    grads: OnceLock<(Tensor, Tensor)>,
}

impl CustomOp3 for LinearSoftcapCrossEntropy {
    fn name(&self) -> &'static str {
        "linear_softcap_cross_entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s1, l1)?;
        let w = f32_slice(self.name(), s2, l2)?;
        let targets = u32_slice(self.name(), s3, l3)?;
        let (n, c) = l1.shape().dims2()?;
        let (v, _) = l2.shape().dims2()?;
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
            bail!("linear_softcap_cross_entropy: target {bad} is outside the vocabulary of {v}");
        }
        if n == 0 || c == 0 {
            bail!("linear_softcap_cross_entropy: no rows or no channels ({n} x {c})");
        }
        let parts = rayon::current_num_threads().min(n.div_ceil(CHUNK)).max(1);
        let per_part = n.div_ceil(parts);
        let mut dx = vec![0f32; n * c];
        let task = Task {
            w: View::rows(w, v, c, c),
            v,
            c,
            cap: self.cap,
            inv_n: 1.0 / n as f32,
        };
        let partials: Vec<(f64, Vec<f32>)> = dx
            .par_chunks_mut(per_part * c)
            .zip(x.par_chunks(per_part * c).zip(targets.par_chunks(per_part)))
            .map(|(dx, (x, targets))| task.run(x, targets, dx))
            .collect();
        let total: f64 = partials.iter().map(|(loss, _)| loss).sum();
        let mut partials = partials.into_iter().map(|(_, dw)| dw);
        let mut dw = partials.next().unwrap_or_default();
        for other in partials {
            dw.par_chunks_mut(1 << 14)
                .zip(other.par_chunks(1 << 14))
                .for_each(|(dw, other)| dw.iter_mut().zip(other).for_each(|(a, b)| *a += b));
        }
        let _ = self.grads.set((tensor(dx, (n, c))?, tensor(dw, (v, c))?));
        let mean = (total / n as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _w: &Tensor,
        _targets: &Tensor,
        _loss: &Tensor,
        dloss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some((dx, dw)) = self.grads.get() else {
            bail!("linear_softcap_cross_entropy: backward before forward");
        };
        let g = dloss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok((Some(scaled(dx, g)?), Some(scaled(dw, g)?), None))
    }
}

/// `t · g`, multi-threaded, and `t` itself (shared, no copy) when `g` is 1.
fn scaled(t: &Tensor, g: f32) -> Result<Tensor> {
    if g == 1.0 {
        return Ok(t.clone());
    }
    let lock = Read::new("linear_softcap_cross_entropy", t)?;
    let src = lock.f32()?;
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(1 << 14)
        .zip(src.par_chunks(1 << 14))
        .for_each(|(out, src)| out.iter_mut().zip(src).for_each(|(o, s)| *o = s * g));
    tensor(out, t.shape())
}

/// What every thread's share of the rows needs.
struct Task<'a> {
    /// The head, `[V, C]`.
    w: View<'a>,
    v: usize,
    c: usize,
    cap: f32,
    inv_n: f32,
}

impl Task<'_> {
    /// Loss sum over `x`'s rows; writes their `dx`, returns the partial `dw`.
    fn run(&self, x: &[f32], targets: &[u32], dx: &mut [f32]) -> (f64, Vec<f32>) {
        let (v, c) = (self.v, self.c);
        let mut dw = vec![0f32; v * c];
        let mut logits = vec![0f32; CHUNK * v];
        let mut e = vec![0f32; v];
        let mut loss = 0f64;
        let chunks = dx.chunks_mut(CHUNK * c).zip(x.chunks(CHUNK * c));
        for ((dx, x), targets) in chunks.zip(targets.chunks(CHUNK)) {
            let rows = targets.len();
            let logits = &mut logits[..rows * v];
            let x = View::rows(x, rows, c, c);
            matmul(
                ViewMut::rows(logits, rows, v, v),
                None,
                x,
                self.w.t(),
                1.0,
                Parallelism::None,
            );
            dispatch(
                #[inline(always)]
                || {
                    for (row, &t) in logits.chunks_exact_mut(v).zip(targets) {
                        loss += self.loss_and_grad(row, &mut e, t as usize);
                    }
                },
            );
            let dl = View::rows(logits, rows, v, v);
            matmul(
                ViewMut::rows(dx, rows, c, c),
                None,
                dl,
                self.w,
                1.0,
                Parallelism::None,
            );
            let dw = ViewMut::rows(&mut dw, v, c, c);
            matmul(dw, Some(1.0), dl.t(), x, 1.0, Parallelism::None);
        }
        (loss, dw)
    }

    /// One row: returns its loss and leaves its gradient wrt the raw logits in `row`.
    #[inline(always)]
    fn loss_and_grad(&self, row: &mut [f32], e: &mut [f32], target: usize) -> f64 {
        let (cap, inv_cap) = (self.cap, 1.0 / self.cap);
        let m = cap_row_in_place(row, cap);
        let picked = row[target];
        for (e, &z) in e.iter_mut().zip(row.iter()) {
            *e = exp(z - m);
        }
        let total = sum(e);
        let lse = m + total.ln();
        let coef = self.inv_n / total;
        for (dl, &e) in row.iter_mut().zip(e.iter()) {
            let t = *dl * inv_cap;
            *dl = e * coef * (1.0 - t * t);
        }
        let t = picked * inv_cap;
        row[target] -= (1.0 - t * t) * self.inv_n;
        (lse - picked) as f64
    }
}

/// Soft-caps a row in place and returns its maximum.
#[inline(always)]
fn cap_row_in_place(row: &mut [f32], cap: f32) -> f32 {
    let inv = 1.0 / cap;
    for z in row.iter_mut() {
        *z = cap * tanh(*z * inv);
    }
    max(row)
}
