//! Flash attention on CUDA (`kernels/flash.cu`, FlashAttention-2's algorithm on tensor cores):
//! bf16 q, k and v with heads of 64 or 128, causal with a left window, the scale folded into the
//! kernel. The scores never reach memory: the forward saves each query row's log-sum-exp
//! (`[B, H, T]`, f32) and the backward recomputes the probabilities from it. Four kernels: the
//! forward, D = rowsum(dO ∘ O), dk and dv per key block, dq per query block (no atomics, so the
//! gradients are the same on every run).
//!
//! `AUTORESEARCH_ATTENTION=interim` sends bf16 to the interim op instead (cuBLAS scores and a
//! softmax kernel), for measuring one against the other on a device.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use candle_core::{bail, CudaStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::launch::{cpu_fwd_cuda_only, int, launch, output, storage, tensor, view, Read};
use crate::dispatch::flash_attention;
use crate::kernels::{flash, warp_per_row, FlashDkdv, FlashDq, FlashFwd, Geometry, Typed};
use crate::kernels::{FLASH_DELTA, FLASH_DKDV_HD128, FLASH_DKDV_HD64, FLASH_DQ_HD128};
use crate::kernels::{FLASH_DQ_HD64, FLASH_FWD_HD128, FLASH_FWD_HD64};

/// Whether the flash kernels take `q, k, v` (checked to share one shape `[B, T, H, hd]`): as
/// `dispatch::flash_attention` says for their dtype and head size, not empty (a grid needs a
/// block), and each starting 16 bytes into its buffer (the kernels load 8 elements at a time).
pub(crate) fn applies(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<bool> {
    Ok(flash_attention(q.dtype(), q.dim(3)?)?
        && q.elem_count() > 0
        && [q, k, v].into_iter().all(aligned))
}

/// Whether `x` is contiguous and starts 16 bytes into its buffer (bf16).
fn aligned(x: &Tensor) -> bool {
    x.is_contiguous() && x.layout().start_offset().is_multiple_of(8)
}

/// `softmax(scale · q kᵀ + mask) v` on `[B, T, H, hd]`, as [`applies`] allows.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    window: usize,
    scale: f64,
) -> Result<Tensor> {
    let (b, t, h, hd) = q.dims4()?;
    let name = "flash_attention";
    let dims = Dims {
        t: int(name, t)?,
        h: int(name, h)?,
        window: int(name, window.min(t))?,
        scale: scale as f32,
        grid: flash(t, b * h)?,
        hd,
    };
    let op = Flash {
        dims,
        lse: OnceLock::new(),
    };
    q.apply_op3(k, v, op)
}

/// The kernels' scalar arguments and the grid of the tiled kernels.
#[derive(Clone, Copy)]
struct Dims {
    t: i32,
    h: i32,
    window: i32,
    scale: f32,
    grid: Geometry,
    hd: usize,
}

/// The forward, dk/dv and dq kernels for a head size.
fn kernels(
    hd: usize,
) -> (
    &'static Typed<FlashFwd>,
    &'static Typed<FlashDkdv>,
    &'static Typed<FlashDq>,
) {
    if hd == 64 {
        (&FLASH_FWD_HD64, &FLASH_DKDV_HD64, &FLASH_DQ_HD64)
    } else {
        (&FLASH_FWD_HD128, &FLASH_DKDV_HD128, &FLASH_DQ_HD128)
    }
}

struct Flash {
    dims: Dims,
    /// `[B, H, T]` f32, set by the forward.
    lse: OnceLock<Tensor>,
}

type Bf16 = half::bf16;

impl CustomOp3 for Flash {
    fn name(&self) -> &'static str {
        "flash_attention"
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
        let dev = s1.device();
        let d = self.dims;
        let (q, k, v) = (
            view::<Bf16>(self.name(), s1, l1)?,
            view::<Bf16>(self.name(), s2, l2)?,
            view::<Bf16>(self.name(), s3, l3)?,
        );
        let (b, t, h, _) = l1.shape().dims4()?;
        let mut o = output::<Bf16>(dev, q.len())?;
        let mut lse = output::<f32>(dev, b * h * t)?;
        // SAFETY: flash_fwd_hd<HD>_bf16(int t, int heads, int window, float scale,
        // const bf16* q, const bf16* k, const bf16* v, bf16* o, float* lse); q, k, v and o
        // [B, T, H, HD], 16-byte aligned (`applies`), lse [B, H, T]; the grid of `kernels::flash`.
        unsafe {
            launch::<Bf16, _>(
                dev,
                kernels(d.hd).0,
                d.grid,
                (
                    &d.t, &d.h, &d.window, &d.scale, &q, &k, &v, &mut o, &mut lse,
                ),
            )
        }?;
        let _ = self.lse.set(tensor(lse, dev, (b, h, t)));
        Ok((storage(o, dev), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        d_o: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(lse) = self.lse.get() else {
            bail!("flash_attention: backward before forward");
        };
        let name = self.name();
        let d = self.dims;
        let shape = q.shape().clone();
        // The kernels load 16 bytes at a time: a gradient that starts elsewhere is copied.
        let d_o = if aligned(d_o) {
            d_o.clone()
        } else {
            d_o.force_contiguous()?
        };
        let locks = [q, k, v, o, &d_o, lse].map(|t| Read::new(name, t));
        let [q, k, v, o, d_o, lse] = locks;
        let (q, k, v, o, d_o, lse) = (q?, k?, v?, o?, d_o?, lse?);
        let dev = q.device()?;
        let (qs, ks, vs) = (q.view::<Bf16>()?, k.view::<Bf16>()?, v.view::<Bf16>()?);
        let (os, dos, lses) = (o.view::<Bf16>()?, d_o.view::<Bf16>()?, lse.view::<f32>()?);

        let rows = lses.len();
        let mut delta = output::<f32>(&dev, rows)?;
        let (r, hd) = (int(name, rows)?, int(name, d.hd)?);
        // SAFETY: flash_delta_bf16(int rows, int t, int heads, int hd, const bf16* o,
        // const bf16* d_o, float* delta); o and d_o rows·hd long, delta rows; a warp per row.
        unsafe {
            launch::<Bf16, _>(
                &dev,
                &FLASH_DELTA,
                warp_per_row(rows),
                (&r, &d.t, &d.h, &hd, &os, &dos, &mut delta),
            )
        }?;

        let (_, dkdv, dq_kernel) = kernels(d.hd);
        let (mut dq, mut dk, mut dv) = (
            output::<Bf16>(&dev, qs.len())?,
            output::<Bf16>(&dev, qs.len())?,
            output::<Bf16>(&dev, qs.len())?,
        );
        // SAFETY: flash_dkdv_hd<HD>_bf16(int t, int heads, int window, float scale,
        // const bf16* q, k, v, d_o, const float* lse, const float* delta, bf16* dk, bf16* dv):
        // the forward's shapes, delta as lse; the grid of `kernels::flash`.
        unsafe {
            launch::<Bf16, _>(
                &dev,
                dkdv,
                d.grid,
                (
                    &d.t, &d.h, &d.window, &d.scale, &qs, &ks, &vs, &dos, &lses, &delta, &mut dk,
                    &mut dv,
                ),
            )
        }?;
        // SAFETY: flash_dq_hd<HD>_bf16(int t, int heads, int window, float scale,
        // const bf16* q, k, v, d_o, const float* lse, const float* delta, bf16* dq): as above.
        unsafe {
            launch::<Bf16, _>(
                &dev,
                dq_kernel,
                d.grid,
                (
                    &d.t, &d.h, &d.window, &d.scale, &qs, &ks, &vs, &dos, &lses, &delta, &mut dq,
                ),
            )
        }?;
        let grad = |x| Some(tensor(x, &dev, shape.clone()));
        Ok((grad(dq), grad(dk), grad(dv)))
    }
}
