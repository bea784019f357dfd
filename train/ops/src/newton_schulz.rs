//! Muon's orthogonalisation: the quintic Newton-Schulz iteration.

use candle_core::{Result, Tensor};

use crate::composite;
use crate::cpu::{is_cpu_f32, tensor, Read};
use crate::matmul::{matmul, Parallelism, View, ViewMut};
use crate::simd::{dispatch, sum_sq};

/// The quintic's coefficients `(a, b, c)`: `X ← a·X + (b·A + c·A²)·X` with `A = X Xᵀ`.
const COEFFICIENTS: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);

/// Approximately orthogonalises `g: [rows, cols]` as the training file's
/// `newton_schulz`: the wide orientation (transposed when `rows > cols`), divided by its Frobenius
/// norm + 1e-7, then `steps` quintic iterations (in `g`'s dtype); returns `[rows, cols]` f32. No
/// gradient.
///
/// Each iteration is three products on the `gemm` kernels (multi-threaded here; [`crate::muon_step`]
/// runs one matrix per thread instead) and one scaled copy, where candle runs three products and
/// four single-threaded elementwise passes.
pub fn newton_schulz(g: &Tensor, steps: usize) -> Result<Tensor> {
    if !is_cpu_f32(&[g]) {
        return composite::newton_schulz(g, steps, g.dtype());
    }
    let (rows, cols) = g.dims2()?;
    let g = g.contiguous()?;
    let lock = Read::new("newton_schulz", &g)?;
    let x = orthogonalise(lock.f32()?, rows, cols, steps, Parallelism::Rayon(0));
    tensor(x, (rows, cols))
}

/// [`newton_schulz`] on a row-major `rows x cols` slice.
pub(crate) fn orthogonalise(
    g: &[f32],
    rows: usize,
    cols: usize,
    steps: usize,
    parallelism: Parallelism,
) -> Vec<f32> {
    let (a, b, c) = COEFFICIENTS;
    let tall = rows > cols;
    let (r, n) = if tall { (cols, rows) } else { (rows, cols) };
    let mut x = if tall {
        transpose(g, rows, cols)
    } else {
        g.to_vec()
    };
    dispatch(
        #[inline(always)]
        || {
            let inv = 1.0 / (sum_sq(&x).sqrt() + 1e-7);
            for x in x.iter_mut() {
                *x *= inv;
            }
        },
    );
    let mut gram = vec![0f32; r * r];
    let mut poly = vec![0f32; r * r];
    let mut next = vec![0f32; r * n];
    for _ in 0..steps {
        let xv = View::rows(&x, r, n, n);
        matmul(
            ViewMut::rows(&mut gram, r, r, r),
            None,
            xv,
            xv.t(),
            1.0,
            parallelism,
        );
        for (p, &g) in poly.iter_mut().zip(&gram) {
            *p = b * g;
        }
        let gv = View::rows(&gram, r, r, r);
        matmul(
            ViewMut::rows(&mut poly, r, r, r),
            Some(1.0),
            gv,
            gv,
            c,
            parallelism,
        );
        next.copy_from_slice(&x);
        let pv = View::rows(&poly, r, r, r);
        matmul(
            ViewMut::rows(&mut next, r, n, n),
            Some(a),
            pv,
            xv,
            1.0,
            parallelism,
        );
        std::mem::swap(&mut x, &mut next);
    }
    if tall {
        transpose(&x, r, n)
    } else {
        x
    }
}

/// The transpose of a row-major `rows x cols` slice.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (i, row) in x.chunks_exact(cols).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}
