use candle_core::{DType, Tensor, Var};

use super::check::{assert_close, Rng};
use crate::composite as reference;

/// Tolerance for Newton-Schulz and Muon: five iterations of products summed in other orders:
/// errors up to 3e-6 seen.
const NS_TOL: f32 = 1e-5;
/// Tolerance for Adam: the same arithmetic up to f32 rounding.
const ADAM_TOL: f32 = 1e-6;

#[test]
fn newton_schulz_matches_the_reference() {
    let mut rng = Rng::new(16);
    for shape in [[7, 13], [13, 7], [64, 256], [256, 64], [256, 256], [1, 9]] {
        let g = rng.normal(&shape, 1.0);
        let fused = crate::newton_schulz(&g, 5).unwrap();
        let reference = reference::newton_schulz(&g, 5, DType::F32).unwrap();
        assert_close(
            &format!("newton_schulz {shape:?}"),
            &fused,
            &reference,
            NS_TOL,
        );
    }
}

fn adam_settings(step: i32, weight_decay: f64) -> crate::AdamStep {
    crate::AdamStep {
        lr: 0.01,
        beta1: 0.8,
        beta2: 0.95,
        eps: 1e-10,
        weight_decay,
        step,
    }
}

#[test]
fn adamw_step_matches_the_reference() {
    let mut rng = Rng::new(17);
    let shape = [37, 11];
    for weight_decay in [0.0, 0.5] {
        let w = Var::from_tensor(&rng.normal(&shape, 1.0)).unwrap();
        let (m, v) = (w.zeros_like().unwrap(), w.zeros_like().unwrap());
        let mut refs = (
            w.as_tensor().copy().unwrap(),
            m.copy().unwrap(),
            v.copy().unwrap(),
        );
        for step in 1..=3 {
            let g = rng.normal(&shape, 0.1);
            let s = adam_settings(step, weight_decay);
            crate::adamw_step(w.as_tensor(), &g, &m, &v, &s).unwrap();
            let settings = (s.beta1, s.beta2, s.eps, s.weight_decay);
            refs = reference::adam((&refs.0, &g, &refs.1, &refs.2), s.lr, settings, step).unwrap();
            let what = format!("adam step {step}, decay {weight_decay}");
            assert_close(&format!("{what}: w"), w.as_tensor(), &refs.0, ADAM_TOL);
            assert_close(&format!("{what}: m"), &m, &refs.1, ADAM_TOL);
            assert_close(&format!("{what}: v"), &v, &refs.2, ADAM_TOL);
        }
    }
}

#[test]
fn adamw_weight_decay_is_decoupled() {
    let shape = [5, 3];
    let w = Var::from_tensor(&Rng::new(18).normal(&shape, 1.0)).unwrap();
    let before = w.as_tensor().copy().unwrap();
    let (m, v) = (w.zeros_like().unwrap(), w.zeros_like().unwrap());
    let g = Rng::new(19).normal(&shape, 1.0);
    crate::adamw_step(w.as_tensor(), &g, &m, &v, &adam_settings(1, 0.5)).unwrap();
    let plain = {
        let (m, v) = (m.zeros_like().unwrap(), v.zeros_like().unwrap());
        let settings = (0.8, 0.95, 1e-10, 0.0);
        reference::adam((&before, &g, &m, &v), 0.01, settings, 1)
            .unwrap()
            .0
    };
    let expected = (plain - (before * 0.005).unwrap()).unwrap();
    assert_close("adamw with decay", w.as_tensor(), &expected, ADAM_TOL);
}

#[test]
fn in_place_updates_refuse_shared_storage() {
    let w = Var::from_tensor(&Rng::new(20).normal(&[4, 4], 1.0)).unwrap();
    let m = w.zeros_like().unwrap();
    let v = m.zeros_like().unwrap();
    assert!(crate::adamw_step(w.as_tensor(), &m, &m, &v, &adam_settings(1, 0.0)).is_err());
}

/// Runs three Muon steps on odd, tall and square matrices (some of one shape, which the
/// composite path stacks), fused and composite side by side.
fn check_muon(compute_dtype: DType, tol: f32) {
    let mut rng = Rng::new(21);
    let shapes = [
        [16, 24],
        [24, 16],
        [33, 7],
        [64, 64],
        [16, 24],
        [64, 64],
        [64, 64],
    ];
    let settings = (0.02, 0.9, 0.2);
    let weights: Vec<Var> = shapes
        .iter()
        .map(|s| Var::from_tensor(&rng.normal(s, 0.5)).unwrap())
        .collect();
    let moms: Vec<_> = weights.iter().map(|w| w.zeros_like().unwrap()).collect();
    let mut refs: Vec<_> = weights
        .iter()
        .zip(&moms)
        .map(|(w, m)| (w.as_tensor().copy().unwrap(), m.copy().unwrap()))
        .collect();
    for step in 0..3 {
        let grads: Vec<_> = shapes.iter().map(|s| rng.normal(s, 0.1)).collect();
        let params: Vec<crate::MuonParam> = weights
            .iter()
            .zip(&grads)
            .zip(&moms)
            .map(|((w, g), m)| crate::MuonParam {
                weight: w.as_tensor(),
                grad: g,
                momentum: m,
            })
            .collect();
        let s = crate::MuonStep {
            lr: settings.0,
            momentum: settings.1,
            weight_decay: settings.2,
            ns_steps: 5,
            compute_dtype,
        };
        crate::muon_step(&params, &s).unwrap();
        for (i, ((w_ref, m_ref), g)) in refs.iter_mut().zip(&grads).enumerate() {
            let before = w_ref.clone();
            (*w_ref, *m_ref) =
                reference::muon((w_ref, g, m_ref), settings, 5, compute_dtype).unwrap();
            let what = format!("muon {compute_dtype:?} step {step} matrix {i}");
            let decay = settings.0 * settings.2;
            let weight = weights[i].as_tensor();
            assert_close_but_decay_ties(&format!("{what}: w"), weight, w_ref, &before, decay, tol);
            assert_close(&format!("{what}: m"), &moms[i], m_ref, tol);
        }
    }
}

#[test]
fn muon_step_matches_the_reference() {
    check_muon(DType::F32, NS_TOL);
}

#[test]
fn muon_step_in_bf16_runs_the_composite_update() {
    check_muon(DType::BF16, 0.0);
}

/// [`assert_close`] for Muon's weights, except where the cautious decay was applied on one side
/// only: an update within rounding of zero can take either sign, which moves that weight by the
/// whole decay `lr·wd·w`. Such ties must stay rare (at most one in 500).
fn assert_close_but_decay_ties(
    what: &str,
    fused: &Tensor,
    reference: &Tensor,
    before: &Tensor,
    decay: f64,
    tol: f32,
) {
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (fused, reference, before) = (flat(fused), flat(reference), flat(before));
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let tol = tol * scale;
    let mut ties = 0;
    for ((f, r), b) in fused.iter().zip(&reference).zip(&before) {
        let diff = (f - r).abs();
        if diff > tol {
            assert!(
                (diff - decay as f32 * b.abs()).abs() <= tol.max(1e-7),
                "{what}: an error of {diff:e} (scale {scale:e}) is not a decay tie"
            );
            ties += 1;
        }
    }
    assert!(
        ties * 500 <= fused.len(),
        "{what}: {ties} decay ties in {}",
        fused.len()
    );
}
