use crate::simd::{dispatch, dot, exp, max, sigmoid, sum, tanh};

#[test]
fn exp_is_within_3e7_relative() {
    let mut worst = 0f64;
    let mut x = -87.0f32;
    while x < 88.0 {
        let want = (x as f64).exp();
        worst = worst.max(((dispatch(|| exp(x)) as f64) - want).abs() / want);
        x += 0.0137;
    }
    assert!(worst < 3e-7, "exp: relative error {worst:e}");
    assert_eq!(exp(f32::NEG_INFINITY), exp(-87.336_54));
    assert!(exp(-200.0) < 1e-37);
}

#[test]
fn tanh_and_sigmoid_are_within_5e7() {
    let mut worst = 0f64;
    let mut x = -20.0f32;
    while x < 20.0 {
        let want = (x as f64).tanh();
        let err = (tanh(x) as f64 - want).abs() / want.abs().max(1e-30);
        worst = worst.max(err);
        let s = 1.0 / (1.0 + (-(x as f64)).exp());
        assert!((sigmoid(x) as f64 - s).abs() <= 5e-7 * s, "sigmoid({x})");
        x += 0.00731;
    }
    assert!(worst < 5e-7, "tanh: relative error {worst:e}");
    assert!((tanh(1e-8) - 1e-8).abs() <= 1e-15);
    assert_eq!(tanh(100.0), 1.0);
}

#[test]
fn reductions_match_plain_loops() {
    for n in [0usize, 1, 31, 32, 33, 100, 257] {
        let a: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 13) % 7) as f32 * 0.5).collect();
        let plain_dot: f32 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
        assert_eq!(dispatch(|| dot(&a, &b)), plain_dot, "dot over {n}");
        assert_eq!(dispatch(|| sum(&a)), a.iter().sum::<f32>(), "sum over {n}");
        let plain_max = a.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        assert_eq!(dispatch(|| max(&a)), plain_max, "max over {n}");
    }
}
