use candle_core::Device;

use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: the op takes the RMS before the rotation (which keeps the norm only up to
/// rounding) and multiplies where the reference divides: errors up to 3e-7 seen.
const TOL: f32 = 2e-6;

#[test]
fn rope_norm_matches_the_reference() {
    let mut rng = Rng::new(5);
    for (b, t, h, hd) in [(1, 7, 1, 6), (3, 9, 3, 10), (2, 33, 2, 128), (1, 5, 2, 2)] {
        let (cos, sin) = reference::rope_tables(t, hd, &Device::Cpu).unwrap();
        for scale in [1.0, 1.0 / (hd as f64).sqrt()] {
            check_op(
                &format!("rope_norm [{b}, {t}, {h}, {hd}] scale {scale}"),
                &[rng.normal(&[b, t, h, hd], 2.0)],
                TOL,
                |x| crate::rope_norm(&x[0], &cos, &sin, scale),
                |x| reference::rms_norm(&reference::rope(&x[0], &cos, &sin)?)? * scale,
            );
        }
    }
}

#[test]
fn rope_norm_uses_the_first_rows_of_a_longer_table() {
    let (b, t, h, hd) = (2, 7, 2, 8);
    let (cos, sin) = reference::rope_tables(t + 5, hd, &Device::Cpu).unwrap();
    let (cos_t, sin_t) = (cos.narrow(1, 0, t).unwrap(), sin.narrow(1, 0, t).unwrap());
    check_op(
        "rope_norm with a longer table",
        &[Rng::new(6).normal(&[b, t, h, hd], 1.0)],
        TOL,
        |x| crate::rope_norm(&x[0], &cos, &sin, 0.5),
        |x| reference::rms_norm(&reference::rope(&x[0], &cos_t, &sin_t)?)? * 0.5,
    );
}
