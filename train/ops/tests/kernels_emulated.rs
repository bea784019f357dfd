//! The CUDA kernels (`kernels/*.cu`) run on this CPU by the emulator in `kernels/emulate/` (host
//! threads for CUDA threads, barriers for `__syncthreads` and the warp operations, the tensor-core
//! product and `ldmatrix` computed from their fragments as PTX lays them out), each against the
//! composite code or its formula, in value and in every gradient its backward kernel computes. It
//! checks what a machine without a GPU can: the kernels' indexing, reductions, masking and tiling.
//! `kernel-check` repeats the comparisons on a device, through the Rust launch code.
//!
//! The kernels, their parameters and their launch geometries come from the table the Rust launch
//! code uses (`src/kernels.rs`), and the first test checks that table against the kernels' C++
//! signatures. Needs a C++20 compiler (`$CXX`, else `c++`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Device, Result, Tensor, Var, D};

use autoresearch_ops::composite;
use autoresearch_ops::kernels::{self, *};
use autoresearch_ops::testing::Rng;

// ---------------------------------------------------------------------------------------------
// The emulator

/// The launcher (`kernels/emulate/launcher.cpp`: every kernel file in one program), compiled once.
fn launcher() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let kernels = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-launcher");
        let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let status = Command::new(&cxx)
            .args(["-std=c++20", "-O2", "-pthread", "-fno-strict-aliasing"])
            .arg("-DAUTORESEARCH_EMULATE")
            .arg("-I")
            .arg(kernels.join("emulate"))
            .arg("-I")
            .arg(&kernels)
            .arg(kernels.join("emulate/launcher.cpp"))
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap_or_else(|e| {
                panic!("running the C++ compiler `{cxx}` (set CXX to a C++20 compiler): {e}")
            });
        assert!(status.success(), "compiling the emulated kernels failed");
        out
    })
}

/// The table the Rust launch code checks its arguments against (`src/kernels.rs`) declares each
/// kernel's parameters as its C++ does, and lists every kernel the emulator knows.
#[test]
fn the_launch_table_is_the_kernels_signatures() {
    let out = Command::new(launcher())
        .arg("--signatures")
        .output()
        .expect("running the launcher");
    assert!(out.status.success(), "launcher --signatures failed");
    let cpp: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let table: BTreeSet<String> = ALL
        .iter()
        .flat_map(|k| k.suffixes.iter().map(|s| k.signature(s)))
        .collect();
    let only_cpp: Vec<_> = cpp.difference(&table).collect();
    let only_table: Vec<_> = table.difference(&cpp).collect();
    assert!(
        only_cpp.is_empty() && only_table.is_empty(),
        "in the kernels but not the table: {only_cpp:#?}\nin the table but not the kernels: {only_table:#?}"
    );
}

/// A kernel argument.
#[derive(Clone, Copy, Debug)]
enum Arg<'a> {
    Int(usize),
    Float(f64),
    /// A buffer the kernel reads (f32 values, or u32 ids).
    In(&'a Tensor),
    /// A buffer of this many elements the kernel writes, NaN until it does (a device's fresh
    /// buffer holds garbage, so a value the kernel leaves out must show).
    Out(usize),
    /// A buffer of this many elements the kernel adds into, zeroed first (as the Rust side zeroes
    /// the λ gradients and the embedding table's gradient).
    Zeroed(usize),
}
use Arg::{Float, In, Int, Out, Zeroed};

/// Runs `kernel`'s entry point for `suffix` on `args` in the emulator, after checking them
/// against the kernel's parameters in the table the Rust launch code uses; returns the `Out` and
/// `Zeroed` buffers in order, as flat f32.
fn launch<S>(
    kernel: &Typed<S>,
    suffix: &str,
    geometry: Geometry,
    args: &[Arg],
) -> Result<Vec<Tensor>> {
    let kernel = &kernel.kernel;
    let entry = kernel.entry(suffix);
    assert!(
        kernel.suffixes.contains(&suffix),
        "{entry}: not in the table"
    );
    assert_eq!(args.len(), kernel.params.len(), "{entry}: arguments");
    for (i, (arg, param)) in args.iter().zip(kernel.params).enumerate() {
        let fits = match (arg, param) {
            (Int(_), Param::Int | Param::Size) | (Float(_), Param::Float) => true,
            (In(t), Param::In(elem)) => (t.dtype() == DType::U32) == (*elem == Elem::U32),
            (Out(_) | Zeroed(_), Param::Out(_)) => true,
            _ => false,
        };
        assert!(
            fits,
            "{entry}: argument {i} does not fit the parameter {param:?}"
        );
    }
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("emulated-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(candle_core::Error::wrap)?;
    let mut words = Vec::new();
    let mut outputs = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        let name = format!("b{i}");
        let bytes: Vec<u8> = match *arg {
            Int(n) => {
                words.push(n.to_string());
                continue;
            }
            Float(x) => {
                words.push(format!("{x:e}"));
                continue;
            }
            In(t) if t.dtype() == DType::U32 => t
                .flatten_all()?
                .to_vec1::<u32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            In(t) => t
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
            Out(n) => {
                outputs.push(dir.join(&name));
                f32::NAN
                    .to_le_bytes()
                    .into_iter()
                    .cycle()
                    .take(4 * n)
                    .collect()
            }
            Zeroed(n) => {
                outputs.push(dir.join(&name));
                vec![0u8; 4 * n]
            }
        };
        std::fs::write(dir.join(&name), bytes).map_err(candle_core::Error::wrap)?;
        words.push(format!("@{name}"));
    }
    let Geometry {
        grid: (gx, gy),
        threads,
    } = geometry;
    let run = Command::new(launcher())
        .arg(&dir)
        .arg(&entry)
        .args([gx, gy, threads].map(|n| n.to_string()))
        .args(&words)
        .output()
        .map_err(candle_core::Error::wrap)?;
    assert!(
        run.status.success(),
        "{entry} failed in the emulator: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = outputs
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(candle_core::Error::wrap)?;
            let values: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Tensor::new(values, &Device::Cpu)
        })
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    out
}

// ---------------------------------------------------------------------------------------------
// Inputs and comparisons

/// Reproducible normal values times `std`, rounded to bf16 (so both instantiations of a kernel
/// read the same values), as f32.
fn normal(shape: &[usize], std: f64, seed: u64) -> Result<Tensor> {
    Rng::new(seed)
        .normal(shape, std)
        .to_dtype(DType::BF16)?
        .to_dtype(DType::F32)
}

/// Reproducible ids below `bound`, u32, each repeated when `n > bound`.
fn ids(n: usize, bound: usize, seed: u64) -> Result<Tensor> {
    let values: Vec<u32> = (0..n as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 40_503) % bound as u64) as u32)
        .collect();
    Tensor::new(values, &Device::Cpu)
}

/// The comparisons of one test: each adds a line when `got` holds a value that is not finite, is
/// off `want` by more than `tol` of the larger of `max |want|` and 1, or their cosine is under
/// 0.9995 (where `want` does not vanish).
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn close(&mut self, what: &str, got: &Tensor, want: &Tensor, tol: f32) -> Result<()> {
        let (got, want) = (
            got.flatten_all()?,
            want.flatten_all()?.to_dtype(DType::F32)?,
        );
        if got.elem_count() != want.elem_count() {
            let (n, m) = (got.elem_count(), want.elem_count());
            self.0.push(format!("{what}: {n} values, want {m}"));
            return Ok(());
        }
        // A value the kernel never wrote is NaN (see `Out`).
        let unwritten = got
            .to_vec1::<f32>()?
            .iter()
            .filter(|x| !x.is_finite())
            .count();
        if unwritten > 0 {
            self.0
                .push(format!("{what}: {unwritten} values not finite"));
            return Ok(());
        }
        let largest = want.abs()?.max(0)?.to_scalar::<f32>()?;
        let err = (&got - &want)?.abs()?.max(0)?.to_scalar::<f32>()? / largest.max(1.0);
        let dot = (&got * &want)?.sum_all()?.to_scalar::<f32>()?;
        let norms = got.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt()
            * want.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
        let cos = if largest < 1e-3 { 1.0 } else { dot / norms };
        if !(err <= tol && cos >= 0.9995) {
            self.0.push(format!(
                "{what}: max error {err:.2e} of the largest value, cosine {cos:.6}"
            ));
        }
        Ok(())
    }

    fn assert(self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

/// Tolerance of an instantiation: f32 kernels differ from the composite code in summation order
/// and `expf`/`tanhf`; bf16 ones round their outputs.
fn tol(suffix: &str) -> f32 {
    if suffix == "bf16" {
        2e-2
    } else {
        1e-4
    }
}

/// `f(inputs)` and the gradients of `Σ f(inputs) ∘ upstream` for every input.
fn grads(
    inputs: &[&Tensor],
    upstream: &Tensor,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Tensor>)> {
    let vars = inputs
        .iter()
        .map(|t| Var::from_tensor(t))
        .collect::<Result<Vec<_>>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&tensors)?;
    let g = y.broadcast_mul(upstream)?.sum_all()?.backward()?;
    let grads = vars
        .iter()
        .map(|v| g.get(v).expect("every input has a gradient").clone())
        .collect();
    Ok((y.detach(), grads))
}

// ---------------------------------------------------------------------------------------------
// The kernels

#[test]
fn rms_norm() -> Result<()> {
    let mut check = Check::default();
    let (rows, cols) = (37, 130);
    let x = normal(&[rows, cols], 2.0, 1)?;
    let dy = normal(&[rows, cols], 1.0, 2)?;
    let (y_want, g) = grads(&[&x], &dy, |t| composite::rms_norm(&t[0]))?;
    let rstd_want = (x.sqr()?.mean_keepdim(1)? + 1e-6)?.sqrt()?.recip()?;
    for s in ["f32", "bf16"] {
        let fwd = launch(
            &RMS_NORM_FWD,
            s,
            warp_per_row(rows),
            &[Int(rows), Int(cols), In(&x), Out(rows * cols), Out(rows)],
        )?;
        check.close(&format!("rms_norm {s}: y"), &fwd[0], &y_want, tol(s))?;
        check.close(&format!("rms_norm {s}: rstd"), &fwd[1], &rstd_want, 1e-4)?;
        let dx = launch(
            &RMS_NORM_BWD,
            s,
            warp_per_row(rows),
            &[
                Int(rows),
                Int(cols),
                In(&fwd[0]),
                In(&dy),
                In(&fwd[1]),
                Out(rows * cols),
            ],
        )?;
        check.close(&format!("rms_norm {s}: dx"), &dx[0], &g[0], tol(s))?;
    }
    check.assert();
    Ok(())
}

#[test]
fn lambda_mix() -> Result<()> {
    let mut check = Check::default();
    let n = 5 * 37 * 64;
    let (x, x0, up) = (
        normal(&[n], 1.0, 3)?,
        normal(&[n], 1.0, 4)?,
        normal(&[n], 1.0, 5)?,
    );
    let resid = Tensor::new(&[0.75f32], &Device::Cpu)?;
    let mix = Tensor::new(&[-0.25f32], &Device::Cpu)?;
    let lambdas = Tensor::cat(&[&resid, &mix], 0)?;
    let (y_want, g) = grads(&[&x, &x0, &resid, &mix], &up, |t| {
        composite::lambda_mix(&t[0], &t[1], &t[2], &t[3])
    })?;
    let dlambdas = Tensor::cat(&[&g[2], &g[3]], 0)?;
    for s in ["f32", "bf16"] {
        let y = launch(
            &LAMBDA_MIX_FWD,
            s,
            elementwise(n),
            &[Int(n), In(&x), In(&x0), In(&lambdas), Out(n)],
        )?;
        check.close(&format!("lambda_mix {s}: y"), &y[0], &y_want, tol(s))?;
        // The launch's own grid, and one of 3 blocks, whose grid-stride loop goes round.
        for geometry in [reduction(n), blocks(3)] {
            let what = format!("lambda_mix {s} on {} blocks", geometry.grid.0);
            let d = launch(
                &LAMBDA_MIX_BWD,
                s,
                geometry,
                &[
                    Int(n),
                    In(&x),
                    In(&x0),
                    In(&up),
                    In(&lambdas),
                    Out(n),
                    Out(n),
                    Zeroed(2),
                ],
            )?;
            check.close(&format!("{what}: dx"), &d[0], &g[0], tol(s))?;
            check.close(&format!("{what}: dx0"), &d[1], &g[1], tol(s))?;
            check.close(&format!("{what}: dlambda"), &d[2], &dlambdas, 1e-4)?;
        }
    }
    check.assert();
    Ok(())
}

#[test]
fn rope_norm() -> Result<()> {
    let mut check = Check::default();
    let (b, t, h, hd) = (2, 37, 3, 64);
    let rows = b * t * h;
    let x = normal(&[b, t, h, hd], 1.0, 6)?;
    let dy = normal(&[b, t, h, hd], 1.0, 7)?;
    let (cos, sin) = composite::rope_tables(40, hd, &Device::Cpu)?;
    let table = |c: &Tensor| c.flatten_all()?.narrow(0, 0, t * hd / 2);
    let (cos_t, sin_t) = (table(&cos)?, table(&sin)?);
    let scale = 0.125;
    let (y_want, g) = grads(&[&x], &dy, |x| {
        composite::rope_norm(&x[0], &cos, &sin, scale)
    })?;
    for s in ["f32", "bf16"] {
        let dims = [Int(rows), Int(t), Int(h), Int(hd), Float(scale)];
        let mut args = dims.to_vec();
        args.extend([In(&x), In(&cos_t), In(&sin_t), Out(rows * hd), Out(rows)]);
        let fwd = launch(&ROPE_NORM_FWD, s, warp_per_row(rows), &args)?;
        check.close(&format!("rope_norm {s}: y"), &fwd[0], &y_want, tol(s))?;
        let mut args = dims.to_vec();
        args.extend([
            In(&fwd[0]),
            In(&dy),
            In(&cos_t),
            In(&sin_t),
            In(&fwd[1]),
            Out(rows * hd),
        ]);
        let dx = launch(&ROPE_NORM_BWD, s, warp_per_row(rows), &args)?;
        check.close(&format!("rope_norm {s}: dx"), &dx[0], &g[0], tol(s))?;
    }
    check.assert();
    Ok(())
}

#[test]
fn softcap_cross_entropy() -> Result<()> {
    let mut check = Check::default();
    let (n, v, cap) = (37, 300, 15.0);
    // Logits past the cap, so the tanh matters.
    let logits = normal(&[n, v], 12.0, 8)?;
    let targets = ids(n, v, 9)?;
    let dloss = normal(&[n], 1.0, 10)?;
    let per_row = |l: &Tensor| -> Result<Tensor> {
        let z = composite::softcap(l, cap)?;
        let max = z.max_keepdim(D::Minus1)?.detach();
        let lse = (z
            .broadcast_sub(&max)?
            .exp()?
            .sum_keepdim(D::Minus1)?
            .log()?
            + &max)?;
        let picked = z.gather(&targets.unsqueeze(1)?, 1)?;
        (lse - picked)?.squeeze(1)
    };
    let (loss_want, g) = grads(&[&logits], &dloss, |l| per_row(&l[0]))?;
    let z = composite::softcap(&logits, cap)?;
    let max = z.max_keepdim(1)?;
    let lse_want = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + max)?;
    for s in ["f32", "bf16"] {
        let head = [Int(n), Int(v), Float(cap), In(&logits), In(&targets)];
        let mut args = head.to_vec();
        args.extend([Out(n), Out(n)]);
        let fwd = launch(&SOFTCAP_CE_FWD, s, block_per_row(n), &args)?;
        check.close(&format!("softcap_ce {s}: loss"), &fwd[0], &loss_want, 1e-4)?;
        check.close(&format!("softcap_ce {s}: lse"), &fwd[1], &lse_want, 1e-4)?;
        let mut args = head.to_vec();
        args.extend([In(&fwd[1]), In(&dloss), Out(n * v)]);
        let dl = launch(&SOFTCAP_CE_BWD, s, block_per_row(n), &args)?;
        check.close(&format!("softcap_ce {s}: dl"), &dl[0], &g[0], tol(s))?;
    }
    check.assert();
    Ok(())
}

#[test]
fn value_gate_mix() -> Result<()> {
    let mut check = Check::default();
    let (rows, hd) = (2 * 37 * 3, 64);
    let (v, ve) = (normal(&[rows, hd], 1.0, 11)?, normal(&[rows, hd], 1.0, 12)?);
    let (l, dy) = (normal(&[rows], 2.0, 13)?, normal(&[rows, hd], 1.0, 14)?);
    let (y_want, g) = grads(&[&v, &ve, &l], &dy, |t| {
        let gate = (composite::sigmoid(&t[2])? * 2.0)?.unsqueeze(1)?;
        t[0].clone() + t[1].broadcast_mul(&gate)?
    })?;
    for s in ["f32", "bf16"] {
        let y = launch(
            &GATE_MIX_FWD,
            s,
            warp_per_row(rows),
            &[Int(rows), Int(hd), In(&v), In(&ve), In(&l), Out(rows * hd)],
        )?;
        check.close(&format!("gate_mix {s}: y"), &y[0], &y_want, tol(s))?;
        let d = launch(
            &GATE_MIX_BWD,
            s,
            warp_per_row(rows),
            &[
                Int(rows),
                Int(hd),
                In(&ve),
                In(&l),
                In(&dy),
                Out(rows * hd),
                Out(rows),
            ],
        )?;
        check.close(&format!("gate_mix {s}: dve"), &d[0], &g[1], tol(s))?;
        check.close(&format!("gate_mix {s}: dl"), &d[1], &g[2], tol(s))?;
    }
    check.assert();
    Ok(())
}

#[test]
fn relu_sq() -> Result<()> {
    let mut check = Check::default();
    let n = 1000;
    let (x, dy) = (normal(&[n], 1.0, 15)?, normal(&[n], 1.0, 16)?);
    let (y_want, g) = grads(&[&x], &dy, |x| x[0].relu()?.sqr())?;
    // The launch's own grid, and one of 2 blocks, whose grid-stride loop goes round.
    for (s, geometry) in [
        ("f32", elementwise(n)),
        ("bf16", elementwise(n)),
        ("f32", blocks(2)),
    ] {
        let what = format!("relu_sq {s} on {} blocks", geometry.grid.0);
        let y = launch(&RELU_SQ_FWD, s, geometry, &[Int(n), In(&x), Out(n)])?;
        check.close(&format!("{what}: y"), &y[0], &y_want, tol(s))?;
        let dx = launch(
            &RELU_SQ_BWD,
            s,
            geometry,
            &[Int(n), In(&x), In(&dy), Out(n)],
        )?;
        check.close(&format!("{what}: dx"), &dx[0], &g[0], tol(s))?;
    }
    check.assert();
    Ok(())
}

#[test]
fn embedding() -> Result<()> {
    let mut check = Check::default();
    let (vocab, c, n) = (50, 24, 300);
    let table = normal(&[vocab, c], 1.0, 17)?;
    let ids = ids(n, vocab, 18)?; // every id several times: the scatter-add's atomics collide
    let g = normal(&[n, c], 1.0, 19)?;
    let head = [Int(n), Int(c), Int(vocab)];
    let mut args = head.to_vec();
    args.extend([In(&table), In(&ids), Out(n * c)]);
    let out = launch(&EMBEDDING_FWD, "f32", elementwise(n * c), &args)?;
    check.close(
        "embedding: out",
        &out[0],
        &table.index_select(&ids, 0)?,
        0.0,
    )?;
    let mut args = head.to_vec();
    args.extend([In(&g), In(&ids), Zeroed(vocab * c)]);
    let dtable = launch(&EMBEDDING_BWD, "f32", elementwise(n * c), &args)?;
    let want = table.zeros_like()?.index_add(&ids, &g, 0)?;
    check.close("embedding: dtable", &dtable[0], &want, 1e-5)?;
    check.assert();
    Ok(())
}

#[test]
fn adamw() -> Result<()> {
    let mut check = Check::default();
    let n = 1000;
    let (w, g, m) = (
        normal(&[n], 1.0, 20)?,
        normal(&[n], 1.0, 21)?,
        normal(&[n], 0.1, 22)?,
    );
    let v = normal(&[n], 0.1, 23)?.sqr()?;
    let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.95, 1e-8, 0.1);
    let keep = 1.0 - lr * wd;
    let (inv_c1, inv_c2) = (1.0 / (1.0 - b1 * b1 * b1), 1.0 / (1.0 - b2 * b2 * b2));
    let out = launch(
        &ADAMW,
        "f32",
        elementwise(n),
        &[
            Int(n),
            In(&w),
            In(&g),
            In(&m),
            In(&v),
            Float(lr),
            Float(b1),
            Float(b2),
            Float(eps),
            Float(keep),
            Float(inv_c1),
            Float(inv_c2),
            Out(n),
            Out(n),
            Out(n),
        ],
    )?;
    let m_want = ((&m * b1)? + (&g * (1.0 - b1))?)?;
    let v_want = ((&v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
    let step = ((&m_want * inv_c1)? / ((&v_want * inv_c2)?.sqrt()? + eps)?)?;
    let w_want = ((&w * keep)? - (step * lr)?)?;
    check.close("adamw: w", &out[0], &w_want, 1e-5)?;
    check.close("adamw: m", &out[1], &m_want, 1e-5)?;
    check.close("adamw: v", &out[2], &v_want, 1e-5)?;
    check.assert();
    Ok(())
}

#[test]
fn window_softmax() -> Result<()> {
    let mut check = Check::default();
    let (heads, t, scale) = (2, 37, 0.5);
    let rows = heads * t;
    let s = normal(&[heads, t, t], 2.0, 24)?;
    let up = normal(&[heads, t, t], 1.0, 25)?;
    for window in [t, 10, 1] {
        let mask = composite::mask(t, window, &Device::Cpu, DType::F32)?.reshape((t, t))?;
        let (p_want, g) = grads(&[&s], &up, |s| {
            composite::softmax(&(&s[0] * scale)?.broadcast_add(&mask)?)
        })?;
        for suffix in ["f32", "bf16"] {
            let what = format!("window_softmax window {window} {suffix}");
            let head = [Int(rows), Int(t), Int(window), Float(scale)];
            let mut args = head.to_vec();
            args.extend([In(&s), Out(rows * t)]);
            let p = launch(&WINDOW_SOFTMAX_FWD, suffix, block_per_row(rows), &args)?;
            check.close(&format!("{what}: p"), &p[0], &p_want, tol(suffix))?;
            let mut args = head.to_vec();
            args.extend([In(&p[0]), In(&up), Out(rows * t)]);
            let ds = launch(&WINDOW_SOFTMAX_BWD, suffix, block_per_row(rows), &args)?;
            check.close(&format!("{what}: ds"), &ds[0], &g[0], tol(suffix))?;
        }
    }
    check.assert();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Flash attention

/// Each query row's log-sum-exp of its scaled, visible scores, `[B, H, T]`.
fn log_sum_exp(q: &Tensor, k: &Tensor, window: usize, scale: f64) -> Result<Tensor> {
    let heads_first = |x: &Tensor| x.transpose(1, 2)?.contiguous();
    let scores = (heads_first(q)?.matmul(&heads_first(k)?.t()?)? * scale)?; // [B, H, T, T]
    let scores =
        scores.broadcast_add(&composite::mask(q.dim(1)?, window, q.device(), DType::F32)?)?;
    let max = scores.max_keepdim(3)?;
    let sum = scores.broadcast_sub(&max)?.exp()?.sum_keepdim(3)?;
    (sum.log()? + max)?.squeeze(3)
}

#[test]
fn flash_attention() -> Result<()> {
    let mut check = Check::default();
    // (B, T, H, hd, window): both head sizes; T over several tiles, a multiple of them or not;
    // windows of one key, shorter than a tile, across tiles, and the whole row.
    let cases = [
        (2, 67, 2, 64, 67),
        (1, 67, 1, 64, 1),
        (1, 150, 1, 64, 20),
        (1, 130, 2, 128, 130),
        (2, 100, 1, 128, 37),
        (1, 200, 1, 128, 64),
        (1, 128, 2, 64, 64),
    ];
    for (i, (b, t, h, hd, window)) in cases.into_iter().enumerate() {
        let scale = if i % 2 == 0 {
            1.0 / (hd as f64).sqrt()
        } else {
            0.5
        };
        let what = format!("flash B={b} T={t} H={h} hd={hd} window={window} scale={scale}");
        let shape = [b, t, h, hd];
        let n = b * t * h * hd;
        let seed = 100 + 4 * i as u64;
        let q = normal(&shape, 1.0, seed)?;
        let k = normal(&shape, 1.0, seed + 1)?;
        let v = normal(&shape, 1.0, seed + 2)?;
        let d_o = normal(&shape, 1.0, seed + 3)?;
        let (o_want, g) = grads(&[&q, &k, &v], &d_o, |x| {
            composite::attention(&x[0], &x[1], &x[2], window, scale)
        })?;
        let lse_want = log_sum_exp(&q, &k, window, scale)?;

        let tiles = kernels::flash(t, b * h)?;
        let (fwd_kernel, dkdv_kernel, dq_kernel) = if hd == 64 {
            (FLASH_FWD_HD64, FLASH_DKDV_HD64, FLASH_DQ_HD64)
        } else {
            (FLASH_FWD_HD128, FLASH_DKDV_HD128, FLASH_DQ_HD128)
        };
        let dims = [Int(t), Int(h), Int(window), Float(scale)];
        let mut args = dims.to_vec();
        args.extend([In(&q), In(&k), In(&v), Out(n), Out(b * h * t)]);
        let fwd = launch(&fwd_kernel, "bf16", tiles, &args)?;
        let (o, lse) = (&fwd[0], &fwd[1]);
        let rows = b * t * h;
        let delta = launch(
            &FLASH_DELTA,
            "bf16",
            warp_per_row(rows),
            &[
                Int(rows),
                Int(t),
                Int(h),
                Int(hd),
                In(o),
                In(&d_o),
                Out(b * h * t),
            ],
        )?;
        let saved = [In(&q), In(&k), In(&v), In(&d_o), In(lse), In(&delta[0])];
        let mut args = dims.to_vec();
        args.extend(saved);
        args.extend([Out(n), Out(n)]);
        let dkdv = launch(&dkdv_kernel, "bf16", tiles, &args)?;
        let mut args = dims.to_vec();
        args.extend(saved);
        args.push(Out(n));
        let dq = launch(&dq_kernel, "bf16", tiles, &args)?;

        // bf16 outputs, and P and dS rounded to bf16 before their products: FlashAttention-2's
        // own error budget. The log-sum-exp comes from f32 sums of exact products.
        check.close(&format!("{what}: o"), o, &o_want, 2e-2)?;
        check.close(&format!("{what}: lse"), lse, &lse_want, 1e-4)?;
        check.close(&format!("{what}: dq"), &dq[0], &g[0], 2e-2)?;
        check.close(&format!("{what}: dk"), &dkdv[0], &g[1], 2e-2)?;
        check.close(&format!("{what}: dv"), &dkdv[1], &g[2], 2e-2)?;
    }
    check.assert();
    Ok(())
}
