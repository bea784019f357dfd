use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: other summation orders in the products and the softmax, and a polynomial `exp`
/// (2e-7 relative): errors up to 5e-6 seen.
const TOL: f32 = 2e-5;

#[test]
fn attention_matches_the_reference() {
    let mut rng = Rng::new(8);
    // (B, T, H, hd, window): windows shorter than, equal to and longer than T; T over several
    // query blocks; odd sizes.
    let cases = [
        (1, 7, 1, 6, 7),
        (3, 7, 2, 6, 3),
        (2, 13, 3, 10, 1),
        (1, 70, 2, 8, 20),
        (2, 150, 1, 16, 150),
        (2, 130, 2, 8, 64),
        (3, 65, 1, 4, 200),
        (1, 200, 2, 32, 128),
    ];
    for (b, t, h, hd, window) in cases {
        for scale in [0.5, 2.0] {
            let inputs = [
                rng.normal(&[b, t, h, hd], 1.0),
                rng.normal(&[b, t, h, hd], 1.0),
                rng.normal(&[b, t, h, hd], 1.0),
            ];
            check_op(
                &format!("attention B={b} T={t} H={h} hd={hd} window={window} scale={scale}"),
                &inputs,
                TOL,
                |x| crate::attention(&x[0], &x[1], &x[2], window, scale),
                |x| reference::attention(&x[0], &x[1], &x[2], window, scale),
            );
        }
    }
}
