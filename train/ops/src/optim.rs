//! The optimizer updates, in place and one pass each over a parameter and its moments: AdamW with
//! bias correction, and Muon (momentum, Nesterov, Newton-Schulz, cautious weight decay).

use candle_core::{bail, DType, Result, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{is_cpu_f32, Read};
use crate::inplace::with_mut;
use crate::matmul::Parallelism;
use crate::newton_schulz::orthogonalise;
use crate::simd::dispatch;

/// One AdamW step's settings.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// The learning rate of this step (schedule applied).
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, `w ← w·(1 − lr·wd)` before the update (0: plain Adam, as the
    /// training file has it).
    pub weight_decay: f64,
    /// The step number, from 1, for the bias corrections `1 − β^step`.
    pub step: i32,
}

/// One AdamW step on `weight` with `grad`, updating the moments `m` and `v` too, all in place
/// (one shape, contiguous; `weight`, `m` and `v` with their own storage, e.g. a `Var` and two
/// `zeros_like`). As the training file's Adam branch:
///
/// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `w ← w − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)`,
///
/// in one multi-threaded pass where candle makes twelve single-threaded ones and five new tensors
/// (f32 on the CPU; f32 on CUDA in one kernel, copied into place; elsewhere the composite update,
/// copied into place).
pub fn adamw_step(
    weight: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &AdamStep,
) -> Result<()> {
    let op = "adamw_step";
    if grad.shape() != weight.shape() || m.shape() != weight.shape() || v.shape() != weight.shape()
    {
        bail!("{op}: weight, gradient and moments must have one shape");
    }
    #[cfg(feature = "cuda")]
    if [weight, grad, m, v].iter().all(|t| t.dtype() == DType::F32)
        && crate::cuda::applies(crate::dispatch::CudaOp::AdamwStep, &[weight, grad, m, v])?
    {
        return crate::cuda::adamw_step(weight, grad, m, v, s);
    }
    if !is_cpu_f32(&[weight, grad, m, v]) {
        let settings = (s.beta1, s.beta2, s.eps, s.weight_decay);
        let (w, m_new, v_new) = composite::adam((weight, grad, m, v), s.lr, settings, s.step)?;
        weight.slice_set(&w, 0, 0)?;
        m.slice_set(&m_new, 0, 0)?;
        return v.slice_set(&v_new, 0, 0);
    }
    let grad = grad.contiguous()?;
    let (b1, b2, eps) = (s.beta1 as f32, s.beta2 as f32, s.eps as f32);
    let (c1, c2) = (1.0 - s.beta1.powi(s.step), 1.0 - s.beta2.powi(s.step));
    let (inv_c1, inv_c2) = ((1.0 / c1) as f32, (1.0 / c2) as f32);
    let (lr, keep) = (s.lr as f32, (1.0 - s.lr * s.weight_decay) as f32);
    with_mut(op, &[weight, m, v], &[&grad], |slices| {
        let [w, m, v] = slices else {
            bail!("{op}: three tensors expected");
        };
        let lock = Read::new(op, &grad)?;
        let g = lock.f32()?;
        const PER: usize = 1 << 14;
        w.par_chunks_mut(PER)
            .zip(m.par_chunks_mut(PER))
            .zip(v.par_chunks_mut(PER))
            .zip(g.par_chunks(PER))
            .for_each(|(((w, m), v), g)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for (((w, m), v), &g) in
                            w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g)
                        {
                            *m = b1 * *m + (1.0 - b1) * g;
                            *v = b2 * *v + (1.0 - b2) * (g * g);
                            let update = (*m * inv_c1) / ((*v * inv_c2).sqrt() + eps);
                            *w = *w * keep - update * lr;
                        }
                    },
                )
            });
        Ok(())
    })
}

/// One Muon step's settings.
#[derive(Clone, Copy, Debug)]
pub struct MuonStep {
    /// The learning rate of this step (schedule applied).
    pub lr: f64,
    /// The momentum of this step (its ramp applied).
    pub momentum: f64,
    /// Cautious weight decay: applied only where the update and the weight agree in sign.
    pub weight_decay: f64,
    /// Newton-Schulz iterations.
    pub ns_steps: usize,
    /// The dtype of the Newton-Schulz products (the training file: bf16 on a GPU, f32 on the
    /// CPU). The fused path runs f32 on the CPU; anything else runs the composite update with the
    /// matrices of one shape stacked.
    pub compute_dtype: DType,
}

/// A matrix Muon updates: the weight, its gradient and its momentum buffer (one 2-D shape,
/// contiguous; `weight` and `momentum` with their own storage).
pub struct MuonParam<'a> {
    pub weight: &'a Tensor,
    pub grad: &'a Tensor,
    pub momentum: &'a Tensor,
}

/// One Muon step on every matrix of `params`, in place, as the training file's Muon branch:
///
/// `m ← μ·m + (1−μ)·g`, `n = (1−μ)·g + μ·m` (Nesterov),
/// `u = newton_schulz(n) · sqrt(max(1, rows/cols))`,
/// `w ← w − lr·u − lr·wd·w·[u·w > 0]`.
///
/// The matrices run in parallel, one per thread (a single matrix uses all threads for its
/// products); the momentum and the weight take one pass each.
pub fn muon_step(params: &[MuonParam], s: &MuonStep) -> Result<()> {
    let op = "muon_step";
    let mut fused = s.compute_dtype == DType::F32;
    for p in params {
        p.weight.dims2()?;
        if p.grad.shape() != p.weight.shape() || p.momentum.shape() != p.weight.shape() {
            bail!("{op}: weight, gradient and momentum must have one shape");
        }
        fused &= is_cpu_f32(&[p.weight, p.grad, p.momentum]);
    }
    if !fused {
        return crate::muon_batched::muon_step(params, s);
    }
    let parallelism = if params.len() >= rayon::current_num_threads() {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    params
        .par_iter()
        .try_for_each(|p| muon_one(p, s, parallelism))
}

fn muon_one(p: &MuonParam, s: &MuonStep, parallelism: Parallelism) -> Result<()> {
    let op = "muon_step";
    let (rows, cols) = p.weight.dims2()?;
    let grad = p.grad.contiguous()?;
    let mu = s.momentum as f32;
    let scale = (rows as f64 / cols as f64).max(1.0).sqrt() as f32;
    let (lr, decay) = (s.lr as f32, (s.lr * s.weight_decay) as f32);
    with_mut(op, &[p.weight, p.momentum], &[&grad], |slices| {
        let [w, m] = slices else {
            bail!("{op}: two tensors expected");
        };
        let lock = Read::new(op, &grad)?;
        let g = lock.f32()?;
        let mut nesterov = vec![0f32; g.len()];
        dispatch(
            #[inline(always)]
            || {
                for ((m, n), &g) in m.iter_mut().zip(nesterov.iter_mut()).zip(g) {
                    *m = mu * *m + (1.0 - mu) * g;
                    *n = (1.0 - mu) * g + mu * *m;
                }
            },
        );
        let update = orthogonalise(&nesterov, rows, cols, s.ns_steps, parallelism);
        dispatch(
            #[inline(always)]
            || {
                for (w, &u) in w.iter_mut().zip(&update) {
                    let u = u * scale;
                    let agree = if u * *w > 0.0 { *w * decay } else { 0.0 };
                    *w = (*w - u * lr) - agree;
                }
            },
        );
        Ok(())
    })
}
