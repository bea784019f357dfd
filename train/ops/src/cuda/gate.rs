//! The value-embedding gate on CUDA: the gate logits are a small cuBLAS product (candle's), and
//! one kernel each way does the mix, one warp per (token, head).

use candle_core::backend::BackendStorage;
use candle_core::{CudaStorage, CustomOp3, Layout, Result, Shape, Tensor, D};

use super::launch::{
    by_dtype, cpu_fwd_cuda_only, int, launch, output, storage, tensor, view, Elem, Read,
};
use crate::composite;
use crate::kernels::{warp_per_row, GATE_MIX_BWD, GATE_MIX_FWD};

/// `v + ve · 2σ(x[..., :G] · gateᵀ)` for `v`, `ve: [B, T, H, hd]`, `x: [B, T, C]`,
/// `gate: [H, G]` (shapes checked by the caller). Saves nothing beyond the `[B, T, H]` logits.
pub(crate) fn value_gate(v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let logits = composite::linear(&x.narrow(D::Minus1, 0, gate.dim(1)?)?, gate)?
        .to_dtype(v.dtype())?
        .contiguous()?;
    v.contiguous()?
        .apply_op3(&ve.to_dtype(v.dtype())?.contiguous()?, &logits, GateMix)
}

struct GateMix;

impl CustomOp3 for GateMix {
    fn name(&self) -> &'static str {
        "value_gate"
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
            let op = "value_gate";
            let dev = s1.device();
            let (v, ve, l) = (
                view::<T>(op, s1, l1)?,
                view::<T>(op, s2, l2)?,
                view::<T>(op, s3, l3)?,
            );
            let rows = l.len();
            let hd = v.len() / rows;
            let mut y = output::<T>(dev, v.len())?;
            let (r, h) = (int(op, rows)?, int(op, hd)?);
            // SAFETY: gate_mix_fwd(int rows, int hd, const T* v, const T* ve, const T* l, T* y);
            // v, ve and y rows·hd long, l rows; one warp per row.
            unsafe {
                launch::<T, _>(
                    dev,
                    &GATE_MIX_FWD,
                    warp_per_row(rows),
                    (&r, &h, &v, &ve, &l, &mut y),
                )
            }?;
            Ok(storage(y, dev))
        }
        let y = by_dtype!(self.name(), s1.dtype(), run((s1, l1), (s2, l2), (s3, l3)))?;
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        v: &Tensor,
        ve: &Tensor,
        logits: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        fn run<T: Elem>(ve: &Tensor, logits: &Tensor, dy: &Tensor) -> Result<[Tensor; 2]> {
            let op = "value_gate";
            let (er, lr, gr) = (
                Read::new(op, ve)?,
                Read::new(op, logits)?,
                Read::new(op, dy)?,
            );
            let dev = er.device()?;
            let (ves, ls, dys) = (er.view::<T>()?, lr.view::<T>()?, gr.view::<T>()?);
            let rows = ls.len();
            let hd = ves.len() / rows;
            let (mut dve, mut dl) = (output::<T>(&dev, ves.len())?, output::<T>(&dev, rows)?);
            let (r, h) = (int(op, rows)?, int(op, hd)?);
            // SAFETY: gate_mix_bwd(int rows, int hd, const T* ve, const T* l, const T* dy,
            // T* dve, T* dl), as the forward's buffers, dl rows long.
            unsafe {
                launch::<T, _>(
                    &dev,
                    &GATE_MIX_BWD,
                    warp_per_row(rows),
                    (&r, &h, &ves, &ls, &dys, &mut dve, &mut dl),
                )
            }?;
            Ok([
                tensor(dve, &dev, ve.shape()),
                tensor(dl, &dev, logits.shape()),
            ])
        }
        let dy = dy.contiguous()?;
        let [dve, dl] = by_dtype!(self.name(), v.dtype(), run(ve, logits, &dy))?;
        // dv = dy: the incoming gradient itself, no copy.
        Ok((Some(dy), Some(dve), Some(dl)))
    }
}
