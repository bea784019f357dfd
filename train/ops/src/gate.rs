//! The value-embedding gate of the attention layers that have a value embedding:
//! `v + ve · 2σ(x[..., :G] · gateᵀ)`, the gate broadcast over the head dimension.

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, rows_per_task, tensor, Read};
use crate::simd::{dispatch, dot, sigmoid};

/// `v + ve · 2σ(x[..., :G] · gateᵀ)` for `v`, `ve: [B, T, H, hd]`, `x: [B, T, C]` with `C >= G`,
/// `gate: [H, G]`: the training file's value-embedding mix, gradients for all four.
///
/// Two ops: the gate logits `[B, T, H]` (reads only the first `G` channels of each row of `x`, no
/// narrow or copy; its backward writes `dx` with zeros past `G` and reduces `dgate` over the rows
/// per task), then the mix (one pass each way: `dv = dy` without a copy, `dve = dy · 2σ`, and the
/// logits' gradient `2σ(1−σ) · Σ_hd dy ∘ ve`). Saves nothing beyond the small logits.
pub fn value_gate(v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (b, t, h, _) = v.dims4()?;
    let (gh, g) = gate.dims2()?;
    let (xb, xt, c) = x.dims3()?;
    if ve.shape() != v.shape() || (xb, xt) != (b, t) || gh != h || c < g {
        bail!(
            "value_gate: v {:?}, ve {:?}, x {:?} and gate {:?} do not fit",
            v.shape(),
            ve.shape(),
            x.shape(),
            gate.shape()
        );
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::ValueGate, &[v, ve, x, gate])? {
        return crate::cuda::value_gate(v, ve, x, gate);
    }
    if !is_cpu_f32(&[v, ve, x, gate]) {
        return composite::value_gate(v, ve, x, gate);
    }
    let logits = x.contiguous()?.apply_op2(&gate.contiguous()?, GateLogits)?;
    v.contiguous()?
        .apply_op3(&ve.contiguous()?, &logits, GateMix)
}

/// `x[..., :G] · gateᵀ`: `[B, T, C]` and `[H, G]` to `[B, T, H]`.
struct GateLogits;

impl CustomOp2 for GateLogits {
    fn name(&self) -> &'static str {
        "value_gate_logits"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s1, l1)?;
        let gate = f32_slice(self.name(), s2, l2)?;
        let (b, t, c) = l1.shape().dims3()?;
        let (h, g) = l2.shape().dims2()?;
        let mut logits = vec![0f32; b * t * h];
        let per = rows_per_task(b * t);
        logits
            .par_chunks_mut(per * h)
            .zip(x.par_chunks(per * c))
            .for_each(|(logits, x)| {
                dispatch(
                    #[inline(always)]
                    || {
                        for (logits, x) in logits.chunks_exact_mut(h).zip(x.chunks_exact(c)) {
                            for (l, gate) in logits.iter_mut().zip(gate.chunks_exact(g)) {
                                *l = dot(&x[..g], gate);
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(logits), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gate: &Tensor,
        _logits: &Tensor,
        dl: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dl = dl.contiguous()?;
        let (_, _, c) = x.dims3()?;
        let (h, g) = gate.dims2()?;
        let name = self.name();
        let (x_lock, gate_lock, dl_lock) = (
            Read::new(name, x)?,
            Read::new(name, gate)?,
            Read::new(name, &dl)?,
        );
        let (xs, gates, dls) = (x_lock.f32()?, gate_lock.f32()?, dl_lock.f32()?);
        let mut dx = vec![0f32; xs.len()];
        let rows = xs.len() / c;
        let per = rows_per_task(rows);
        let dgate = dx
            .par_chunks_mut(per * c)
            .zip(xs.par_chunks(per * c))
            .zip(dls.par_chunks(per * h))
            .map(|((dx, x), dl)| {
                dispatch(
                    #[inline(always)]
                    || {
                        let mut dgate = vec![0f32; h * g];
                        let rows = dx.chunks_exact_mut(c).zip(x.chunks_exact(c));
                        for ((dx, x), dl) in rows.zip(dl.chunks_exact(h)) {
                            let dx = &mut dx[..g];
                            for ((&d, gate), dgate) in dl
                                .iter()
                                .zip(gates.chunks_exact(g))
                                .zip(dgate.chunks_exact_mut(g))
                            {
                                for ((dx, dg), (&gate, &x)) in
                                    dx.iter_mut().zip(dgate).zip(gate.iter().zip(&x[..g]))
                                {
                                    *dx += d * gate;
                                    *dg += d * x;
                                }
                            }
                        }
                        dgate
                    },
                )
            })
            .reduce(
                || vec![0f32; h * g],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        Ok((
            Some(tensor(dx, x.shape())?),
            Some(tensor(dgate, gate.shape())?),
        ))
    }
}

/// `v + ve · 2σ(logits)`, the logits `[B, T, H]` broadcast over the head dimension.
struct GateMix;

impl CustomOp3 for GateMix {
    fn name(&self) -> &'static str {
        "value_gate_mix"
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
        let v = f32_slice(self.name(), s1, l1)?;
        let ve = f32_slice(self.name(), s2, l2)?;
        let logits = f32_slice(self.name(), s3, l3)?;
        let hd = l1.shape().dims4()?.3;
        let mut y = vec![0f32; v.len()];
        let per = rows_per_task(logits.len());
        y.par_chunks_mut(per * hd)
            .zip(v.par_chunks(per * hd).zip(ve.par_chunks(per * hd)))
            .zip(logits.par_chunks(per))
            .for_each(|((y, (v, ve)), logits)| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = y.chunks_exact_mut(hd).zip(v.chunks_exact(hd));
                        for ((y, v), (ve, &l)) in rows.zip(ve.chunks_exact(hd).zip(logits)) {
                            let s = 2.0 * sigmoid(l);
                            for ((y, &v), &ve) in y.iter_mut().zip(v).zip(ve) {
                                *y = v + ve * s;
                            }
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        v: &Tensor,
        ve: &Tensor,
        logits: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let hd = v.dims4()?.3;
        let name = self.name();
        let (ve_lock, l_lock, dy_lock) = (
            Read::new(name, ve)?,
            Read::new(name, logits)?,
            Read::new(name, &dy)?,
        );
        let (ves, ls, dys) = (ve_lock.f32()?, l_lock.f32()?, dy_lock.f32()?);
        let mut dve = vec![0f32; ves.len()];
        let mut dl = vec![0f32; ls.len()];
        let per = rows_per_task(ls.len());
        dve.par_chunks_mut(per * hd)
            .zip(dl.par_chunks_mut(per))
            .zip(ves.par_chunks(per * hd).zip(dys.par_chunks(per * hd)))
            .zip(ls.par_chunks(per))
            .for_each(|(((dve, dl), (ve, dy)), ls)| {
                dispatch(
                    #[inline(always)]
                    || {
                        let rows = dve.chunks_exact_mut(hd).zip(dl.iter_mut());
                        let inputs = ve.chunks_exact(hd).zip(dy.chunks_exact(hd)).zip(ls);
                        for ((dve, dl), ((ve, dy), &l)) in rows.zip(inputs) {
                            let s = sigmoid(l);
                            for (dve, &dy) in dve.iter_mut().zip(dy) {
                                *dve = dy * (2.0 * s);
                            }
                            *dl = 2.0 * s * (1.0 - s) * dot(dy, ve);
                        }
                    },
                )
            });
        Ok((
            Some(dy.clone()),
            Some(tensor(dve, ve.shape())?),
            Some(tensor(dl, logits.shape())?),
        ))
    }
}
