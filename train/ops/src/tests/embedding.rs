use super::check::{check_op, Rng};
use crate::composite as reference;

/// Tolerance: the same sums in the same order as candle's `index_add`: exact.
const TOL: f32 = 0.0;

#[test]
fn embedding_matches_the_reference() {
    let mut rng = Rng::new(14);
    // (V, C, B, T): repeated ids, several table blocks, a partial last block.
    for (v, c, b, t) in [
        (11, 13, 3, 7),
        (100, 256, 4, 300),
        (2048, 40, 2, 100),
        (1, 5, 1, 3),
    ] {
        let ids = rng.ids(&[b, t], v);
        check_op(
            &format!("embedding V={v} C={c} ids [{b}, {t}]"),
            &[rng.normal(&[v, c], 1.0)],
            TOL,
            |x| crate::embedding(&x[0], &ids),
            |x| reference::embedding(&x[0], &ids),
        );
    }
}

#[test]
fn embedding_refuses_ids_outside_the_table() {
    let table = Rng::new(15).normal(&[4, 3], 1.0);
    let ids = candle_core::Tensor::new(&[[0u32, 4]], &candle_core::Device::Cpu).unwrap();
    assert!(crate::embedding(&table, &ids).is_err());
}
