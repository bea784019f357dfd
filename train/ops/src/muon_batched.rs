//! Muon for the devices the fused CPU update does not serve (CUDA, bf16 products): the training
//! file's update as candle ops, but with the matrices of one shape stacked, so each of its passes
//! and Newton-Schulz's products runs once per shape (a batched product) instead of once per
//! matrix: about 20 launches per shape and iteration, where the per-matrix update makes that many
//! per matrix.

use std::collections::BTreeMap;

use candle_core::{DType, Result, Tensor, D};

use crate::optim::{MuonParam, MuonStep};

/// One Muon step on every matrix of `params`, in place; the same math as
/// [`crate::composite::muon`] on each.
pub(crate) fn muon_step(params: &[MuonParam], s: &MuonStep) -> Result<()> {
    let mut by_shape: BTreeMap<(usize, usize), Vec<&MuonParam>> = BTreeMap::new();
    for p in params {
        by_shape.entry(p.weight.dims2()?).or_default().push(p);
    }
    for ((rows, cols), group) in by_shape {
        let stack = |ts: Vec<&Tensor>| Tensor::stack(&ts, 0);
        let w = stack(group.iter().map(|p| p.weight).collect())?;
        let g = stack(group.iter().map(|p| p.grad).collect())?;
        let m = stack(group.iter().map(|p| p.momentum).collect())?;
        let mu = s.momentum;
        let m = ((m * mu)? + (&g * (1.0 - mu))?)?;
        let nesterov = ((&g * (1.0 - mu))? + (&m * mu)?)?;
        let scale = (rows as f64 / cols as f64).max(1.0).sqrt();
        let update = (newton_schulz(&nesterov, s.ns_steps, s.compute_dtype)? * scale)?;
        let agree = update.mul(&w)?.gt(0.0)?.to_dtype(w.dtype())?;
        let decay = (w.mul(&agree)? * (s.lr * s.weight_decay))?;
        let w = ((&w - (update * s.lr)?)? - decay)?;
        for (i, p) in group.iter().enumerate() {
            p.weight.slice_set(&w.get(i)?, 0, 0)?;
            p.momentum.slice_set(&m.get(i)?, 0, 0)?;
        }
    }
    Ok(())
}

/// [`crate::composite::newton_schulz`] on a stack `[n, rows, cols]`: each matrix normalised by its
/// own Frobenius norm, the products batched; the result in f32.
fn newton_schulz(g: &Tensor, steps: usize, dtype: DType) -> Result<Tensor> {
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    let (_, rows, cols) = g.dims3()?;
    let mut x = g.to_dtype(dtype)?;
    if rows > cols {
        x = x.transpose(1, 2)?;
    }
    let norm = x
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sum_keepdim(D::Minus2)?
        .sqrt()?;
    x = x.broadcast_div(&(norm + 1e-7)?.to_dtype(dtype)?)?;
    for _ in 0..steps {
        let gram = x.matmul(&x.transpose(1, 2)?)?;
        let poly = ((&gram * b)? + (gram.matmul(&gram)? * c)?)?;
        x = ((&x * a)? + poly.matmul(&x)?)?;
    }
    if rows > cols {
        x = x.transpose(1, 2)?;
    }
    x.to_dtype(DType::F32)
}
