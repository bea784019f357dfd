//! The logit soft-cap `cap · tanh(l / cap)` and the mean cross-entropy of soft-capped logits,
//! without materialising the log-probabilities.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, rows_per_task, tensor, u32_slice, Read};
use crate::simd::{dispatch, exp, max, sum, tanh};

/// `cap · tanh(logits / cap)` elementwise, any shape, in f32: the logits the training file's
/// `forward` returns (and the harness evaluates). Saves nothing; the backward reads the output:
/// `dl = dy · (1 − (y / cap)²)`.
pub fn softcap(logits: &Tensor, cap: f64) -> Result<Tensor> {
    check_cap(cap)?;
    if !is_cpu_f32(&[logits]) {
        return composite::softcap(logits, cap);
    }
    logits.contiguous()?.apply_op1(Softcap { cap: cap as f32 })
}

/// The mean over rows of `−log softmax(cap · tanh(logits / cap))[target]` for `logits: [N, V]`
/// and `targets: [N]` (u32, any shape of N elements): the training file's soft-cap and
/// `cross_entropy` as one pass per row. Returns a scalar; the targets get no gradient.
///
/// Saves the log-sum-exp of every row (`[N]`). The backward recomputes the capped logits row by
/// row and writes `dl = (softmax(z) − onehot) · (1 − (z/cap)²) · dloss / N` in one pass.
pub fn softcap_cross_entropy(logits: &Tensor, targets: &Tensor, cap: f64) -> Result<Tensor> {
    check_cap(cap)?;
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::SoftcapCrossEntropy, &[logits])? {
        return crate::cuda::softcap_cross_entropy(logits, targets, cap);
    }
    if !is_cpu_f32(&[logits]) || !targets.device().is_cpu() {
        return composite::cross_entropy(&composite::softcap(logits, cap)?, targets);
    }
    let (n, _) = logits.dims2()?;
    let targets = check_targets("softcap_cross_entropy", targets, n)?;
    logits.contiguous()?.apply_op2(
        &targets,
        SoftcapCrossEntropy {
            cap: cap as f32,
            lse: OnceLock::new(),
        },
    )
}

fn check_cap(cap: f64) -> Result<()> {
    if !(cap > 0.0 && cap.is_finite()) {
        bail!("softcap: the cap must be positive, got {cap}");
    }
    Ok(())
}

/// `targets` as a contiguous `[n]` u32 tensor.
pub(crate) fn check_targets(op: &str, targets: &Tensor, n: usize) -> Result<Tensor> {
    if targets.dtype() != DType::U32 || !targets.device().is_cpu() {
        bail!(
            "{op}: u32 targets on the CPU only, got {:?}",
            targets.dtype()
        );
    }
    if targets.elem_count() != n {
        bail!("{op}: {} targets for {n} rows", targets.elem_count());
    }
    targets.flatten_all()?.contiguous()
}

/// Soft-caps `logits` into `z` and returns its maximum.
#[inline(always)]
pub(crate) fn cap_row(logits: &[f32], z: &mut [f32], cap: f32) -> f32 {
    let inv = 1.0 / cap;
    for (z, &l) in z.iter_mut().zip(logits) {
        *z = cap * tanh(l * inv);
    }
    max(z)
}

/// The log-sum-exp of `z`, given its maximum; leaves `exp(z − max)` in `z`.
#[inline(always)]
pub(crate) fn log_sum_exp_in_place(z: &mut [f32], max: f32) -> f32 {
    for z in z.iter_mut() {
        *z = exp(*z - max);
    }
    max + sum(z).ln()
}

struct Softcap {
    cap: f32,
}

impl CustomOp1 for Softcap {
    fn name(&self) -> &'static str {
        "softcap"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = vec![0f32; x.len()];
        let per = rows_per_task(x.len()).max(1 << 14);
        let cap = self.cap;
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(y, x)| {
                dispatch(
                    #[inline(always)]
                    || {
                        cap_row(x, y, cap);
                    },
                )
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (y_lock, dy_lock) = (Read::new(self.name(), y)?, Read::new(self.name(), &dy)?);
        let (ys, dys) = (y_lock.f32()?, dy_lock.f32()?);
        let mut dx = vec![0f32; ys.len()];
        let per = rows_per_task(ys.len()).max(1 << 14);
        let inv = 1.0 / self.cap;
        dx.par_chunks_mut(per)
            .zip(ys.par_chunks(per))
            .zip(dys.par_chunks(per))
            .for_each(|((dx, y), dy)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                            let t = y * inv;
                            *dx = dy * (1.0 - t * t);
                        }
                    },
                )
            });
        Ok(Some(tensor(dx, x.shape())?))
    }
}

struct SoftcapCrossEntropy {
    cap: f32,
    /// Log-sum-exp of every row's capped logits, set by the forward.
    lse: OnceLock<Vec<f32>>,
}

impl CustomOp2 for SoftcapCrossEntropy {
    fn name(&self) -> &'static str {
        "softcap_cross_entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let logits = f32_slice(self.name(), s1, l1)?;
        let targets = u32_slice(self.name(), s2, l2)?;
        let (n, v) = l1.shape().dims2()?;
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= v) {
            bail!("softcap_cross_entropy: target {bad} is outside the vocabulary of {v}");
        }
        let mut lse = vec![0f32; n];
        let per = rows_per_task(n);
        let cap = self.cap;
        let total: f64 = lse
            .par_chunks_mut(per)
            .zip(logits.par_chunks(per * v).zip(targets.par_chunks(per)))
            .map(|(lse, (logits, targets))| {
                let mut z = vec![0f32; v];
                dispatch(
                    #[inline(always)]
                    || {
                        let mut loss = 0f64;
                        for ((lse, l), &t) in
                            lse.iter_mut().zip(logits.chunks_exact(v)).zip(targets)
                        {
                            let m = cap_row(l, &mut z, cap);
                            let picked = z[t as usize];
                            *lse = log_sum_exp_in_place(&mut z, m);
                            loss += (*lse - picked) as f64;
                        }
                        loss
                    },
                )
            })
            .sum();
        let _ = self.lse.set(lse);
        let mean = if n == 0 {
            f32::NAN
        } else {
            (total / n as f64) as f32
        };
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        dloss: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(lse) = self.lse.get() else {
            bail!("softcap_cross_entropy: backward before forward");
        };
        let (n, v) = logits.dims2()?;
        let coef = dloss.to_dtype(DType::F32)?.to_scalar::<f32>()? / n as f32;
        let (l_lock, t_lock) = (
            Read::new(self.name(), logits)?,
            Read::new(self.name(), targets)?,
        );
        let (ls, ts) = (l_lock.f32()?, t_lock.u32()?);
        let mut dl = vec![0f32; ls.len()];
        let per = rows_per_task(n);
        let cap = self.cap;
        dl.par_chunks_mut(per * v)
            .zip(ls.par_chunks(per * v))
            .zip(lse.par_chunks(per).zip(ts.par_chunks(per)))
            .for_each(|((dl, ls), (lse, ts))| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = dl.chunks_exact_mut(v).zip(ls.chunks_exact(v));
                        for ((dl, l), (&lse, &t)) in rows.zip(lse.iter().zip(ts)) {
                            softcap_cross_entropy_grad_row(l, dl, lse, t as usize, cap, coef);
                        }
                    },
                )
            });
        Ok((Some(tensor(dl, (n, v))?), None))
    }
}

/// One row's gradient wrt the raw logits `l`:
/// `(exp(z − lse) − onehot(target)) · (1 − (z/cap)²) · coef` with `z = cap · tanh(l / cap)`.
#[inline(always)]
fn softcap_cross_entropy_grad_row(
    l: &[f32],
    dl: &mut [f32],
    lse: f32,
    target: usize,
    cap: f32,
    coef: f32,
) {
    let inv = 1.0 / cap;
    for (dl, &l) in dl.iter_mut().zip(l) {
        let t = tanh(l * inv);
        *dl = exp(cap * t - lse) * (1.0 - t * t) * coef;
    }
    let t = tanh(l[target] * inv);
    dl[target] -= (1.0 - t * t) * coef;
}
