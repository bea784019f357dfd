use candle_core::{Device, Tensor};

use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: polynomial `tanh` and `exp` (4e-7 and 2e-7) and other summation orders over the
/// vocabulary: errors up to 9e-7 seen.
const TOL: f32 = 5e-6;

/// Normal logits of standard deviation `std`, with a few at and far beyond the cap of 15.
fn logits(rng: &mut Rng, n: usize, v: usize, std: f64) -> Tensor {
    let mut data = rng
        .normal(&[n, v], std)
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (slot, extreme) in [1e4f32, -1e4, 15.0, -15.0, 14.9, 300.0, -40.0]
        .into_iter()
        .enumerate()
    {
        let at = (slot * 7919) % data.len();
        data[at] = extreme;
    }
    Tensor::from_vec(data, (n, v), &Device::Cpu).unwrap()
}

#[test]
fn softcap_matches_the_reference() {
    let mut rng = Rng::new(9);
    for (n, v, cap) in [(5, 17, 15.0), (3, 2048, 15.0), (40, 33, 3.0)] {
        check_op(
            &format!("softcap [{n}, {v}] cap {cap}"),
            &[logits(&mut rng, n, v, 20.0)],
            TOL,
            |x| crate::softcap(&x[0], cap),
            |x| reference::softcap(&x[0], cap),
        );
    }
}

#[test]
fn softcap_cross_entropy_matches_the_reference() {
    let mut rng = Rng::new(10);
    for (n, v, cap, std) in [
        (7, 13, 15.0, 5.0),
        (33, 257, 15.0, 30.0),
        (64, 2048, 15.0, 3.0),
        (5, 9, 2.0, 1.0),
    ] {
        let targets = rng.ids(&[n], v);
        check_op(
            &format!("softcap_cross_entropy [{n}, {v}] cap {cap}"),
            &[logits(&mut rng, n, v, std)],
            TOL,
            |x| crate::softcap_cross_entropy(&x[0], &targets, cap),
            |x| reference::cross_entropy(&reference::softcap(&x[0], cap)?, &targets),
        );
    }
}

#[test]
fn linear_softcap_cross_entropy_matches_the_reference() {
    let mut rng = Rng::new(11);
    // (N, C, V, weight std): one chunk, several chunks and threads, saturated logits.
    for (n, c, v, std) in [
        (7, 6, 13, 1.0),
        (300, 19, 101, 1.0),
        (260, 16, 50, 10.0),
        (1, 3, 5, 0.1),
    ] {
        let targets = rng.ids(&[n], v);
        let inputs = [rng.normal(&[n, c], 1.0), rng.normal(&[v, c], std)];
        check_op(
            &format!("linear_softcap_cross_entropy N={n} C={c} V={v} std={std}"),
            &inputs,
            TOL,
            |x| crate::linear_softcap_cross_entropy(&x[0], &x[1], &targets, 15.0),
            |x| {
                let logits = reference::softcap(&reference::linear(&x[0], &x[1])?, 15.0)?;
                reference::cross_entropy(&logits, &targets)
            },
        );
    }
}

#[test]
fn cross_entropy_refuses_targets_outside_the_vocabulary() {
    let logits = Rng::new(12).normal(&[2, 5], 1.0);
    let targets = Tensor::new(&[1u32, 5], &Device::Cpu).unwrap();
    assert!(crate::softcap_cross_entropy(&logits, &targets, 15.0).is_err());
}
