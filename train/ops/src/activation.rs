//! ReLU², the MLP's activation.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, rows_per_task, tensor, Read};
use crate::simd::dispatch;

/// `relu(x)²` elementwise, any shape: one pass each way (candle's `relu()?.sqr()?`
/// takes two forward and five backward). Saves nothing: the backward reads `x` and computes
/// `dx = 2·relu(x)·dy`.
pub fn relu_sq(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::ReluSq, &[x])? {
        return crate::cuda::relu_sq(x);
    }
    if !is_cpu_f32(&[x]) {
        return composite::relu_sq(x);
    }
    x.contiguous()?.apply_op1(ReluSq)
}

/// Elements per rayon task: large enough that the task overhead does not show.
fn chunk(len: usize) -> usize {
    rows_per_task(len).max(1 << 14)
}

struct ReluSq;

impl CustomOp1 for ReluSq {
    fn name(&self) -> &'static str {
        "relu_sq"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), storage, layout)?;
        let mut y = vec![0f32; x.len()];
        let per = chunk(x.len());
        y.par_chunks_mut(per)
            .zip(x.par_chunks(per))
            .for_each(|(y, x)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for (y, &x) in y.iter_mut().zip(x) {
                            let r = x.max(0.0);
                            *y = r * r;
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dy = dy.contiguous()?;
        let (x_lock, dy_lock) = (Read::new(self.name(), x)?, Read::new(self.name(), &dy)?);
        let (xs, dys) = (x_lock.f32()?, dy_lock.f32()?);
        let mut dx = vec![0f32; xs.len()];
        let per = chunk(xs.len());
        dx.par_chunks_mut(per)
            .zip(xs.par_chunks(per))
            .zip(dys.par_chunks(per))
            .for_each(|((dx, x), dy)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                            *dx = 2.0 * x.max(0.0) * dy;
                        }
                    },
                )
            });
        Ok(Some(tensor(dx, x.shape())?))
    }
}
