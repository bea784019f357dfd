//! The flash-attention CUDA kernels (`kernels/flash.cu`), run on this CPU by the emulator in
//! `kernels/emulate/` (host threads for CUDA threads, the tensor-core product computed from the
//! fragments as PTX lays them out), against the composite attention in value and every gradient.
//! This is what a machine without a GPU can check of the kernels' tiling, masking, online softmax
//! and fragment indexing; `kernel-check` repeats the comparison on a GPU.
//!
//! Needs a C++20 compiler (`$CXX`, else `c++`).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Result, Tensor, Var};

use autoresearch_ops::composite;

/// Compiles the emulated kernels once per test run.
fn driver() -> PathBuf {
    let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("flash_driver");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let status = Command::new(&cxx)
        .args(["-std=c++20", "-O2", "-pthread", "-fno-strict-aliasing"])
        .arg("-DAUTORESEARCH_EMULATE")
        .arg("-I")
        .arg(kernels.join("emulate"))
        .arg("-I")
        .arg(&kernels)
        .arg(kernels.join("emulate/flash_driver.cpp"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!("running the C++ compiler `{cxx}` (set CXX to a C++20 compiler): {e}")
        });
    assert!(
        status.success(),
        "compiling the emulated flash kernels failed"
    );
    out
}

/// Reproducible normal values rounded to bf16 (which the kernels read), as f32.
fn bf16_normal(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let (u, v) = (next().max(1e-12), next());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu)?
        .to_dtype(DType::BF16)?
        .to_dtype(DType::F32)
}

fn write(path: &Path, t: &Tensor) -> Result<()> {
    let bytes: Vec<u8> = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(path, bytes).map_err(candle_core::Error::wrap)
}

fn read(path: &Path, shape: &[usize]) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(candle_core::Error::wrap)?;
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// `max |got − want|` over the larger of `max |want|` and 1, and the cosine of the two
/// (1 where `want` vanishes, as the window of one key makes dq and dk: only the absolute error
/// counts there).
fn errors(got: &Tensor, want: &Tensor) -> Result<(f32, f32)> {
    let (got, want) = (got.flatten_all()?, want.flatten_all()?);
    let largest = want.abs()?.max(0)?.to_scalar::<f32>()?;
    let scale = largest.max(1.0);
    let diff = (&got - &want)?.abs()?.max(0)?.to_scalar::<f32>()?;
    let dot = (&got * &want)?.sum_all()?.to_scalar::<f32>()?;
    let norms = got.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt()
        * want.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
    let cos = if largest < 1e-3 { 1.0 } else { dot / norms };
    Ok((diff / scale, cos))
}

/// One case: runs the kernels and the reference on the same bf16 inputs, returns the failures.
fn check(
    driver: &Path,
    case: (usize, usize, usize, usize, usize),
    scale: f64,
) -> Result<Vec<String>> {
    let (b, t, h, hd, window) = case;
    let shape = [b, t, h, hd];
    let dir = tempdir(&format!("flash-{b}-{t}-{h}-{hd}-{window}-{scale}"));
    let seed = (b * 1_000_003 + t * 1009 + h * 101 + hd * 11 + window) as u64;
    let inputs: Vec<Tensor> = (0..4)
        .map(|i| bf16_normal(&shape, seed * 4 + i))
        .collect::<Result<_>>()?;
    for (name, x) in ["q", "k", "v", "do"].iter().zip(&inputs) {
        write(&dir.join(format!("{name}.f32")), x)?;
    }
    let output = Command::new(driver)
        .arg(&dir)
        .args([b, t, h, hd, window].map(|n| n.to_string()))
        .arg(scale.to_string())
        .output()
        .expect("running the emulated kernels");
    assert!(
        output.status.success(),
        "flash_driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let vars = inputs[..3]
        .iter()
        .map(Var::from_tensor)
        .collect::<Result<Vec<_>>>()?;
    let o = composite::attention(&vars[0], &vars[1], &vars[2], window, scale)?;
    let grads = (&o * &inputs[3])?.sum_all()?.backward()?;
    let mut want = vec![("o", o.detach())];
    for (name, var) in ["dq", "dk", "dv"].iter().zip(&vars) {
        let grad = grads.get(var).expect("every input has a gradient").clone();
        want.push((name, grad));
    }

    want.push(("lse", log_sum_exp(&inputs[0], &inputs[1], window, scale)?));

    let mut failures = Vec::new();
    for (name, want) in want {
        let shape = want.dims().to_vec();
        let got = read(&dir.join(format!("{name}.f32")), &shape)?;
        let (rel, cos) = errors(&got, &want)?;
        // bf16 outputs, and P and dS rounded to bf16 before their products: FlashAttention-2's
        // own error budget. The log-sum-exp comes from f32 sums of exact products.
        let limit = if name == "lse" { 1e-4 } else { 2e-2 };
        if !(rel <= limit && cos >= 0.9995) {
            failures.push(format!(
                "B={b} T={t} H={h} hd={hd} window={window} scale={scale}: {name} max error {rel:.2e} of the largest value, cosine {cos:.6}"
            ));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(failures)
}

/// Each query row's log-sum-exp of its scaled, visible scores, `[B, H, T]`: what the forward saves
/// for the backward.
fn log_sum_exp(q: &Tensor, k: &Tensor, window: usize, scale: f64) -> Result<Tensor> {
    let t = q.dim(1)?;
    let heads_first = |x: &Tensor| x.transpose(1, 2)?.contiguous();
    let scores = (heads_first(q)?.matmul(&heads_first(k)?.t()?)? * scale)?; // [B, H, T, T]
    let mask: Vec<f32> = (0..t * t)
        .map(|at| {
            let (i, j) = (at / t, at % t);
            if j <= i && i - j < window {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let scores = scores.broadcast_add(&Tensor::from_vec(mask, (t, t), &Device::Cpu)?)?;
    let max = scores.max_keepdim(3)?;
    let sum = scores.broadcast_sub(&max)?.exp()?.sum_keepdim(3)?;
    (sum.log()? + max)?.squeeze(3)
}

fn tempdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");
    dir
}

#[test]
fn emulated_flash_kernels_match_the_composite_attention() -> Result<()> {
    let driver = driver();
    // (B, T, H, hd, window): both head sizes; T over several tiles and not a multiple of any
    // tile; windows of one key, shorter than a tile, across tiles, and the whole row.
    let cases = [
        (2, 67, 2, 64, 67),
        (1, 67, 1, 64, 1),
        (1, 150, 1, 64, 20),
        (1, 130, 2, 128, 130),
        (2, 100, 1, 128, 37),
        (1, 200, 1, 128, 64),
        (1, 128, 2, 64, 64),
    ];
    let mut failures = Vec::new();
    for (i, case) in cases.into_iter().enumerate() {
        let scale = if i % 2 == 0 {
            1.0 / (case.3 as f64).sqrt()
        } else {
            0.5
        };
        failures.extend(check(&driver, case, scale)?);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
