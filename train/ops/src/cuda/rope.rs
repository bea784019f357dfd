//! RoPE, QK-norm and the scale on CUDA: one warp per (token, head) row each way.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::Tensor;
use candle_core::{bail, CudaStorage, CustomOp3, DType, Layout, Result, Shape};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, int, launch, output, storage, tensor, view, Elem, Read,
};
use crate::kernels::{warp_per_row, ROPE_NORM_BWD, ROPE_NORM_FWD};

/// `scale · rms_norm(rope(x))` on `x: [B, T, H, hd]`, tables of `T' >= T` positions (`hd/2`
/// each, any shape), the inputs checked by the caller (even hd, positive scale). Saves the norm's
/// reciprocal RMS per row; the tables get no gradient.
pub(crate) fn rope_norm(x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor> {
    let (_, t, h, hd) = x.dims4()?;
    let table = |c: &Tensor| -> Result<Tensor> {
        c.flatten_all()?
            .narrow(0, 0, t * hd / 2)?
            .to_device(x.device())?
            .to_dtype(DType::F32)?
            .contiguous()
    };
    let op = RopeNorm {
        t,
        h,
        scale: scale as f32,
        rstd: OnceLock::new(),
    };
    x.contiguous()?.apply_op3(&table(cos)?, &table(sin)?, op)
}

struct RopeNorm {
    t: usize,
    h: usize,
    scale: f32,
    /// `[B·T·H]` f32, set by the forward.
    rstd: OnceLock<Tensor>,
}

impl RopeNorm {
    /// `(rows, [rows, t, h, hd])` for `len` elements of rows of `hd`, the latter as the kernels'
    /// ints.
    fn dims(&self, len: usize, hd: usize) -> Result<(usize, [i32; 4])> {
        let rows = len / hd;
        let n = self.name();
        let ints = [int(n, rows)?, int(n, self.t)?, int(n, self.h)?, int(n, hd)?];
        Ok((rows, ints))
    }
}

impl CustomOp3 for RopeNorm {
    fn name(&self) -> &'static str {
        "rope_norm"
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
            op: &RopeNorm,
            (s1, l1): (&CudaStorage, &Layout),
            (s2, l2): (&CudaStorage, &Layout),
            (s3, l3): (&CudaStorage, &Layout),
        ) -> Result<CudaStorage> {
            let dev = s1.device();
            let x = view::<T>(op.name(), s1, l1)?;
            let (cos, sin) = (
                view::<f32>(op.name(), s2, l2)?,
                view::<f32>(op.name(), s3, l3)?,
            );
            let (rows, [r, t, h, hd]) = op.dims(x.len(), l1.shape().dims4()?.3)?;
            let mut y = output::<T>(dev, x.len())?;
            let mut rstd = output::<f32>(dev, rows)?;
            // SAFETY: rope_norm_fwd(int rows, int t, int h, int hd, float scale, const T* x,
            // const float* cos, const float* sin, T* y, float* rstd); x and y rows·hd long,
            // the tables t·hd/2, rstd rows; one warp per row.
            unsafe {
                launch::<T, _>(
                    dev,
                    &ROPE_NORM_FWD,
                    warp_per_row(rows),
                    (
                        &r, &t, &h, &hd, &op.scale, &x, &cos, &sin, &mut y, &mut rstd,
                    ),
                )
            }?;
            let _ = op.rstd.set(tensor(rstd, dev, rows));
            Ok(storage(y, dev))
        }
        let y = by_dtype!(
            self.name(),
            s1.dtype(),
            run(self, (s1, l1), (s2, l2), (s3, l3))
        )?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn run<T: Elem>(op: &RopeNorm, tensors: [&Tensor; 5]) -> Result<Tensor> {
            let [y, dy, cos, sin, rstd] = tensors;
            let name = op.name();
            let (yr, dyr) = (Read::new(name, y)?, Read::new(name, dy)?);
            let (cr, sr, rr) = (
                Read::new(name, cos)?,
                Read::new(name, sin)?,
                Read::new(name, rstd)?,
            );
            let dev = yr.device()?;
            let (ys, dys) = (yr.view::<T>()?, dyr.view::<T>()?);
            let (cs, ss, rs) = (cr.view::<f32>()?, sr.view::<f32>()?, rr.view::<f32>()?);
            let (rows, [r, t, h, hd]) = op.dims(ys.len(), y.dims4()?.3)?;
            let mut dx = output::<T>(&dev, ys.len())?;
            // SAFETY: rope_norm_bwd(int rows, int t, int h, int hd, float scale, const T* y,
            // const T* dy, const float* cos, const float* sin, const float* rstd, T* dx), as the
            // forward's buffers.
            unsafe {
                launch::<T, _>(
                    &dev,
                    &ROPE_NORM_BWD,
                    warp_per_row(rows),
                    (
                        &r, &t, &h, &hd, &op.scale, &ys, &dys, &cs, &ss, &rs, &mut dx,
                    ),
                )
            }?;
            Ok(tensor(dx, &dev, y.shape()))
        }
        let Some(rstd) = self.rstd.get() else {
            bail!("rope_norm: backward before forward");
        };
        let dy = dy.contiguous()?;
        let tensors = [y, &dy, cos, sin, rstd];
        Ok((
            Some(by_dtype!(self.name(), x.dtype(), run(self, tensors))?),
            None,
            None,
        ))
    }
}
