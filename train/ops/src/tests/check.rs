//! What the tests share: the comparison of a fused op with its reference, values and gradients
//! (and the crate's seeded generator of test tensors).

use candle_core::{Result, Tensor, Var};

pub use crate::testing::Rng;

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
