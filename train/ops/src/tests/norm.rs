use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: the reference divides by the RMS where the op multiplies by its reciprocal, and the
/// row sums are taken in another order (the lambdas' gradients: in f64 against candle's f32):
/// errors up to 1e-6 seen.
const TOL: f32 = 5e-6;

#[test]
fn rms_norm_matches_the_reference() {
    let mut rng = Rng::new(2);
    for shape in [&[7usize, 13][..], &[3, 5, 256], &[1, 1, 1], &[2, 3, 70]] {
        check_op(
            &format!("rms_norm {shape:?}"),
            &[rng.normal(shape, 3.0)],
            TOL,
            |x| crate::rms_norm(&x[0]),
            |x| reference::rms_norm(&x[0]),
        );
    }
}

#[test]
fn rms_norm_takes_non_contiguous_input() {
    let x = Rng::new(3).normal(&[6, 9], 1.0);
    let fused = crate::rms_norm(&x.t().unwrap()).unwrap();
    let reference = reference::rms_norm(&x.t().unwrap()).unwrap();
    super::check::assert_close("rms_norm of a transpose", &fused, &reference, TOL);
}

#[test]
fn lambda_mix_matches_the_reference() {
    let mut rng = Rng::new(4);
    for shape in [
        &[3usize, 7, 13][..],
        &[2, 4, 256],
        &[1, 1, 5],
        &[2, 300, 33],
    ] {
        let inputs = [
            rng.normal(shape, 1.0),
            rng.normal(shape, 1.0),
            rng.normal(&[1], 1.0),
            rng.normal(&[1], 1.0),
        ];
        check_op(
            &format!("lambda_mix {shape:?}"),
            &inputs,
            TOL,
            |x| crate::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
            |x| reference::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
        );
    }
}
