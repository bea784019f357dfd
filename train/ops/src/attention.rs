//! Causal self-attention with a left window, flash-attention-2 style on the CPU: the scores and
//! probabilities exist only one block of queries at a time, the forward saves the log-sum-exp of
//! every query row, and the backward recomputes the probabilities from it.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::composite;
use crate::cpu::{f32_slice, is_cpu_f32, tensor, Read};
use crate::matmul::{matmul, Parallelism, View, ViewMut};
use crate::simd::{dispatch, dot, exp, max, sum};

/// Query rows per block: the block's scores (`BLOCK x (BLOCK + window - 1)` at most) stay in the
/// core's cache, and the products are large enough for the matrix kernels.
const BLOCK: usize = 64;

/// `softmax(scale · q kᵀ + mask) v` per batch row and head, where query `i` sees keys
/// `i + 1 − window ..= i` (causal, `window` keys at most; `window >= T` is plain causal).
///
/// `q`, `k`, `v`, output: `[B, T, H, hd]`: the layout the projections produce, so no
/// transposes are needed around it. `scale` multiplies the scores (the training file folds
/// `1/sqrt(hd)` into q instead and passes 1).
///
/// Saves the log-sum-exp of every query row (`[B, H, T]`, f32), never the `T x T`
/// probabilities. The backward recomputes them block by block and produces dq, dk and dv with the
/// flash-attention-2 recurrences (`D = rowsum(dO ∘ O)`, `dS = P ∘ (dP − D)`). Threads split the
/// batch rows; the products run on the `gemm` crate's kernels.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, window: usize, scale: f64) -> Result<Tensor> {
    q.dims4()?;
    if k.shape() != q.shape() || v.shape() != q.shape() {
        bail!(
            "attention: q {:?}, k {:?} and v {:?} must have one shape [B, T, H, hd]",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    if window == 0 {
        bail!("attention: the window must hold at least one key");
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::applies(crate::dispatch::CudaOp::Attention, &[q, k, v])? {
        return crate::cuda::attention(q, k, v, window, scale);
    }
    if !is_cpu_f32(&[q, k, v]) {
        return composite::attention(q, k, v, window, scale);
    }
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            window,
            scale: scale as f32,
            lse: OnceLock::new(),
        },
    )
}

struct Attention {
    window: usize,
    scale: f32,
    /// Log-sum-exp of every query row's scaled scores, `[B, H, T]`, set by the forward.
    lse: OnceLock<Vec<f32>>,
}

/// The shapes one batch row works on.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    h: usize,
    d: usize,
    window: usize,
    scale: f32,
    parallelism: Parallelism,
}

impl Dims {
    fn new(shape: &Shape, window: usize, scale: f32) -> Result<Self> {
        let (b, t, h, d) = shape.dims4()?;
        // Split the batch rows across threads; with fewer rows than threads, split the products.
        let parallelism = if b < rayon::current_num_threads() {
            Parallelism::Rayon(0)
        } else {
            Parallelism::None
        };
        Ok(Self {
            t,
            h,
            d,
            window,
            scale,
            parallelism,
        })
    }

    /// Elements between consecutive tokens of one head.
    fn row(&self) -> usize {
        self.h * self.d
    }

    /// The first key query `i` sees.
    fn first_key(&self, i: usize) -> usize {
        (i + 1).saturating_sub(self.window)
    }

    /// The query blocks: `(i0, i1, j0)`, queries `i0..i1` over keys `j0..i1`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        (0..self.t)
            .step_by(BLOCK)
            .map(|i0| (i0, (i0 + BLOCK).min(self.t), self.first_key(i0)))
    }

    /// Scratch for one block's scores.
    fn block_scratch(&self) -> Vec<f32> {
        vec![0f32; BLOCK * self.t.min(BLOCK + self.window - 1)]
    }

    /// `nq x d` rows of one head of `x` (`[T, H, d]`) from token `i0`.
    fn head<'a>(&self, x: &'a [f32], head: usize, i0: usize, n: usize) -> View<'a> {
        View::rows(&x[i0 * self.row() + head * self.d..], n, self.d, self.row())
    }

    fn head_mut<'a>(&self, x: &'a mut [f32], head: usize, i0: usize, n: usize) -> ViewMut<'a> {
        let row = self.row();
        ViewMut::rows(&mut x[i0 * row + head * self.d..], n, self.d, row)
    }

    /// `s = scale · q[i0..i1] k[j0..i1]ᵀ` for one head.
    fn scores(
        &self,
        s: &mut [f32],
        q: &[f32],
        k: &[f32],
        head: usize,
        block: (usize, usize, usize),
    ) {
        let (i0, i1, j0) = block;
        let (nq, nk) = (i1 - i0, i1 - j0);
        matmul(
            ViewMut::rows(s, nq, nk, nk),
            None,
            self.head(q, head, i0, nq),
            self.head(k, head, j0, nk).t(),
            self.scale,
            self.parallelism,
        );
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "attention"
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
        let q = f32_slice(self.name(), s1, l1)?;
        let k = f32_slice(self.name(), s2, l2)?;
        let v = f32_slice(self.name(), s3, l3)?;
        let dims = Dims::new(l1.shape(), self.window, self.scale)?;
        let per_batch = dims.t * dims.row();
        let mut out = vec![0f32; q.len()];
        let mut lse = vec![0f32; q.len() / dims.d];
        out.par_chunks_mut(per_batch)
            .zip(lse.par_chunks_mut(dims.h * dims.t))
            .zip(q.par_chunks(per_batch))
            .zip(k.par_chunks(per_batch).zip(v.par_chunks(per_batch)))
            .for_each(|(((out, lse), q), (k, v))| forward(dims, q, k, v, out, lse));
        let _ = self.lse.set(lse);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(lse) = self.lse.get() else {
            bail!("attention: backward before forward");
        };
        let dims = Dims::new(q.shape(), self.window, self.scale)?;
        let shape = q.shape().clone();
        let dout = dout.contiguous()?;
        let name = self.name();
        let locks = [q, k, v, out, &dout].map(|t| Read::new(name, t));
        let [q, k, v, o, dout] = locks;
        let (q, k, v, o, dout) = (q?, k?, v?, o?, dout?);
        let (q, k, v, o, dout) = (q.f32()?, k.f32()?, v.f32()?, o.f32()?, dout.f32()?);
        let per_batch = dims.t * dims.row();
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; q.len()],
            vec![0f32; q.len()],
            vec![0f32; q.len()],
        );
        dq.par_chunks_mut(per_batch)
            .zip(dk.par_chunks_mut(per_batch))
            .zip(dv.par_chunks_mut(per_batch))
            .zip(lse.par_chunks(dims.h * dims.t))
            .zip(q.par_chunks(per_batch).zip(k.par_chunks(per_batch)))
            .zip(v.par_chunks(per_batch).zip(o.par_chunks(per_batch)))
            .zip(dout.par_chunks(per_batch))
            .for_each(|((((((dq, dk), dv), lse), (q, k)), (v, o)), dout)| {
                let grads = Grads { dq, dk, dv };
                backward(
                    dims,
                    Inputs {
                        q,
                        k,
                        v,
                        o,
                        dout,
                        lse,
                    },
                    grads,
                )
            });
        Ok((
            Some(tensor(dq, shape.clone())?),
            Some(tensor(dk, shape.clone())?),
            Some(tensor(dv, shape)?),
        ))
    }
}

/// One batch row: `q`, `k`, `v`, `out` are `[T, H, d]`, `lse` is `[H, T]`.
fn forward(dims: Dims, q: &[f32], k: &[f32], v: &[f32], out: &mut [f32], lse: &mut [f32]) {
    let mut scores = dims.block_scratch();
    for head in 0..dims.h {
        for block in dims.blocks() {
            let (i0, i1, j0) = block;
            let (nq, nk) = (i1 - i0, i1 - j0);
            let s = &mut scores[..nq * nk];
            dims.scores(s, q, k, head, block);
            let lse = &mut lse[head * dims.t + i0..][..nq];
            dispatch(
                #[inline(always)]
                || {
                    for ((i, s), lse) in (i0..).zip(s.chunks_exact_mut(nk)).zip(lse) {
                        let (lo, hi) = (dims.first_key(i) - j0, i + 1 - j0);
                        let seen = &mut s[lo..hi];
                        let m = max(seen);
                        for x in seen.iter_mut() {
                            *x = exp(*x - m);
                        }
                        let total = sum(seen);
                        let inv = 1.0 / total;
                        for x in seen.iter_mut() {
                            *x *= inv;
                        }
                        s[..lo].fill(0.0);
                        s[hi..].fill(0.0);
                        *lse = m + total.ln();
                    }
                },
            );
            matmul(
                dims.head_mut(out, head, i0, nq),
                None,
                View::rows(s, nq, nk, nk),
                dims.head(v, head, j0, nk),
                1.0,
                dims.parallelism,
            );
        }
    }
}

/// What the backward of one batch row reads.
struct Inputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    o: &'a [f32],
    dout: &'a [f32],
    lse: &'a [f32],
}

/// What the backward of one batch row writes (zeroed on entry).
struct Grads<'a> {
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

/// One batch row's backward, a head and a query block at a time.
fn backward(dims: Dims, x: Inputs, g: Grads) {
    let (mut p, mut ds) = (dims.block_scratch(), dims.block_scratch());
    let mut delta = vec![0f32; dims.t];
    let (row, d) = (dims.row(), dims.d);
    for head in 0..dims.h {
        dispatch(
            #[inline(always)]
            || {
                for (i, delta) in delta.iter_mut().enumerate() {
                    let at = i * row + head * d;
                    *delta = dot(&x.dout[at..][..d], &x.o[at..][..d]);
                }
            },
        );
        for block in dims.blocks() {
            let (i0, i1, j0) = block;
            let (nq, nk) = (i1 - i0, i1 - j0);
            let (p, ds) = (&mut p[..nq * nk], &mut ds[..nq * nk]);
            dims.scores(p, x.q, x.k, head, block);
            matmul(
                ViewMut::rows(ds, nq, nk, nk),
                None,
                dims.head(x.dout, head, i0, nq),
                dims.head(x.v, head, j0, nk).t(),
                1.0,
                dims.parallelism,
            );
            let lse = &x.lse[head * dims.t + i0..][..nq];
            let delta = &delta[i0..i1];
            dispatch(
                #[inline(always)]
                || {
                    let rows = p.chunks_exact_mut(nk).zip(ds.chunks_exact_mut(nk));
                    for ((i, (p, ds)), (&lse, &delta)) in
                        (i0..).zip(rows).zip(lse.iter().zip(delta))
                    {
                        let (lo, hi) = (dims.first_key(i) - j0, i + 1 - j0);
                        for (p, ds) in p[lo..hi].iter_mut().zip(&mut ds[lo..hi]) {
                            *p = exp(*p - lse);
                            *ds = *p * (*ds - delta);
                        }
                        for part in [0..lo, hi..nk] {
                            p[part.clone()].fill(0.0);
                            ds[part].fill(0.0);
                        }
                    }
                },
            );
            let p = View::rows(p, nq, nk, nk);
            let ds = View::rows(ds, nq, nk, nk);
            let dout_block = dims.head(x.dout, head, i0, nq);
            matmul(
                dims.head_mut(&mut *g.dv, head, j0, nk),
                Some(1.0),
                p.t(),
                dout_block,
                1.0,
                dims.parallelism,
            );
            matmul(
                dims.head_mut(&mut *g.dq, head, i0, nq),
                None,
                ds,
                dims.head(x.k, head, j0, nk),
                dims.scale,
                dims.parallelism,
            );
            matmul(
                dims.head_mut(&mut *g.dk, head, j0, nk),
                Some(1.0),
                ds.t(),
                dims.head(x.q, head, i0, nq),
                dims.scale,
                dims.parallelism,
            );
        }
    }
}
