//! What the tests share: a seeded generator of test tensors, and the comparison of a fused op with
//! its reference, values and gradients.

use candle_core::{Device, Result, Tensor, Var};

/// SplitMix64: reproducible test data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Normal with standard deviation `std`, as a `shape` tensor.
    pub fn normal(&mut self, shape: &[usize], std: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v) = (self.uniform(), self.uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos() * std) as f32
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    /// Ids in `0..n` as a u32 `shape` tensor.
    pub fn ids(&mut self, shape: &[usize], n: usize) -> Tensor {
        let count: usize = shape.iter().product();
        let data: Vec<u32> = (0..count)
            .map(|_| (self.next() % n as u64) as u32)
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }
}

/// `max |a − b| / max |b|`: the error relative to the reference's scale (elementwise relative
/// errors would be meaningless where the reference crosses zero).
pub fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

/// Fails unless `fused` is within `tol` of `reference` (see [`relative_error`]), and both finite.
pub fn assert_close(what: &str, fused: &Tensor, reference: &Tensor, tol: f32) {
    let err = relative_error(fused, reference);
    assert!(
        err.is_finite() && err <= tol,
        "{what}: relative error {err:e} exceeds {tol:e}"
    );
}

/// The value of `f` at `inputs` (made variables) and the gradient of every input under the loss
/// `Σ f(inputs) ∘ r`, for a fixed random `r` (so every gradient entry is exercised).
pub fn value_and_grads(
    inputs: &[Tensor],
    seed: u64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors).unwrap();
    let r = Rng::new(seed).normal(y.dims(), 1.0);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let grads = tensors
        .iter()
        .map(|t| grads.get(t).expect("an input got no gradient").clone())
        .collect();
    (y, grads)
}

/// Checks `fused` against `reference` at `inputs`: the value and every input's gradient within
/// `tol`.
pub fn check_op(
    what: &str,
    inputs: &[Tensor],
    tol: f32,
    fused: impl Fn(&[Tensor]) -> Result<Tensor>,
    reference: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let (y, grads) = value_and_grads(inputs, 7, fused);
    let (y_ref, grads_ref) = value_and_grads(inputs, 7, reference);
    assert_close(&format!("{what}: value"), &y, &y_ref, tol);
    for (i, (g, g_ref)) in grads.iter().zip(&grads_ref).enumerate() {
        assert_close(&format!("{what}: gradient of input {i}"), g, g_ref, tol);
    }
}
