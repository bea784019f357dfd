//! Parameter-free RMSNorm, and the per-layer scalar mix of the residual stream with the first
//! layer's input.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, row_len, rows_per_task, tensor, Read};
use crate::simd::{dispatch, dot, sum_sq};

/// RMSNorm's epsilon, as the training file's `rms_norm`.
pub const RMS_NORM_EPS: f32 = 1e-6;

/// `x / sqrt(mean(x², last dim) + 1e-6)` for `x: [..., C]`, one pass.
///
/// Saves the reciprocal RMS of every row (4 bytes per row), so the backward reads only the output
/// and its gradient: `dx = rstd · (dy − y · mean(dy ∘ y))`.
pub fn rms_norm(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::RmsNorm, &[x])? {
        return crate::cuda::rms_norm(x);
    }
    if !is_cpu_f32(&[x]) {
        return composite::rms_norm(x);
    }
    x.contiguous()?.apply_op1(RmsNorm {
        rstd: OnceLock::new(),
    })
}

struct RmsNorm {
    /// `1 / sqrt(mean(x²) + eps)` per row, set by the forward.
    rstd: OnceLock<Vec<f32>>,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms_norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let c = row_len(self.name(), layout.shape())?;
        let rows = x.len() / c;
        let mut y = vec![0f32; x.len()];
        let mut rstd = vec![0f32; rows];
        let per = rows_per_task(rows);
        y.par_chunks_mut(per * c)
            .zip(rstd.par_chunks_mut(per))
            .zip(x.par_chunks(per * c))
            .for_each(|((y, rstd), x)| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = y.chunks_exact_mut(c).zip(x.chunks_exact(c));
                        for ((y, x), r) in rows.zip(rstd) {
                            *r = 1.0 / (sum_sq(x) / c as f32 + RMS_NORM_EPS).sqrt();
                            for (y, &x) in y.iter_mut().zip(x) {
                                *y = x * *r;
                            }
                        }
                    },
                )
            });
        let _ = self.rstd.set(rstd);
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let Some(rstd) = self.rstd.get() else {
            bail!("rms_norm: backward before forward");
        };
        let dy = dy.contiguous()?;
        let (y_lock, dy_lock) = (Read::new(self.name(), y)?, Read::new(self.name(), &dy)?);
        let (y, dy) = (y_lock.f32()?, dy_lock.f32()?);
        let c = row_len(self.name(), x.shape())?;
        let mut dx = vec![0f32; y.len()];
        let per = rows_per_task(rstd.len());
        dx.par_chunks_mut(per * c)
            .zip(y.par_chunks(per * c))
            .zip(dy.par_chunks(per * c))
            .zip(rstd.par_chunks(per))
            .for_each(|(((dx, y), dy), rstd)| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = dx.chunks_exact_mut(c).zip(y.chunks_exact(c));
                        for (((dx, y), dy), &r) in rows.zip(dy.chunks_exact(c)).zip(rstd) {
                            let mean = dot(dy, y) / c as f32;
                            for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                                *dx = r * (dy - y * mean);
                            }
                        }
                    },
                )
            });
        Ok(Some(tensor(dx, x.shape())?))
    }
}

/// `resid_lambda · x + x0_lambda · x0`: the training file's per-layer mix of the residual stream
/// with the first layer's input. `x`, `x0`: same shape; the lambdas: one element each (e.g.
/// `resid_lambdas.narrow(0, i, 1)`).
///
/// One pass forward; the backward is one pass too, writing `dx = λr·g` and `dx0 = λ0·g` and
/// reducing `dλr = Σ g∘x`, `dλ0 = Σ g∘x0` over all rows in f64 (per-task partial sums), where
/// candle would run one single-threaded reduction per scalar. Saves nothing (it reads x and x0).
pub fn lambda_mix(
    x: &Tensor,
    x0: &Tensor,
    resid_lambda: &Tensor,
    x0_lambda: &Tensor,
) -> Result<Tensor> {
    if x.shape() != x0.shape() {
        bail!(
            "lambda_mix: x {:?} and x0 {:?} differ",
            x.shape(),
            x0.shape()
        );
    }
    if resid_lambda.elem_count() != 1 || x0_lambda.elem_count() != 1 {
        bail!("lambda_mix: the lambdas must have one element each");
    }
    // The fused ops take the two lambdas as one `[2]` tensor (the CUDA kernel in f32).
    let lambdas = || Tensor::cat(&[resid_lambda.flatten_all()?, x0_lambda.flatten_all()?], 0);
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::LambdaMix, &[x, x0])?
        && x.dtype() == x0.dtype()
    {
        return crate::cuda::lambda_mix(x, x0, &lambdas()?.to_dtype(candle_core::DType::F32)?);
    }
    if !is_cpu_f32(&[x, x0, resid_lambda, x0_lambda]) {
        return composite::lambda_mix(x, x0, resid_lambda, x0_lambda);
    }
    x.contiguous()?
        .apply_op3(&x0.contiguous()?, &lambdas()?, LambdaMix)
}

struct LambdaMix;

impl CustomOp3 for LambdaMix {
    fn name(&self) -> &'static str {
        "lambda_mix"
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
        let x0 = f32_slice(self.name(), s2, l2)?;
        let &[a, b] = f32_slice(self.name(), s3, l3)? else {
            bail!("lambda_mix: two lambdas expected");
        };
        let mut y = vec![0f32; x.len()];
        let per = rows_per_task(x.len()).max(4096);
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .zip(x0.par_chunks(per))
            .for_each(|((y, x), x0)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for ((y, &x), &x0) in y.iter_mut().zip(x).zip(x0) {
                            *y = a * x + b * x0;
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        x0: &Tensor,
        lambdas: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let lambdas = lambdas.to_vec1::<f32>()?;
        let (a, b) = (lambdas[0], lambdas[1]);
        let name = self.name();
        let (x_lock, x0_lock) = (Read::new(name, x)?, Read::new(name, x0)?);
        let g_lock = Read::new(name, &g)?;
        let (xs, x0s, gs) = (x_lock.f32()?, x0_lock.f32()?, g_lock.f32()?);
        let mut dx = vec![0f32; xs.len()];
        let mut dx0 = vec![0f32; xs.len()];
        let per = rows_per_task(xs.len()).max(4096);
        let (da, db) = dx
            .par_chunks_mut(per)
            .zip(dx0.par_chunks_mut(per))
            .zip(xs.par_chunks(per))
            .zip(x0s.par_chunks(per))
            .zip(gs.par_chunks(per))
            .map(|((((dx, dx0), x), x0), g)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for ((dx, dx0), &g) in dx.iter_mut().zip(dx0.iter_mut()).zip(g) {
                            *dx = a * g;
                            *dx0 = b * g;
                        }
                        (dot(g, x) as f64, dot(g, x0) as f64)
                    },
                )
            })
            .reduce(|| (0.0, 0.0), |p, q| (p.0 + q.0, p.1 + q.1));
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dx0, x0.shape())?),
            Some(tensor(vec![da as f32, db as f32], 2)?),
        ))
    }
}
