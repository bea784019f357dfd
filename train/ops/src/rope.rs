//! Rotary position embedding, then RMSNorm over the head dimension, then a scale: the training
//! file's `rms_norm(rope(q)) * scale` on the queries and `rms_norm(rope(k))` on the keys, as one
//! pass over `[B, T, H, hd]`.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, rows_per_task, tensor, Read};
use crate::norm::RMS_NORM_EPS;
use crate::simd::{dispatch, dot, sum_sq};

/// `scale · rms_norm(rope(x))` for `x: [B, T, H, hd]` (`hd` even).
///
/// `cos`, `sin`: the rotation of positions `0..T'` (`T' >= T`), `hd/2` values per position in any
/// shape with that many elements (the training file's `[1, T, 1, hd/2]`). RoPE rotates halves:
/// `[x1·cos + x2·sin, x2·cos − x1·sin]`; the norm is over `hd` with eps 1e-6. The rotation keeps
/// the norm, so the RMS is taken from `x` directly.
///
/// Saves one reciprocal RMS per (b, t, h). The backward reads the output and its gradient only:
/// the norm's backward, then the inverse rotation. `cos` and `sin` get no gradient.
pub fn rope_norm(x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::RopeNorm, &[x])? {
        check(x, cos, sin, scale)?;
        return crate::cuda::rope_norm(x, cos, sin, scale);
    }
    if !is_cpu_f32(&[x, cos, sin]) {
        return composite::rope_norm(x, cos, sin, scale);
    }
    check(x, cos, sin, scale)?;
    x.contiguous()?.apply_op3(
        &cos.contiguous()?,
        &sin.contiguous()?,
        RopeNorm {
            scale: scale as f32,
            rstd: OnceLock::new(),
        },
    )
}

/// What the fused ops (CPU and CUDA) need: an even head dimension, `T x hd/2` table values each
/// and a positive scale (their backward divides by it).
fn check(x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<()> {
    let (_, t, _, hd) = x.dims4()?;
    if hd % 2 != 0 {
        bail!("rope_norm: the head dimension must be even, got {hd}");
    }
    if cos.elem_count() < t * hd / 2 || cos.elem_count() != sin.elem_count() {
        bail!(
            "rope_norm: cos and sin need {} values each (T x hd/2), got {} and {}",
            t * hd / 2,
            cos.elem_count(),
            sin.elem_count()
        );
    }
    if !(scale > 0.0 && scale.is_finite()) {
        bail!("rope_norm: the scale must be positive, got {scale}");
    }
    Ok(())
}

struct RopeNorm {
    scale: f32,
    /// `1 / sqrt(mean(x²) + eps)` per (b, t, h), set by the forward.
    rstd: OnceLock<Vec<f32>>,
}

impl CustomOp3 for RopeNorm {
    fn name(&self) -> &'static str {
        "rope_norm"
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
        let cos = f32_slice(self.name(), s2, l2)?;
        let sin = f32_slice(self.name(), s3, l3)?;
        let (_, t, h, hd) = l1.shape().dims4()?;
        let half = hd / 2;
        let token = h * hd;
        let tokens = x.len() / token;
        let mut y = vec![0f32; x.len()];
        let mut rstd = vec![0f32; tokens * h];
        let per = rows_per_task(tokens);
        let scale = self.scale;
        y.par_chunks_mut(per * token)
            .zip(rstd.par_chunks_mut(per * h))
            .zip(x.par_chunks(per * token))
            .enumerate()
            .for_each(|(task, ((y, rstd), x))| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = y.chunks_exact_mut(hd).zip(x.chunks_exact(hd));
                        for (row, ((y, x), r)) in rows.zip(rstd.iter_mut()).enumerate() {
                            let pos = (task * per + row / h) % t;
                            let cos = &cos[pos * half..][..half];
                            let sin = &sin[pos * half..][..half];
                            *r = 1.0 / (sum_sq(x) / hd as f32 + RMS_NORM_EPS).sqrt();
                            let f = *r * scale;
                            let (x1, x2) = x.split_at(half);
                            let (y1, y2) = y.split_at_mut(half);
                            for j in 0..half {
                                y1[j] = (x1[j] * cos[j] + x2[j] * sin[j]) * f;
                                y2[j] = (x2[j] * cos[j] - x1[j] * sin[j]) * f;
                            }
                        }
                    },
                )
            });
        let _ = self.rstd.set(rstd);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(rstd) = self.rstd.get() else {
            bail!("rope_norm: backward before forward");
        };
        let (_, t, h, hd) = x.dims4()?;
        let half = hd / 2;
        let token = h * hd;
        let dy = dy.contiguous()?;
        let name = self.name();
        let (y_lock, dy_lock) = (Read::new(name, y)?, Read::new(name, &dy)?);
        let (cos_lock, sin_lock) = (Read::new(name, cos)?, Read::new(name, sin)?);
        let (y, dy) = (y_lock.f32()?, dy_lock.f32()?);
        let (cos, sin) = (cos_lock.f32()?, sin_lock.f32()?);
        let tokens = y.len() / token;
        let mut dx = vec![0f32; y.len()];
        let per = rows_per_task(tokens);
        let (scale, inv_scale) = (self.scale, 1.0 / self.scale);
        dx.par_chunks_mut(per * token)
            .zip(y.par_chunks(per * token))
            .zip(dy.par_chunks(per * token))
            .zip(rstd.par_chunks(per * h))
            .enumerate()
            .for_each(|(task, (((dx, y), dy), rstd))| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = dx.chunks_exact_mut(hd).zip(y.chunks_exact(hd));
                        let rows = rows.zip(dy.chunks_exact(hd)).zip(rstd);
                        for (row, (((dx, y), dy), &r)) in rows.enumerate() {
                            let pos = (task * per + row / h) % t;
                            let cos = &cos[pos * half..][..half];
                            let sin = &sin[pos * half..][..half];
                            // The norm's backward on u = y / scale with du = scale · dy.
                            let mean = dot(dy, y) / hd as f32 * inv_scale;
                            let (a, b) = (r * scale, r * mean);
                            let (y1, y2) = y.split_at(half);
                            let (dy1, dy2) = dy.split_at(half);
                            let (dx1, dx2) = dx.split_at_mut(half);
                            for j in 0..half {
                                let d1 = a * dy1[j] - b * y1[j];
                                let d2 = a * dy2[j] - b * y2[j];
                                // The inverse rotation.
                                dx1[j] = d1 * cos[j] - d2 * sin[j];
                                dx2[j] = d1 * sin[j] + d2 * cos[j];
                            }
                        }
                    },
                )
            });
        Ok((Some(tensor(dx, x.shape())?), None, None))
    }
}
