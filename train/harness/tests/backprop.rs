//! The workspace's candle-core is the patched copy in `vendor/candle-core` (see its PATCH.md):
//! the first gradient of a node is stored as it is, not added into a fresh tensor of zeros, and
//! operands that depend on no variable get no gradient. These tests pin that the patch is in use
//! and that the gradients it gives are the ones the unpatched code gave.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor, Var};

/// Where a CPU f32 tensor's data starts, to tell stored-as-is from copied.
fn data_ptr(t: &Tensor) -> *const f32 {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => v[layout.start_offset()..].as_ptr(),
        _ => panic!("expected a CPU f32 tensor"),
    }
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

/// The patch's measuring switch turns it off; the tests of what it does need it on.
fn patch_on() {
    assert!(
        std::env::var_os("CANDLE_GRAD_ZERO_FILL").is_none_or(|v| v.is_empty() || v == "0"),
        "CANDLE_GRAD_ZERO_FILL is set, which turns the backward patch off: unset it"
    );
}

#[test]
fn the_workspace_resolves_candle_core_to_the_vendored_copy() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
        .expect("the workspace's Cargo.lock");
    let entries: Vec<&str> = lock
        .split("[[package]]")
        .filter(|p| p.contains("\nname = \"candle-core\"\n"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one candle-core in the graph: {entries:?}"
    );
    assert!(
        entries[0].contains("\nversion = \"0.11.1\"\n") && !entries[0].contains("\nsource = "),
        "candle-core no longer resolves to vendor/candle-core (0.11.1, patched): the [patch] is \
         unused. Read vendor/candle-core/PATCH.md, \"When to drop it\". The entry: {}",
        entries[0]
    );
}

#[test]
fn a_single_gradient_is_stored_without_a_zero_fill() -> Result<()> {
    patch_on();
    let dev = Device::Cpu;
    let a = Var::new(&[1f32, 2., 3.], &dev)?;
    let b = Var::new(&[4f32, 5., 6.], &dev)?;
    let y = (a.as_tensor() + b.as_tensor())?;
    let seed = Tensor::new(&[0.5f32, -1., 2.], &dev)?;
    let grads = (&y * &seed)?.sum_all()?.backward()?;
    let (ga, gb) = (grads.get(&a).unwrap(), grads.get(&b).unwrap());
    assert_eq!(values(ga)?, [0.5, -1., 2.]);
    assert_eq!(values(gb)?, [0.5, -1., 2.]);
    // Unpatched, each is its own zeros + gradient; patched, both hold y's gradient itself.
    assert_eq!(
        data_ptr(ga),
        data_ptr(gb),
        "the first gradient was copied, not stored"
    );
    Ok(())
}

#[test]
fn operands_that_depend_on_no_variable_get_no_gradient() -> Result<()> {
    patch_on();
    let dev = Device::Cpu;
    let x = Var::new(&[1f32, -2.], &dev)?;
    let c = Tensor::new(&[3f32, 4.], &dev)?;
    let detached = (x.as_tensor() * 2.)?.detach();
    let y = ((x.as_tensor() * &c)? + &detached)?.sum_all()?;
    let grads = y.backward()?;
    assert_eq!(values(grads.get(&x).unwrap())?, [3., 4.]);
    assert!(grads.get(&c).is_none(), "a constant got a gradient");
    assert!(
        grads.get(&detached).is_none(),
        "a detached value got a gradient"
    );
    Ok(())
}

/// y = Σ s ∘ (x·x + 3x − x/(1 + x²)·(−1) − relu(x)ᵀᵀ): x reaches the sum by several paths,
/// through subtractions (stored negated first), a division's right side and two transposes
/// (a non-contiguous first gradient), so every accumulation rule of the patch runs.
#[test]
fn gradients_with_fan_in_subtraction_and_views_match_the_closed_form() -> Result<()> {
    let dev = Device::Cpu;
    let xs = [0.5f32, -1.5, 2.0, -0.25, 1.0, 3.0];
    let ss = [1f32, -2., 0.5, 3., -1., 0.25];
    let x = Var::from_tensor(&Tensor::new(&xs, &dev)?.reshape((2, 3))?)?;
    let s = Tensor::new(&ss, &dev)?.reshape((2, 3))?;
    let xt = x.as_tensor();
    let one_plus_sq = (xt.sqr()? + 1.)?;
    let relu_tt = xt.t()?.relu()?.t()?;
    let inner = (((xt * xt)? + (xt * 3.)?)? - (xt / &one_plus_sq)?.neg()?)?;
    let y = ((inner - relu_tt)? * &s)?.sum_all()?;
    let grads = y.backward()?;
    let got = values(grads.get(&x).unwrap())?;
    let want: Vec<f32> = xs
        .iter()
        .zip(ss)
        .map(|(&x, s)| {
            let q = 1. + x * x;
            // d/dx [x/(1+x²)] = (1 − x²)/(1 + x²)²
            let d = 2. * x + 3. + (1. - x * x) / (q * q) - if x > 0. { 1. } else { 0. };
            s * d
        })
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.),
            "{got:?} against {want:?}"
        );
    }
    Ok(())
}

#[test]
fn a_broadcast_operand_gets_its_reduced_gradient_in_its_own_dtype() -> Result<()> {
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::ones((2, 3), DType::BF16, &dev)?)?;
    let bias = Var::from_tensor(&Tensor::zeros(3, DType::BF16, &dev)?)?;
    let y = w.as_tensor().broadcast_add(bias.as_tensor())?;
    let grads = y.to_dtype(DType::F32)?.sum_all()?.backward()?;
    let gb = grads.get(&bias).unwrap();
    assert_eq!(gb.dtype(), DType::BF16);
    assert_eq!(gb.to_dtype(DType::F32)?.to_vec1::<f32>()?, [2., 2., 2.]);
    assert_eq!(
        values(&grads.get(&w).unwrap().to_dtype(DType::F32)?)?,
        [1.; 6]
    );
    Ok(())
}
