//! Parameter-free RMSNorm and the residual scalar mix on CUDA.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CudaStorage, CustomOp1, CustomOp3, Layout};
use candle_core::{Result, Shape, Tensor};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, int, launch, output, storage, tensor, view, Elem, Read,
};
use crate::cpu::row_len;
use crate::kernels::{
    elementwise, reduction, warp_per_row, LAMBDA_MIX_BWD, LAMBDA_MIX_FWD, RMS_NORM_BWD,
    RMS_NORM_FWD,
};

/// `x / sqrt(mean(x², last dim) + 1e-6)`; saves the reciprocal RMS per row (f32).
pub(crate) fn rms_norm(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(RmsNorm {
        rstd: OnceLock::new(),
    })
}

struct RmsNorm {
    /// `[rows]` f32, set by the forward.
    rstd: OnceLock<Tensor>,
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms_norm"
    }

    cpu_fwd_cuda_only!(1);

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(op: &RmsNorm, s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
            let dev = s.device();
            let x = view::<T>(op.name(), s, l)?;
            let cols = row_len(op.name(), l.shape())?;
            let rows = x.len() / cols;
            let mut y = output::<T>(dev, x.len())?;
            let mut rstd = output::<f32>(dev, rows)?;
            let (r, c) = (int(op.name(), rows)?, int(op.name(), cols)?);
            // SAFETY: rms_norm_fwd(int rows, int cols, const T* x, T* y, float* rstd); x and y
            // rows·cols long, rstd rows long; one warp per row.
            unsafe {
                launch::<T, _>(
                    dev,
                    &RMS_NORM_FWD,
                    warp_per_row(rows),
                    (&r, &c, &x, &mut y, &mut rstd),
                )
            }?;
            let _ = op.rstd.set(tensor(rstd, dev, rows));
            Ok(storage(y, dev))
        }
        let y = by_dtype!(self.name(), s.dtype(), run(self, s, l))?;
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        fn run<T: Elem>(rstd: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
            let op = "rms_norm";
            let (yr, dyr, rr) = (Read::new(op, y)?, Read::new(op, dy)?, Read::new(op, rstd)?);
            let dev = yr.device()?;
            let (ys, dys, rs) = (yr.view::<T>()?, dyr.view::<T>()?, rr.view::<f32>()?);
            let rows = rs.len();
            let cols = ys.len() / rows;
            let mut dx = output::<T>(&dev, ys.len())?;
            let (r, c) = (int(op, rows)?, int(op, cols)?);
            // SAFETY: rms_norm_bwd(int rows, int cols, const T* y, const T* dy,
            // const float* rstd, T* dx), as the forward's buffers.
            unsafe {
                launch::<T, _>(
                    &dev,
                    &RMS_NORM_BWD,
                    warp_per_row(rows),
                    (&r, &c, &ys, &dys, &rs, &mut dx),
                )
            }?;
            Ok(tensor(dx, &dev, y.shape()))
        }
        let Some(rstd) = self.rstd.get() else {
            bail!("rms_norm: backward before forward");
        };
        let dy = dy.contiguous()?;
        Ok(Some(by_dtype!(self.name(), x.dtype(), run(rstd, y, &dy))?))
    }
}

/// `λr·x + λ0·x0` with the two lambdas (`[2]`, f32) read on the device; the backward reduces
/// dλr and dλ0 across the grid.
pub(crate) fn lambda_mix(x: &Tensor, x0: &Tensor, lambdas: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&x0.contiguous()?, lambdas, LambdaMix)
}

struct LambdaMix;

impl CustomOp3 for LambdaMix {
    fn name(&self) -> &'static str {
        "lambda_mix"
    }

    cpu_fwd_cuda_only!(3);

    fn cuda_fwd(
        &self,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(
            (s1, l1): (&CudaStorage, &Layout),
            (s2, l2): (&CudaStorage, &Layout),
            (s3, l3): (&CudaStorage, &Layout),
        ) -> Result<CudaStorage> {
            let op = "lambda_mix";
            let dev = s1.device();
            let (x, x0) = (view::<T>(op, s1, l1)?, view::<T>(op, s2, l2)?);
            let lambdas = view::<f32>(op, s3, l3)?;
            let n = x.len();
            let mut y = output::<T>(dev, n)?;
            // SAFETY: lambda_mix_fwd(size_t n, const T* x, const T* x0, const float* lambda,
            // T* y); x, x0, y `n` long, lambda 2.
            unsafe {
                launch::<T, _>(
                    dev,
                    &LAMBDA_MIX_FWD,
                    elementwise(n),
                    (&n, &x, &x0, &lambdas, &mut y),
                )
            }?;
            Ok(storage(y, dev))
        }
        let y = by_dtype!(self.name(), s1.dtype(), run((s1, l1), (s2, l2), (s3, l3)))?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        x0: &Tensor,
        lambdas: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn run<T: Elem>(
            x: &Tensor,
            x0: &Tensor,
            lambdas: &Tensor,
            g: &Tensor,
        ) -> Result<[Tensor; 3]> {
            let op = "lambda_mix";
            let (xr, x0r, gr) = (Read::new(op, x)?, Read::new(op, x0)?, Read::new(op, g)?);
            let lr = Read::new(op, lambdas)?;
            let dev = xr.device()?;
            let (xs, x0s, gs) = (xr.view::<T>()?, x0r.view::<T>()?, gr.view::<T>()?);
            let ls = lr.view::<f32>()?;
            let n = xs.len();
            let (mut dx, mut dx0) = (output::<T>(&dev, n)?, output::<T>(&dev, n)?);
            let mut dl = dev.alloc_zeros::<f32>(2)?;
            // SAFETY: lambda_mix_bwd(size_t n, const T* x, const T* x0, const T* g,
            // const float* lambda, T* dx, T* dx0, float* dlambda); dlambda 2 zeroed floats.
            unsafe {
                launch::<T, _>(
                    &dev,
                    &LAMBDA_MIX_BWD,
                    reduction(n),
                    (&n, &xs, &x0s, &gs, &ls, &mut dx, &mut dx0, &mut dl),
                )
            }?;
            Ok([
                tensor(dx, &dev, x.shape()),
                tensor(dx0, &dev, x0.shape()),
                tensor(dl, &dev, 2),
            ])
        }
        let g = g.contiguous()?;
        let [dx, dx0, dl] = by_dtype!(self.name(), x.dtype(), run(x, x0, lambdas, &g))?;
        Ok((Some(dx), Some(dx0), Some(dl)))
    }
}
