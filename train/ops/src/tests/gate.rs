use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: a polynomial `exp` in the sigmoid (2e-7) and other summation orders: errors up to 1e-6 seen.
const TOL: f32 = 5e-6;

#[test]
fn value_gate_matches_the_reference() {
    let mut rng = Rng::new(13);
    // (B, T, H, hd, C, G)
    for (b, t, h, hd, c, g) in [
        (1, 7, 2, 6, 37, 32),
        (3, 5, 3, 4, 32, 32),
        (2, 300, 2, 16, 45, 7),
    ] {
        let inputs = [
            rng.normal(&[b, t, h, hd], 1.0),
            rng.normal(&[b, t, h, hd], 1.0),
            rng.normal(&[b, t, c], 1.0),
            rng.normal(&[h, g], 0.5),
        ];
        check_op(
            &format!("value_gate B={b} T={t} H={h} hd={hd} C={c} G={g}"),
            &inputs,
            TOL,
            |x| crate::value_gate(&x[0], &x[1], &x[2], &x[3]),
            |x| reference::value_gate(&x[0], &x[1], &x[2], &x[3]),
        );
    }
}
