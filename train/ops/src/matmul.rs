//! A bounds-checked wrapper around the `gemm` crate's strided matrix product, for the dense
//! products inside the fused ops (score blocks, the lm head chunks, Newton-Schulz).

pub(crate) use gemm::Parallelism;

/// A `rows x cols` matrix read from `data` with element `(i, j)` at `i * row_stride + j *
/// col_stride`: a block of a larger row-major array, or its transpose, without a copy.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The last index a `rows x cols` view with these strides touches, checked against `len`.
fn check_bounds(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
        assert!(last < len, "matrix view out of bounds: {last} >= {len}");
    }
}

impl<'a> View<'a> {
    /// Rows of `cols` elements, `row_stride` apart (row-major when `row_stride == cols`).
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        check_bounds(data.len(), rows, cols, row_stride, 1);
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose, without a copy.
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A `rows x cols` matrix written into `data`, rows `row_stride` apart.
pub(crate) struct ViewMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> ViewMut<'a> {
    /// Rows of `cols` elements, `row_stride >= cols` apart.
    pub(crate) fn rows(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(rows <= 1 || row_stride >= cols, "overlapping rows");
        check_bounds(data.len(), rows, cols, row_stride, 1);
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }
}

/// `dst = beta · lhs · rhs`, or `dst = keep · dst + beta · lhs · rhs` with `keep: Some(..)`.
pub(crate) fn matmul(
    dst: ViewMut,
    keep: Option<f32>,
    lhs: View,
    rhs: View,
    beta: f32,
    parallelism: Parallelism,
) {
    assert_eq!(lhs.rows, dst.rows, "matmul: lhs rows");
    assert_eq!(rhs.cols, dst.cols, "matmul: rhs columns");
    assert_eq!(lhs.cols, rhs.rows, "matmul: inner dimension");
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // gemm reads nothing then; the product is zero.
        for row in dst.data.chunks_mut(dst.row_stride).take(m) {
            for x in &mut row[..n] {
                *x = keep.map_or(0.0, |keep| keep * *x);
            }
        }
        return;
    }
    // SAFETY: every view was bounds-checked against its slice when it was made, so gemm reads and
    // writes only inside them; `dst` is borrowed mutably, so it aliases neither operand, and its
    // rows (`row_stride >= cols` apart, unit column stride) never overlap.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            keep.is_some(),
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            keep.unwrap_or(0.0),
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}
