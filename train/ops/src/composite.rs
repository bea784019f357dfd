//! Today's composite code, from the training file (`train/src/train.rs`): each op as a chain of
//! candle ops with candle's own autograd. It is what the fused ops fall back to on other devices
//! and dtypes (until the CUDA kernels exist), and the reference the tests and `op-bench` check the
//! fused ops against. Keep it in step with the training file's math.

use candle_core::{DType, Device, Result, Tensor, D};

pub fn rms_norm(x: &Tensor) -> Result<Tensor> {
    let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(mean_sq + 1e-6)?.sqrt()?)
}

/// `x @ w^T` for `x: [..., in]`, `w: [out, in]`, in `x`'s dtype.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let w = w.to_dtype(x.dtype())?;
    let (rows, cols) = w.dims2()?;
    let mut out_shape = x.dims().to_vec();
    *out_shape.last_mut().unwrap() = rows;
    x.reshape(((), cols))?.matmul(&w.t()?)?.reshape(out_shape)
}

/// Softmax over the last dimension, the max detached (it is there for range only).
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// Mean cross-entropy of `targets` under `logits: [N, V]`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?;
    (log_sum_exp - picked)?.mean_all()
}

/// The soft-cap of the training file's `forward`, in f32.
pub fn softcap(logits: &Tensor, cap: f64) -> Result<Tensor> {
    (logits.to_dtype(DType::F32)? / cap)?.tanh()? * cap
}

pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// Rotary embedding on `[B, T, H, hd]` with `cos`/`sin` of shape `[1, T, 1, hd/2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let a = (x1.broadcast_mul(cos)? + x2.broadcast_mul(sin)?)?;
    let b = (x2.broadcast_mul(cos)? - x1.broadcast_mul(sin)?)?;
    Tensor::cat(&[a, b], D::Minus1)
}

/// `scale · rms_norm(rope(x))` with tables of `T' >= T` positions in any shape.
pub fn rope_norm(x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor> {
    let (_, t, _, hd) = x.dims4()?;
    let table = |c: &Tensor| -> Result<Tensor> {
        c.flatten_all()?
            .narrow(0, 0, t * hd / 2)?
            .reshape((1, t, 1, hd / 2))?
            .to_dtype(x.dtype())
    };
    rms_norm(&rope(x, &table(cos)?, &table(sin)?)?)? * scale
}

/// The training file's rotary tables for `t` positions: `[1, T, 1, hd/2]` each, f32.
pub fn rope_tables(t: usize, head_dim: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|j| (1.0 / 10_000f64.powf(2.0 * j as f64 / head_dim as f64)) as f32)
        .collect();
    let pos: Vec<f32> = (0..t).map(|t| t as f32).collect();
    let pos = Tensor::from_vec(pos, (t, 1), device)?;
    let freqs = pos.broadcast_mul(&Tensor::from_vec(inv_freq, (1, half), device)?)?;
    let shape = (1, t, 1, half);
    Ok((freqs.cos()?.reshape(shape)?, freqs.sin()?.reshape(shape)?))
}

/// The training file's additive mask for `window`, `[1, 1, T, T]`: 0 where key `j` is visible
/// from query `i` (`j <= i` and `i − j < window`), −inf elsewhere. Built on `device` itself.
pub fn mask(t: usize, window: usize, device: &Device, dtype: DType) -> Result<Tensor> {
    let i = Tensor::arange(0f32, t as f32, device)?.reshape((t, 1))?;
    let j = Tensor::arange(0f32, t as f32, device)?.reshape((1, t))?;
    let seen = j
        .broadcast_le(&i)?
        .mul(&j.broadcast_gt(&(&i - window as f64)?)?)?;
    let zeros = Tensor::zeros((t, t), dtype, device)?;
    let blocked = Tensor::full(f32::NEG_INFINITY, (t, t), device)?.to_dtype(dtype)?;
    seen.where_cond(&zeros, &blocked)?.reshape((1, 1, t, t))
}

/// The attention core of the training file's `Gpt::attention`, on `[B, T, H, hd]`, with the
/// scores multiplied by `scale`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, window: usize, scale: f64) -> Result<Tensor> {
    let (b, t, h, hd) = q.dims4()?;
    let q = (q * scale)?.transpose(1, 2)?.contiguous()?;
    let k = k.transpose(1, 2)?.contiguous()?;
    let v = v.transpose(1, 2)?.contiguous()?;
    let mask = mask(t, window, q.device(), q.dtype())?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(&mask)?;
    let weights = softmax(&scores)?;
    weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h, hd))
}

/// The value-embedding mix of the training file's `Gpt::attention`.
pub fn value_gate(v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let g = (sigmoid(&linear(&x.narrow(D::Minus1, 0, gate.dim(1)?)?, gate)?)? * 2.0)?;
    v + ve.broadcast_mul(&g.unsqueeze(3)?)?
}

pub fn relu_sq(x: &Tensor) -> Result<Tensor> {
    x.relu()?.sqr()
}

/// The training file's `Gpt::embed` before its cast: rows of `table` at `ids` (any shape).
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let mut shape = ids.dims().to_vec();
    shape.push(table.dim(1)?);
    table.index_select(&ids.flatten_all()?, 0)?.reshape(shape)
}

/// The residual mix of the training file's `forward`.
pub fn lambda_mix(x: &Tensor, x0: &Tensor, resid: &Tensor, mix: &Tensor) -> Result<Tensor> {
    let (resid, mix) = (resid.to_dtype(x.dtype())?, mix.to_dtype(x.dtype())?);
    x.broadcast_mul(&resid.flatten_all()?)? + x0.broadcast_mul(&mix.flatten_all()?)?
}

/// The training file's `newton_schulz`: the products in `dtype`, the result in f32.
pub fn newton_schulz(g: &Tensor, steps: usize, dtype: DType) -> Result<Tensor> {
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let (rows, cols) = g.dims2()?;
    let mut x = g.to_dtype(dtype)?;
    if rows > cols {
        x = x.t()?;
    }
    let norm = (x.to_dtype(DType::F32)?.sqr()?.sum_all()?.sqrt()? + 1e-7)?.to_dtype(dtype)?;
    x = x.broadcast_div(&norm)?;
    for _ in 0..steps {
        let gram = x.matmul(&x.t()?)?;
        let poly = ((&gram * b)? + (gram.matmul(&gram)? * c)?)?;
        x = ((&x * a)? + poly.matmul(&x)?)?;
    }
    if rows > cols {
        x = x.t()?;
    }
    x.to_dtype(DType::F32)
}

/// The training file's Adam branch, with decoupled weight decay `wd` (0 there): the new
/// `(w, m, v)`.
pub fn adam(
    (w, g, m, v): (&Tensor, &Tensor, &Tensor, &Tensor),
    lr: f64,
    (beta1, beta2, eps, wd): (f64, f64, f64, f64),
    t: i32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = ((m * beta1)? + (g * (1.0 - beta1))?)?;
    let v = ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
    let m_hat = (&m / (1.0 - beta1.powi(t)))?;
    let v_hat = (&v / (1.0 - beta2.powi(t)))?;
    let update = m_hat.div(&(v_hat.sqrt()? + eps)?)?;
    let w = if wd == 0.0 {
        w.clone()
    } else {
        (w * (1.0 - lr * wd))?
    };
    Ok(((w - (update * lr)?)?, m, v))
}

/// The training file's Muon branch, Newton-Schulz in `dtype`: the new `(w, m)`.
pub fn muon(
    (w, g, m): (&Tensor, &Tensor, &Tensor),
    (lr, momentum, weight_decay): (f64, f64, f64),
    steps: usize,
    dtype: DType,
) -> Result<(Tensor, Tensor)> {
    let m = ((m * momentum)? + (g * (1.0 - momentum))?)?;
    let nesterov = ((g * (1.0 - momentum))? + (&m * momentum)?)?;
    let (rows, cols) = w.dims2()?;
    let update =
        (newton_schulz(&nesterov, steps, dtype)? * (rows as f64 / cols as f64).max(1.0).sqrt())?;
    let agree = update.mul(w)?.gt(0.0)?.to_dtype(DType::F32)?;
    let decay = (w.mul(&agree)? * (lr * weight_decay))?;
    Ok((((w - (update * lr)?)? - decay)?, m))
}
