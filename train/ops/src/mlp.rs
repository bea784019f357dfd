//! The whole MLP block, `relu(x W_fcᵀ)² W_projᵀ`, as one op: its `[N, 4C]` activations are
//! never graph nodes, so candle's autograd stores no gradient for them (a zero-filled tensor and
//! an add each, on the largest tensors of the step).

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, tensor, Read};
use crate::matmul::{matmul, Parallelism, View, ViewMut};
use crate::simd::dispatch;

/// Elements per rayon task of the elementwise passes.
const PER_TASK: usize = 1 << 15;

/// `relu(x W_fcᵀ)² W_projᵀ` for `x: [..., C]`, `w_fc: [H, C]`, `w_proj: [C, H]`: the training
/// file's `mlp` (two `linear`s around ReLU²), gradients for all three.
///
/// Saves the pre-activation `x W_fcᵀ` (`[N, H]` f32, as candle's graph would). The backward
/// recomputes `relu²` from it and runs the four products (`dW_proj = gᵀ a`, `da = g W_proj`,
/// `dW_fc = dhᵀ x`, `dx = dh W_fc`) multi-threaded on the `gemm` kernels, with the activation's
/// derivative applied in place in between.
pub fn mlp(x: &Tensor, w_fc: &Tensor, w_proj: &Tensor) -> Result<Tensor> {
    let (hidden, c) = w_fc.dims2()?;
    if w_proj.dims2()? != (c, hidden) || x.dims().last() != Some(&c) {
        bail!(
            "mlp: x {:?}, w_fc {:?} and w_proj {:?} do not fit",
            x.shape(),
            w_fc.shape(),
            w_proj.shape()
        );
    }
    if !is_cpu_f32(&[x, w_fc, w_proj]) {
        // ReLU² dispatches on its own: to the CUDA kernel where it applies.
        let h = crate::relu_sq(&composite::linear(x, w_fc)?)?;
        return composite::linear(&h, w_proj);
    }
    x.contiguous()?.apply_op3(
        &w_fc.contiguous()?,
        &w_proj.contiguous()?,
        Mlp {
            pre: OnceLock::new(),
        },
    )
}

struct Mlp {
    /// `x W_fcᵀ`, `[N, H]`, set by the forward.
    pre: OnceLock<Vec<f32>>,
}

/// `relu(h)²` into `a`.
fn activate(h: &[f32], a: &mut [f32]) {
    a.par_chunks_mut(PER_TASK)
        .zip(h.par_chunks(PER_TASK))
        .for_each(|(a, h)| {
            dispatch(
                #[inline(always)]
                || {
                    for (a, &h) in a.iter_mut().zip(h) {
                        let r = h.max(0.0);
                        *a = r * r;
                    }
                },
            )
        });
}

impl CustomOp3 for Mlp {
    fn name(&self) -> &'static str {
        "mlp"
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
        let w_fc = f32_slice(self.name(), s2, l2)?;
        let w_proj = f32_slice(self.name(), s3, l3)?;
        let (hidden, c) = l2.shape().dims2()?;
        let n = x.len() / c;
        let par = Parallelism::Rayon(0);
        let mut pre = vec![0f32; n * hidden];
        let x_view = View::rows(x, n, c, c);
        let fc = View::rows(w_fc, hidden, c, c);
        matmul(
            ViewMut::rows(&mut pre, n, hidden, hidden),
            None,
            x_view,
            fc.t(),
            1.0,
            par,
        );
        let mut a = vec![0f32; n * hidden];
        activate(&pre, &mut a);
        let mut y = vec![0f32; n * c];
        let proj = View::rows(w_proj, c, hidden, hidden);
        let a_view = View::rows(&a, n, hidden, hidden);
        matmul(
            ViewMut::rows(&mut y, n, c, c),
            None,
            a_view,
            proj.t(),
            1.0,
            par,
        );
        let _ = self.pre.set(pre);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w_fc: &Tensor,
        w_proj: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(pre) = self.pre.get() else {
            bail!("mlp: backward before forward");
        };
        let g = g.contiguous()?;
        let name = self.name();
        let (x_lock, fc_lock) = (Read::new(name, x)?, Read::new(name, w_fc)?);
        let (proj_lock, g_lock) = (Read::new(name, w_proj)?, Read::new(name, &g)?);
        let (xs, fcs, projs, gs) = (
            x_lock.f32()?,
            fc_lock.f32()?,
            proj_lock.f32()?,
            g_lock.f32()?,
        );
        let (hidden, c) = w_fc.dims2()?;
        let n = xs.len() / c;
        let par = Parallelism::Rayon(0);
        let (x_view, g_view) = (View::rows(xs, n, c, c), View::rows(gs, n, c, c));
        let (fc, proj) = (
            View::rows(fcs, hidden, c, c),
            View::rows(projs, c, hidden, hidden),
        );

        let mut a = vec![0f32; n * hidden];
        activate(pre, &mut a);
        let mut d_proj = vec![0f32; c * hidden];
        let a_view = View::rows(&a, n, hidden, hidden);
        matmul(
            ViewMut::rows(&mut d_proj, c, hidden, hidden),
            None,
            g_view.t(),
            a_view,
            1.0,
            par,
        );
        // The activations are spent: their buffer takes the gradient wrt them, then wrt `pre`.
        let mut dh = a;
        matmul(
            ViewMut::rows(&mut dh, n, hidden, hidden),
            None,
            g_view,
            proj,
            1.0,
            par,
        );
        dh.par_chunks_mut(PER_TASK)
            .zip(pre.par_chunks(PER_TASK))
            .for_each(|(dh, pre)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for (d, &p) in dh.iter_mut().zip(pre) {
                            *d *= 2.0 * p.max(0.0);
                        }
                    },
                )
            });
        let dh_view = View::rows(&dh, n, hidden, hidden);
        let mut d_fc = vec![0f32; hidden * c];
        matmul(
            ViewMut::rows(&mut d_fc, hidden, c, c),
            None,
            dh_view.t(),
            x_view,
            1.0,
            par,
        );
        let mut dx = vec![0f32; n * c];
        matmul(ViewMut::rows(&mut dx, n, c, c), None, dh_view, fc, 1.0, par);
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(d_fc, (hidden, c))?),
            Some(tensor(d_proj, (c, hidden))?),
        ))
    }
}
