//! The gradient check: every trainable variable must receive a finite, non-zero gradient from the
//! harness's own loss. candle's fused ops (softmax_last_dim, rms_norm, rope) silently return no
//! gradient, so a training file that uses them trains only part of its model; this catches it.

use candle_core::{DType, Tensor, D};
use candle_nn::VarMap;

use crate::LanguageModel;

/// Names of the variables whose gradient is missing, zero or not finite, or an empty list.
pub fn bad_gradients(
    model: &dyn LanguageModel,
    vars: &VarMap,
    x: &Tensor,
    y: &Tensor,
) -> candle_core::Result<Vec<String>> {
    let logits = model.forward(x)?.to_dtype(DType::F32)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let loss = log_probs
        .gather(&y.unsqueeze(D::Minus1)?, D::Minus1)?
        .neg()?
        .mean_all()?;
    let grads = loss.backward()?;
    let data = vars.data().lock().expect("variable map lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut bad = Vec::new();
    for name in names {
        let problem = match grads.get(data[name].as_tensor()) {
            None => Some("no gradient"),
            Some(g) => {
                let g = g.to_dtype(DType::F32)?;
                let abs_sum = g.abs()?.sum_all()?.to_scalar::<f32>()?;
                if !abs_sum.is_finite() {
                    Some("non-finite gradient")
                } else if abs_sum == 0.0 {
                    Some("zero gradient")
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            bad.push(format!("{name} ({problem})"));
        }
    }
    Ok(bad)
}
