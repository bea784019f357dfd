//! ReLU² on CUDA: one kernel each way.

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, launch, output, storage, tensor, view, Elem, Read,
};
use crate::kernels::{elementwise, RELU_SQ_BWD, RELU_SQ_FWD};

/// `relu(x)²`, any shape; the backward reads `x`.
pub(crate) fn relu_sq(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ReluSq)
}

struct ReluSq;

impl CustomOp1 for ReluSq {
    fn name(&self) -> &'static str {
        "relu_sq"
    }

    cpu_fwd_cuda_only!(1);

    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        fn run<T: Elem>(s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
            let dev = s.device();
            let x = view::<T>("relu_sq", s, l)?;
            let n = x.len();
            let mut y = output::<T>(dev, n)?;
            // SAFETY: relu_sq_fwd(size_t n, const T* x, T* y), x and y `n` long.
            unsafe { launch::<T, _>(dev, &RELU_SQ_FWD, elementwise(n), (&n, &x, &mut y)) }?;
            Ok(storage(y, dev))
        }
        let y = by_dtype!(self.name(), s.dtype(), run(s, l))?;
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        fn run<T: Elem>(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
            let (xr, dyr) = (Read::new("relu_sq", x)?, Read::new("relu_sq", dy)?);
            let dev = xr.device()?;
            let (xs, dys) = (xr.view::<T>()?, dyr.view::<T>()?);
            let n = xs.len();
            let mut dx = output::<T>(&dev, n)?;
            // SAFETY: relu_sq_bwd(size_t n, const T* x, const T* dy, T* dx), each `n` long.
            unsafe {
                launch::<T, _>(&dev, &RELU_SQ_BWD, elementwise(n), (&n, &xs, &dys, &mut dx))
            }?;
            Ok(tensor(dx, &dev, x.shape()))
        }
        let dy = dy.contiguous()?;
        Ok(Some(by_dtype!(self.name(), x.dtype(), run(x, &dy))?))
    }
}
