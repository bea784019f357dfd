//! AdamW on CUDA: one kernel computes the new weight and moments (f32), which are copied into
//! place, where the composite update launches about a dozen kernels and makes five tensors.

use candle_core::{Result, Tensor};

use super::launch::{launch, output, tensor, Read};
use crate::kernels::{elementwise, ADAMW};
use crate::optim::AdamStep;

/// One AdamW step on f32 CUDA tensors of one shape (checked by the caller), in place.
pub(crate) fn adamw_step(
    weight: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &AdamStep,
) -> Result<()> {
    let op = "adamw_step";
    let (w_in, g_in, m_in, v_in) = (
        weight.contiguous()?,
        grad.contiguous()?,
        m.contiguous()?,
        v.contiguous()?,
    );
    let (w_new, m_new, v_new) = {
        let (wr, gr) = (Read::new(op, &w_in)?, Read::new(op, &g_in)?);
        let (mr, vr) = (Read::new(op, &m_in)?, Read::new(op, &v_in)?);
        let dev = wr.device()?;
        let (ws, gs) = (wr.view::<f32>()?, gr.view::<f32>()?);
        let (ms, vs) = (mr.view::<f32>()?, vr.view::<f32>()?);
        let n = ws.len();
        let (mut w_out, mut m_out, mut v_out) = (
            output::<f32>(&dev, n)?,
            output::<f32>(&dev, n)?,
            output::<f32>(&dev, n)?,
        );
        let (c1, c2) = (1.0 - s.beta1.powi(s.step), 1.0 - s.beta2.powi(s.step));
        let settings = [
            s.lr,
            s.beta1,
            s.beta2,
            s.eps,
            1.0 - s.lr * s.weight_decay,
            1.0 / c1,
            1.0 / c2,
        ]
        .map(|x| x as f32);
        let [lr, b1, b2, eps, keep, inv_c1, inv_c2] = settings;
        // SAFETY: adamw_f32(size_t n, const float* w, const float* g, const float* m,
        // const float* v, float lr, float beta1, float beta2, float eps, float keep,
        // float inv_c1, float inv_c2, float* w_out, float* m_out, float* v_out), all buffers n.
        unsafe {
            launch::<f32, _>(
                &dev,
                &ADAMW,
                elementwise(n),
                (
                    &n, &ws, &gs, &ms, &vs, &lr, &b1, &b2, &eps, &keep, &inv_c1, &inv_c2,
                    &mut w_out, &mut m_out, &mut v_out,
                ),
            )
        }?;
        let shape = weight.shape();
        (
            tensor(w_out, &dev, shape),
            tensor(m_out, &dev, shape),
            tensor(v_out, &dev, shape),
        )
    };
    weight.slice_set(&w_new, 0, 0)?;
    m.slice_set(&m_new, 0, 0)?;
    v.slice_set(&v_new, 0, 0)
}
