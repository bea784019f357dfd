//! Tensors the fused code does not take (other dtypes here; other devices on a GPU machine) run
//! the composite code: the results must be the composite code's, bit for bit.

use candle_core::{DType, Device, Result, Tensor, Var};

use super::check::Rng;
use crate::composite as reference;

fn same(what: &str, fused: Result<Tensor>, composite: Result<Tensor>) {
    let flat = |t: Result<Tensor>| -> Vec<f32> {
        let t = t.unwrap().to_dtype(DType::F32).unwrap();
        t.flatten_all().unwrap().to_vec1().unwrap()
    };
    assert_eq!(flat(fused), flat(composite), "{what}");
}

#[test]
fn bf16_runs_the_composite_code() {
    let mut rng = Rng::new(30);
    let mut bf16 = |shape: &[usize]| rng.normal(shape, 1.0).to_dtype(DType::BF16).unwrap();
    let (x, x0) = (bf16(&[2, 5, 40]), bf16(&[2, 5, 40]));
    let (q, k, v) = (
        bf16(&[2, 5, 2, 4]),
        bf16(&[2, 5, 2, 4]),
        bf16(&[2, 5, 2, 4]),
    );
    let (ve, gate, table) = (bf16(&[2, 5, 2, 4]), bf16(&[2, 32]), bf16(&[11, 40]));
    let lambda = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
    let (cos, sin) = reference::rope_tables(5, 4, &Device::Cpu).unwrap();
    let logits = bf16(&[10, 40]);
    let ids = Rng::new(31).ids(&[10], 40);
    let head_ids = Rng::new(33).ids(&[10], 11);
    same("rms_norm", crate::rms_norm(&x), reference::rms_norm(&x));
    same("relu_sq", crate::relu_sq(&x), reference::relu_sq(&x));
    same(
        "lambda_mix",
        crate::lambda_mix(&x, &x0, &lambda, &lambda),
        reference::lambda_mix(&x, &x0, &lambda, &lambda),
    );
    same(
        "attention",
        crate::attention(&q, &k, &v, 3, 0.5),
        reference::attention(&q, &k, &v, 3, 0.5),
    );
    same(
        "rope_norm",
        crate::rope_norm(&q, &cos, &sin, 0.5),
        reference::rope_norm(&q, &cos, &sin, 0.5),
    );
    same(
        "value_gate",
        crate::value_gate(&v, &ve, &x, &gate),
        reference::value_gate(&v, &ve, &x, &gate),
    );
    same(
        "embedding",
        crate::embedding(&table, &head_ids.reshape((2, 5)).unwrap()),
        reference::embedding(&table, &head_ids.reshape((2, 5)).unwrap()),
    );
    same(
        "softcap",
        crate::softcap(&logits, 15.0),
        reference::softcap(&logits, 15.0),
    );
    same(
        "softcap_cross_entropy",
        crate::softcap_cross_entropy(&logits, &ids, 15.0),
        reference::cross_entropy(&reference::softcap(&logits, 15.0).unwrap(), &ids),
    );
    same(
        "linear_softcap_cross_entropy",
        crate::linear_softcap_cross_entropy(&logits, &table, &head_ids, 15.0),
        reference::cross_entropy(
            &reference::softcap(&reference::linear(&logits, &table).unwrap(), 15.0).unwrap(),
            &head_ids,
        ),
    );
    same(
        "newton_schulz",
        crate::newton_schulz(&table, 5),
        reference::newton_schulz(&table, 5, DType::BF16),
    );
}

#[test]
fn bf16_adamw_updates_in_place_with_the_composite_code() {
    let mut rng = Rng::new(32);
    let w = Var::from_tensor(&rng.normal(&[6, 5], 1.0).to_dtype(DType::BF16).unwrap()).unwrap();
    let g = rng.normal(&[6, 5], 0.1).to_dtype(DType::BF16).unwrap();
    let (m, v) = (w.zeros_like().unwrap(), w.zeros_like().unwrap());
    let before = w.as_tensor().copy().unwrap();
    let s = crate::AdamStep {
        lr: 0.01,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-10,
        weight_decay: 0.0,
        step: 1,
    };
    crate::adamw_step(w.as_tensor(), &g, &m, &v, &s).unwrap();
    let settings = (s.beta1, s.beta2, s.eps, s.weight_decay);
    let zeros = before.zeros_like().unwrap();
    let (w_ref, m_ref, v_ref) =
        reference::adam((&before, &g, &zeros, &zeros), s.lr, settings, 1).unwrap();
    same("adam w", Ok(w.as_tensor().clone()), Ok(w_ref));
    same("adam m", Ok(m), Ok(m_ref));
    same("adam v", Ok(v), Ok(v_ref));
}
