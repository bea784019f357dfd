use candle_core::Tensor;

use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: the same arithmetic as the reference, up to f32 rounding.
const TOL: f32 = 1e-6;

#[test]
fn relu_sq_matches_the_reference() {
    let mut rng = Rng::new(1);
    for shape in [&[5usize, 7][..], &[3, 1, 33], &[1], &[2, 4, 1000]] {
        check_op(
            &format!("relu_sq {shape:?}"),
            &[rng.normal(shape, 2.0)],
            TOL,
            |x| crate::relu_sq(&x[0]),
            |x| reference::relu_sq(&x[0]),
        );
    }
}

#[test]
fn relu_sq_has_zero_gradient_at_and_below_zero() {
    let x = Tensor::new(&[-1f32, 0.0, 0.5, 2.0], &candle_core::Device::Cpu).unwrap();
    let var = candle_core::Var::from_tensor(&x).unwrap();
    let y = crate::relu_sq(var.as_tensor()).unwrap();
    assert_eq!(y.to_vec1::<f32>().unwrap(), [0.0, 0.0, 0.25, 4.0]);
    let grads = y.sum_all().unwrap().backward().unwrap();
    let dx = grads
        .get(var.as_tensor())
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(dx, [0.0, 0.0, 1.0, 4.0]);
}

/// Tolerance for the MLP: the reference's products run on the same `gemm` kernels with the same
/// shapes, so the results agree exactly today; the margin is for another blocking or thread count.
const MLP_TOL: f32 = 5e-6;

#[test]
fn mlp_matches_the_reference() {
    let mut rng = Rng::new(22);
    // (leading dims, C, H): odd widths, one row, the cpu profile's 256 -> 1024.
    for (lead, c, h) in [
        (vec![3, 7], 13, 52),
        (vec![1, 1], 5, 3),
        (vec![2, 64], 256, 1024),
    ] {
        let mut shape = lead.clone();
        shape.push(c);
        let inputs = [
            rng.normal(&shape, 1.0),
            rng.normal(&[h, c], 0.3),
            rng.normal(&[c, h], 0.3),
        ];
        check_op(
            &format!("mlp {shape:?} hidden {h}"),
            &inputs,
            MLP_TOL,
            |x| crate::mlp(&x[0], &x[1], &x[2]),
            |x| {
                reference::linear(
                    &reference::relu_sq(&reference::linear(&x[0], &x[1])?)?,
                    &x[2],
                )
            },
        );
    }
}
