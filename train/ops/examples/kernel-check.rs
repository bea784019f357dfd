//! The device check of the fused ops: on a CUDA device (built with `--features cuda`), the CUDA
//! kernels; elsewhere the CPU fused code, as a dry run of this program. Three parts, each line
//! PASS or FAIL, and the exit status 1 if any check fails:
//!
//! 1. every op's value and every input's gradient against the composite code (the training file's
//!    math) on the same device and inputs, at small shapes with odd sizes: f32 against f32, and
//!    bf16 (on CUDA) against f32 run on the same bf16-rounded inputs;
//! 2. a small model with the training file's forward, fused against composite with the same
//!    weights: the loss and every parameter's gradient, in each dtype;
//! 3. each op's forward + backward time at the gpu profile's shape (32 rows of 2048 tokens, width
//!    512, 4 heads of 128, vocabulary 8192), fused against composite, with the bandwidth or
//!    FLOP rate the fused one reaches (on the CPU: 2 rows of 256 tokens, only to run the code).
//!
//! A failed check of an op's kernels adds them to the closing `kernel-check fallback:` line: the
//! settings (`ops::dispatch`) under which training avoids those kernels, which `gpu-check.sh`
//! applies to the rest of its call. Each check is announced before it runs (`RUN what | avoid:
//! settings`), so that when the program dies in one (a kernel that faults takes the CUDA context
//! with it) `gpu-check.sh` knows which kernels to avoid, and runs it again under those settings.
//!
//! Usage: kernel-check [--no-speed]
//! (cargo run --release -p autoresearch-ops --example kernel-check --features cuda)

use std::time::Instant;

use autoresearch_ops as ops;
use candle_core::{DType, Device, Result, Tensor, Var};
use ops::composite;
use ops::dispatch::{self, CudaOp, OpKernels};
use ops::testing::Rng;

/// Softcap of the training file's loss.
const CAP: f64 = 15.0;

fn main() -> Result<()> {
    let speed = !std::env::args().any(|a| a == "--no-speed");
    let dev = Device::cuda_if_available(0)?;
    let dtypes: &[DType] = if dev.is_cuda() {
        &[DType::F32, DType::BF16]
    } else {
        &[DType::F32]
    };
    println!("kernel-check on {dev:?}, dtypes {dtypes:?}");
    let mut report = Report::default();
    for &dtype in dtypes {
        ops_against_composite(&dev, dtype, &mut report)?;
    }
    for &dtype in dtypes {
        model_against_composite(&dev, dtype, &mut report)?;
    }
    if speed {
        speeds(&dev, &mut report)?;
    }
    if let Some(settings) = dispatch::settings_avoiding(&report.failed) {
        println!("kernel-check fallback: {settings}");
    }
    println!(
        "kernel-check: {} checks, {} failed",
        report.checks, report.failures
    );
    if report.failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Comparison

#[derive(Default)]
struct Report {
    checks: usize,
    failures: usize,
    /// The kernels of each failed check of an op's kernels.
    failed: Vec<OpKernels>,
}

/// What a check exercises: an op's CUDA kernels (on the CPU, its fused code), or `None` for code
/// without kernels of its own (Muon, the whole model).
type Subject = Option<OpKernels>;

/// The kernels of an op other than attention.
fn kernels(op: CudaOp) -> Subject {
    Some(OpKernels { op, flash: false })
}

/// The kernels attention runs on `dev` in `dtype` with heads of `head_dim`.
fn attention_kernels(dev: &Device, dtype: DType, head_dim: usize) -> Result<Subject> {
    let flash = dev.is_cuda() && dispatch::flash_attention(dtype, head_dim)?;
    Ok(Some(OpKernels {
        op: CudaOp::Attention,
        flash,
    }))
}

/// How far a result is from its reference: `max |a − b| / max |b|`, `‖a − b‖ / ‖b‖` and the
/// cosine, all in f32.
struct Error {
    max: f32,
    norm: f32,
    cos: f32,
}

/// Below this largest magnitude a reference counts as zero.
const VANISHING: f32 = 1e-5;

fn error(a: &Tensor, b: &Tensor) -> Result<Error> {
    let (a, b) = (
        a.to_dtype(DType::F32)?.flatten_all()?,
        b.to_dtype(DType::F32)?.flatten_all()?,
    );
    let scalar = |t: Tensor| t.to_dtype(DType::F32)?.to_scalar::<f32>();
    let diff = (&a - &b)?;
    let b_max = scalar(b.abs()?.max(0)?)?;
    let b_norm = scalar(b.sqr()?.sum_all()?.sqrt()?)?;
    let a_norm = scalar(a.sqr()?.sum_all()?.sqrt()?)?;
    let diff_max = scalar(diff.abs()?.max(0)?)?;
    if b_max < VANISHING {
        // A result that is zero in exact arithmetic (the q and k gradients at window 1) is
        // rounding noise on both sides: its error is absolute.
        return Ok(Error {
            max: diff_max,
            norm: diff_max,
            cos: if diff_max < VANISHING { 1.0 } else { 0.0 },
        });
    }
    Ok(Error {
        max: diff_max / b_max,
        norm: scalar(diff.sqr()?.sum_all()?.sqrt()?)? / b_norm,
        cos: scalar((&a * &b)?.sum_all()?)? / (a_norm * b_norm),
    })
}

/// Limits of [`Error`] for a pass.
#[derive(Clone, Copy)]
struct Tolerance {
    max: f32,
    norm: f32,
    cos: f32,
}

/// Ops in f32: the same math in another order.
const OP_F32: Tolerance = Tolerance {
    max: 1e-4,
    norm: 1e-4,
    cos: 0.999_999,
};
/// Ops in bf16 against f32: bf16's 8-bit mantissa on every stored tensor.
const OP_BF16: Tolerance = Tolerance {
    max: 5e-2,
    norm: 2e-2,
    cos: 0.999,
};
/// The model in f32: a few ops deep, reductions in other orders.
const MODEL_F32: Tolerance = Tolerance {
    max: 1e-3,
    norm: 1e-3,
    cos: 0.999_99,
};
/// The model in bf16 against the composite model in bf16: both rounded, in other places.
const MODEL_BF16: Tolerance = Tolerance {
    max: 1e-1,
    norm: 3e-2,
    cos: 0.999,
};

impl Report {
    /// Announces a check before it runs, with the settings that avoid its kernels: the last such
    /// line is what `gpu-check.sh` reads when the program dies.
    fn start(&self, subject: Subject, what: &str) {
        let avoid = subject.and_then(|k| dispatch::settings_avoiding(&[k]));
        println!("RUN {what} | avoid: {}", avoid.unwrap_or_default());
    }

    fn record(&mut self, subject: Subject, pass: bool) {
        self.checks += 1;
        if !pass {
            self.failures += 1;
            self.failed.extend(subject);
        }
    }

    fn compare(
        &mut self,
        subject: Subject,
        what: &str,
        got: &Tensor,
        want: &Tensor,
        tol: Tolerance,
    ) -> Result<()> {
        let e = error(got, want)?;
        let pass = e.max <= tol.max && e.norm <= tol.norm && e.cos >= tol.cos;
        self.record(subject, pass);
        println!(
            "{} {what:<58} max {:.1e} norm {:.1e} cos {:.6}",
            if pass { "PASS" } else { "FAIL" },
            e.max,
            e.norm,
            e.cos
        );
        Ok(())
    }

    fn fail(&mut self, subject: Subject, what: &str, err: candle_core::Error) {
        self.record(subject, false);
        println!("FAIL {what}: {err}");
    }
}

/// `inputs` as variables (ids stay as they are), so that each gets a gradient.
fn variables(inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    inputs
        .iter()
        .map(|t| {
            if t.dtype() == DType::U32 {
                Ok(t.clone())
            } else {
                Ok(Var::from_tensor(t)?.as_tensor().clone())
            }
        })
        .collect()
}

/// `f`'s value at `vars` and every variable's gradient under `Σ f ∘ r`, `r` a fixed random
/// tensor of the output's shape (seeded: the same for every `f` of that shape; cast to the
/// output's dtype), so every gradient entry counts.
fn value_and_grads(vars: &[Tensor], f: Op) -> Result<(Tensor, Vec<Tensor>)> {
    let y = f(vars)?;
    let r = seeded(y.dims(), 1.0, 99, y.device())?.to_dtype(y.dtype())?;
    let grads = (&y * r)?.sum_all()?.backward()?;
    let grads = vars
        .iter()
        .filter(|t| t.dtype() != DType::U32)
        .map(|t| match grads.get(t) {
            Some(g) => Ok(g.clone()),
            None => candle_core::bail!("an input got no gradient"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((y, grads))
}

type Op<'a> = &'a dyn Fn(&[Tensor]) -> Result<Tensor>;

/// One op at one shape: `fused` on `inputs` in `dtype` (ids stay u32, f32-only inputs f32)
/// against `reference` on the same values in f32.
fn check_op(
    report: &mut Report,
    subject: Subject,
    what: &str,
    dtype: DType,
    inputs: &[Tensor],
    fused: Op,
    reference: Op,
) -> Result<()> {
    let what = format!("{what} {dtype:?}");
    report.start(subject, &what);
    let cast = |t: &Tensor, d: DType| {
        if t.dtype() == DType::U32 {
            Ok(t.clone())
        } else {
            t.to_dtype(d)
        }
    };
    let low = inputs
        .iter()
        .map(|t| cast(t, dtype))
        .collect::<Result<Vec<_>>>()?;
    // The reference sees the values the fused op sees: rounded to `dtype`, then widened.
    let wide = low
        .iter()
        .map(|t| cast(t, DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let tol = if dtype == DType::F32 { OP_F32 } else { OP_BF16 };
    let wide = variables(&wide)?;
    let (y_ref, g_ref) = value_and_grads(&wide, reference)?;
    match value_and_grads(&variables(&low)?, fused) {
        Ok((y, g)) => {
            report.compare(subject, &format!("{what}: value"), &y, &y_ref, tol)?;
            for (i, (g, g_ref)) in g.iter().zip(&g_ref).enumerate() {
                report.compare(subject, &format!("{what}: gradient {i}"), g, g_ref, tol)?;
            }
        }
        Err(e) => report.fail(subject, &what, e),
    }
    Ok(())
}

/// A reproducible normal tensor, drawn on the host and moved.
fn seeded(shape: &[usize], std: f64, seed: u64, dev: &Device) -> Result<Tensor> {
    Rng::new(seed).normal(shape, std).to_device(dev)
}

/// Reproducible ids in `0..n`.
fn seeded_ids(shape: &[usize], n: usize, seed: u64, dev: &Device) -> Result<Tensor> {
    Rng::new(seed).ids(shape, n).to_device(dev)
}

// ---------------------------------------------------------------------------------------------
// 1. Ops

fn ops_against_composite(dev: &Device, dtype: DType, report: &mut Report) -> Result<()> {
    let n = |shape: &[usize], seed: u64| seeded(shape, 1.0, seed, dev);
    check_op(
        report,
        kernels(CudaOp::ReluSq),
        "relu_sq [37, 129]",
        dtype,
        &[n(&[37, 129], 1)?],
        &|x| ops::relu_sq(&x[0]),
        &|x| composite::relu_sq(&x[0]),
    )?;
    check_op(
        report,
        kernels(CudaOp::RmsNorm),
        "rms_norm [37, 130]",
        dtype,
        &[n(&[37, 130], 2)?],
        &|x| ops::rms_norm(&x[0]),
        &|x| composite::rms_norm(&x[0]),
    )?;
    check_op(
        report,
        kernels(CudaOp::LambdaMix),
        "lambda_mix [5, 37, 64]",
        dtype,
        &[
            n(&[5, 37, 64], 3)?,
            n(&[5, 37, 64], 4)?,
            n(&[1], 5)?,
            n(&[1], 6)?,
        ],
        &|x| ops::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
        &|x| composite::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
    )?;
    let (cos, sin) = composite::rope_tables(40, 64, dev)?;
    for scale in [0.125, 1.0] {
        check_op(
            report,
            kernels(CudaOp::RopeNorm),
            &format!("rope_norm [2, 37, 3, 64] scale {scale}"),
            dtype,
            &[n(&[2, 37, 3, 64], 7)?],
            &|x| ops::rope_norm(&x[0], &cos, &sin, scale),
            &|x| composite::rope_norm(&x[0], &cos, &sin, scale),
        )?;
    }
    // Heads of 64 and of 128 (the gpu profile's): bf16 runs the flash kernels at both. Heads of
    // 32: bf16 runs the interim kernels, which are the flash kernels' fallback.
    let attention_cases: [(&[usize], u64, f64, &[usize]); 3] = [
        (&[2, 67, 3, 64], 8, 0.125, &[67, 20, 1]),
        (&[2, 150, 2, 128], 11, 0.088, &[150, 37]),
        (&[2, 45, 2, 32], 27, 0.177, &[45, 9]),
    ];
    for (shape, seed, scale, windows) in attention_cases {
        let qkv = [n(shape, seed)?, n(shape, seed + 1)?, n(shape, seed + 2)?];
        let subject = attention_kernels(dev, dtype, shape[3])?;
        for &window in windows {
            check_op(
                report,
                subject,
                &format!("attention {shape:?} window {window}"),
                dtype,
                &qkv,
                &|x| ops::attention(&x[0], &x[1], &x[2], window, scale),
                &|x| composite::attention(&x[0], &x[1], &x[2], window, scale),
            )?;
        }
    }
    check_op(
        report,
        kernels(CudaOp::ValueGate),
        "value_gate [2, 37, 3, 64], x [2, 37, 96], gate [3, 12]",
        dtype,
        &[
            n(&[2, 37, 3, 64], 20)?,
            n(&[2, 37, 3, 64], 21)?,
            n(&[2, 37, 96], 22)?,
            n(&[3, 12], 23)?,
        ],
        &|x| ops::value_gate(&x[0], &x[1], &x[2], &x[3]),
        &|x| composite::value_gate(&x[0], &x[1], &x[2], &x[3]),
    )?;
    let targets = seeded_ids(&[37], 1001, 11, dev)?;
    // The training file's cap, and its "off" (a cap far above every logit).
    for cap in [CAP, 1e4] {
        check_op(
            report,
            kernels(CudaOp::SoftcapCrossEntropy),
            &format!("softcap_cross_entropy [37, 1001] cap {cap}"),
            dtype,
            &[(n(&[37, 1001], 12)? * 5.0)?, targets.clone()],
            &|x| ops::softcap_cross_entropy(&x[0], &x[1], cap),
            &|x| composite::cross_entropy(&composite::softcap(&x[0], cap)?, &x[1]),
        )?;
        check_op(
            report,
            kernels(CudaOp::LinearSoftcapCrossEntropy),
            &format!("linear_softcap_cross_entropy [37, 64] x [1001, 64] cap {cap}"),
            dtype,
            &[n(&[37, 64], 13)?, n(&[1001, 64], 14)?, targets.clone()],
            &|x| ops::linear_softcap_cross_entropy(&x[0], &x[1], &x[2], cap),
            &|x| {
                let logits = composite::softcap(&composite::linear(&x[0], &x[1])?, cap)?;
                composite::cross_entropy(&logits, &x[2])
            },
        )?;
    }
    // More rows than one chunk of the CUDA lm head (8,192).
    let many = seeded_ids(&[8229], 97, 24, dev)?;
    check_op(
        report,
        kernels(CudaOp::LinearSoftcapCrossEntropy),
        "linear_softcap_cross_entropy [8229, 32] x [97, 32]",
        dtype,
        &[n(&[8229, 32], 25)?, n(&[97, 32], 26)?, many],
        &|x| ops::linear_softcap_cross_entropy(&x[0], &x[1], &x[2], CAP),
        &|x| {
            let logits = composite::softcap(&composite::linear(&x[0], &x[1])?, CAP)?;
            composite::cross_entropy(&logits, &x[2])
        },
    )?;
    check_op(
        report,
        kernels(CudaOp::ReluSq),
        "mlp [37, 64] x [256, 64] x [64, 256]",
        dtype,
        &[
            n(&[37, 64], 15)?,
            (n(&[256, 64], 16)? * 0.1)?,
            (n(&[64, 256], 17)? * 0.1)?,
        ],
        &|x| ops::mlp(&x[0], &x[1], &x[2]),
        &|x| {
            composite::linear(
                &composite::relu_sq(&composite::linear(&x[0], &x[1])?)?,
                &x[2],
            )
        },
    )?;
    muon_against_composite(dev, dtype, report)?;
    if dtype != DType::F32 {
        return Ok(());
    }
    adamw_against_composite(dev, report)?;
    ids_outside_are_refused(dev, report)?;
    // The tables are f32 (as the training file keeps them); the lookup is cast after.
    let ids = seeded_ids(&[3, 37], 101, 18, dev)?;
    check_op(
        report,
        kernels(CudaOp::Embedding),
        "embedding [101, 64] at [3, 37]",
        dtype,
        &[n(&[101, 64], 19)?, ids],
        &|x| ops::embedding(&x[0], &x[1]),
        &|x| composite::embedding(&x[0], &x[1]),
    )?;
    Ok(())
}

/// An id or target past the table or the vocabulary is an error that names it, as on the CPU,
/// not NaNs out of a kernel.
fn ids_outside_are_refused(dev: &Device, report: &mut Report) -> Result<()> {
    let (v, c) = (17, 8);
    let table = seeded(&[v, c], 1.0, 20, dev)?;
    let x = seeded(&[3, c], 1.0, 21, dev)?;
    let bad = Tensor::new(&[0u32, v as u32, 1], dev)?;
    let logits = x.matmul(&table.t()?)?;
    let cases: [(CudaOp, Result<Tensor>); 3] = [
        (CudaOp::Embedding, ops::embedding(&table, &bad)),
        (
            CudaOp::SoftcapCrossEntropy,
            ops::softcap_cross_entropy(&logits, &bad, CAP),
        ),
        (
            CudaOp::LinearSoftcapCrossEntropy,
            ops::linear_softcap_cross_entropy(&x, &table, &bad, CAP),
        ),
    ];
    for (op, result) in cases {
        let subject = kernels(op);
        let what = format!("{} refuses id {v} of {v}", op.name());
        report.start(subject, &what);
        match result {
            Err(e) if e.to_string().contains(&format!("{v} is outside")) => {
                report.record(subject, true);
                // The message's first line: a backtrace may follow it.
                let message = e.to_string();
                println!("PASS {what}: {}", message.lines().next().unwrap_or(""));
            }
            Err(e) => report.fail(subject, &what, e),
            Ok(_) => report.fail(subject, &what, candle_core::Error::Msg("no error".into())),
        }
    }
    Ok(())
}

/// One Muon step (products in `dtype`) on stacked same-shape matrices and a tall one, against the
/// per-matrix composite update: the new weights and momenta.
fn muon_against_composite(dev: &Device, dtype: DType, report: &mut Report) -> Result<()> {
    // Muon has no kernels of its own: batched products and candle's ops.
    let subject = None;
    let shapes = [[64, 96], [64, 96], [64, 96], [96, 64]];
    let (lr, momentum, weight_decay) = (0.02, 0.9, 0.2);
    let tensors = |seed: u64, std: f64| -> Result<Vec<Tensor>> {
        let each = shapes.iter().zip(seed..);
        each.map(|(s, seed)| seeded(s, std, seed, dev)).collect()
    };
    let (weights, grads, moms) = (tensors(30, 0.5)?, tensors(40, 0.1)?, tensors(50, 0.1)?);
    // The updated copies: the update writes in place.
    let copy = |ts: &[Tensor]| -> Result<Vec<Tensor>> { ts.iter().map(|t| t.copy()).collect() };
    let (w_new, m_new) = (copy(&weights)?, copy(&moms)?);
    let params: Vec<ops::MuonParam> = (0..shapes.len())
        .map(|i| ops::MuonParam {
            weight: &w_new[i],
            grad: &grads[i],
            momentum: &m_new[i],
        })
        .collect();
    let step = ops::MuonStep {
        lr,
        momentum,
        weight_decay,
        ns_steps: 5,
        compute_dtype: dtype,
    };
    let what = format!("muon_step 3 x [64, 96] + [96, 64] {dtype:?}");
    report.start(subject, &what);
    if let Err(e) = ops::muon_step(&params, &step) {
        report.fail(subject, &what, e);
        return Ok(());
    }
    let tol = if dtype == DType::F32 {
        MODEL_F32
    } else {
        OP_BF16
    };
    for i in 0..shapes.len() {
        let settings = (lr, momentum, weight_decay);
        let (w, m) = composite::muon((&weights[i], &grads[i], &moms[i]), settings, 5, dtype)?;
        report.compare(subject, &format!("{what}: weight {i}"), &w_new[i], &w, tol)?;
        report.compare(
            subject,
            &format!("{what}: momentum {i}"),
            &m_new[i],
            &m,
            tol,
        )?;
    }
    Ok(())
}

/// Two AdamW steps (f32, with weight decay) against the composite update.
fn adamw_against_composite(dev: &Device, report: &mut Report) -> Result<()> {
    let subject = kernels(CudaOp::AdamwStep);
    let shape = [37, 130];
    let (w, m, v) = (
        seeded(&shape, 0.5, 60, dev)?,
        Tensor::zeros(&shape, DType::F32, dev)?,
        Tensor::zeros(&shape, DType::F32, dev)?,
    );
    let (w_ref, mut m_ref, mut v_ref) = (w.copy()?, m.copy()?, v.copy()?);
    let mut w_ref = w_ref;
    for step in 1..=2 {
        let g = seeded(&shape, 0.1, 60 + step as u64, dev)?;
        let s = ops::AdamStep {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-10,
            weight_decay: 0.1,
            step,
        };
        let what = format!("adamw_step [37, 130] step {step} F32");
        report.start(subject, &what);
        if let Err(e) = ops::adamw_step(&w, &g, &m, &v, &s) {
            report.fail(subject, &what, e);
            return Ok(());
        }
        let settings = (s.beta1, s.beta2, s.eps, s.weight_decay);
        (w_ref, m_ref, v_ref) =
            composite::adam((&w_ref, &g, &m_ref, &v_ref), s.lr, settings, step)?;
        report.compare(subject, &format!("{what}: weight"), &w, &w_ref, OP_F32)?;
        report.compare(subject, &format!("{what}: m"), &m, &m_ref, OP_F32)?;
        report.compare(subject, &format!("{what}: v"), &v, &v_ref, OP_F32)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. A small model with the training file's forward

/// The ops a forward pass calls: fused or composite.
trait Math {
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor>;
    fn rms_norm(&self, x: &Tensor) -> Result<Tensor>;
    fn lambda_mix(&self, x: &Tensor, x0: &Tensor, r: &Tensor, m: &Tensor) -> Result<Tensor>;
    fn rope_norm(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor>;
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, window: usize) -> Result<Tensor>;
    fn mlp(&self, x: &Tensor, fc: &Tensor, proj: &Tensor) -> Result<Tensor>;
    fn value_gate(&self, v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor>;
    fn loss(&self, h: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor>;
}

struct Fused;
struct Composite;

impl Math for Fused {
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        ops::embedding(table, ids)
    }
    fn rms_norm(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(x)
    }
    fn lambda_mix(&self, x: &Tensor, x0: &Tensor, r: &Tensor, m: &Tensor) -> Result<Tensor> {
        ops::lambda_mix(x, x0, r, m)
    }
    fn rope_norm(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor> {
        ops::rope_norm(x, cos, sin, scale)
    }
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, window: usize) -> Result<Tensor> {
        ops::attention(q, k, v, window, 1.0)
    }
    fn mlp(&self, x: &Tensor, fc: &Tensor, proj: &Tensor) -> Result<Tensor> {
        ops::mlp(x, fc, proj)
    }
    fn value_gate(&self, v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
        ops::value_gate(v, ve, x, gate)
    }
    fn loss(&self, h: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor> {
        ops::linear_softcap_cross_entropy(h, head, targets, CAP)
    }
}

impl Math for Composite {
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        composite::embedding(table, ids)
    }
    fn rms_norm(&self, x: &Tensor) -> Result<Tensor> {
        composite::rms_norm(x)
    }
    fn lambda_mix(&self, x: &Tensor, x0: &Tensor, r: &Tensor, m: &Tensor) -> Result<Tensor> {
        composite::lambda_mix(x, x0, r, m)
    }
    fn rope_norm(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, scale: f64) -> Result<Tensor> {
        composite::rope_norm(x, cos, sin, scale)
    }
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, window: usize) -> Result<Tensor> {
        composite::attention(q, k, v, window, 1.0)
    }
    fn mlp(&self, x: &Tensor, fc: &Tensor, proj: &Tensor) -> Result<Tensor> {
        composite::linear(&composite::relu_sq(&composite::linear(x, fc)?)?, proj)
    }
    fn value_gate(&self, v: &Tensor, ve: &Tensor, x: &Tensor, gate: &Tensor) -> Result<Tensor> {
        composite::value_gate(v, ve, x, gate)
    }
    fn loss(&self, h: &Tensor, head: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let logits = composite::softcap(&composite::linear(h, head)?, CAP)?;
        composite::cross_entropy(&logits, targets)
    }
}

/// Rows, tokens, width, heads of 64, depth, vocabulary, and each layer's window.
const MODEL: (usize, usize, usize, usize, usize, usize) = (2, 96, 128, 2, 2, 512);
const WINDOWS: [usize; 2] = [32, 96];

/// The parameters, f32 variables as the training file keeps them.
struct Params {
    wte: Var,
    /// Per layer: q, k, v, attention projection, fc, MLP projection.
    blocks: Vec<[Var; 6]>,
    /// The last layer's value embedding `[V, C]` and its gate `[H, 16]`.
    value_embed: Var,
    gate: Var,
    head: Var,
    resid: Var,
    x0: Var,
}

impl Params {
    fn new(dev: &Device) -> Result<Self> {
        let (_, _, c, _, depth, vocab) = MODEL;
        let mut seed = 100;
        let mut var = |shape: &[usize], std: f64| {
            seed += 1;
            Var::from_tensor(&seeded(shape, std, seed, dev)?)
        };
        let s = (c as f64).powf(-0.5);
        let wte = var(&[vocab, c], 1.0)?;
        let blocks = (0..depth)
            .map(|_| {
                Ok([
                    var(&[c, c], s)?,
                    var(&[c, c], s)?,
                    var(&[c, c], s)?,
                    var(&[c, c], s)?,
                    var(&[4 * c, c], s)?,
                    var(&[c, 4 * c], s * 0.5)?,
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        let value_embed = var(&[vocab, c], 1.0)?;
        let gate = var(&[MODEL.3, 16], 0.5)?;
        let head = var(&[vocab, c], s)?;
        let resid = Var::from_tensor(&Tensor::ones(depth, DType::F32, dev)?)?;
        let x0 = Var::from_tensor(&(Tensor::ones(depth, DType::F32, dev)? * 0.1)?)?;
        Ok(Self {
            wte,
            blocks,
            value_embed,
            gate,
            head,
            resid,
            x0,
        })
    }

    fn all(&self) -> Vec<(String, &Var)> {
        let mut all = vec![("wte".to_string(), &self.wte)];
        for (i, block) in self.blocks.iter().enumerate() {
            for (name, v) in ["q", "k", "v", "proj", "fc", "mlp_proj"].iter().zip(block) {
                all.push((format!("block {i} {name}"), v));
            }
        }
        all.push(("value_embed".into(), &self.value_embed));
        all.push(("ve_gate".into(), &self.gate));
        all.push(("lm_head".into(), &self.head));
        all.push(("resid_lambdas".into(), &self.resid));
        all.push(("x0_lambdas".into(), &self.x0));
        all
    }
}

/// The training file's loss at `ids` -> `targets` with `math`, computing in `dtype`.
fn model_loss(
    math: &dyn Math,
    p: &Params,
    dtype: DType,
    (ids, targets): (&Tensor, &Tensor),
    (cos, sin): (&Tensor, &Tensor),
) -> Result<Tensor> {
    let (b, t, c, h, _, _) = MODEL;
    let hd = c / h;
    let mut x = math.rms_norm(&math.embedding(p.wte.as_tensor(), ids)?.to_dtype(dtype)?)?;
    let x0 = x.clone();
    for (i, (block, &window)) in p.blocks.iter().zip(&WINDOWS).enumerate() {
        let [wq, wk, wv, wo, fc, proj] = block;
        let (resid, mix) = (p.resid.narrow(0, i, 1)?, p.x0.narrow(0, i, 1)?);
        x = math.lambda_mix(&x, &x0, &resid, &mix)?;
        let normed = math.rms_norm(&x)?;
        let heads = |w: &Var| composite::linear(&normed, w)?.reshape((b, t, h, hd));
        let q = math.rope_norm(&heads(wq)?, cos, sin, 1.0 / (hd as f64).sqrt())?;
        let k = math.rope_norm(&heads(wk)?, cos, sin, 1.0)?;
        let mut v = heads(wv)?;
        if i + 1 == p.blocks.len() {
            let ve = math
                .embedding(p.value_embed.as_tensor(), ids)?
                .to_dtype(dtype)?;
            v = math.value_gate(&v, &ve.reshape((b, t, h, hd))?, &normed, &p.gate)?;
        }
        let y = math.attention(&q, &k, &v, window)?;
        x = (&x + composite::linear(&y.reshape((b, t, c))?, wo)?)?;
        x = (&x + math.mlp(&math.rms_norm(&x)?, fc, proj)?)?;
    }
    let hidden = math.rms_norm(&x)?.reshape(((), c))?;
    math.loss(&hidden, p.head.as_tensor(), &targets.flatten_all()?)
}

fn model_against_composite(dev: &Device, dtype: DType, report: &mut Report) -> Result<()> {
    let (b, t, c, h, _, vocab) = MODEL;
    let p = Params::new(dev)?;
    let ids = seeded_ids(&[b, t], vocab, 1, dev)?;
    let targets = seeded_ids(&[b, t], vocab, 2, dev)?;
    let (cos, sin) = composite::rope_tables(t, c / h, dev)?;
    let tol = if dtype == DType::F32 {
        MODEL_F32
    } else {
        MODEL_BF16
    };
    let run = |math: &dyn Math| -> Result<(Tensor, Vec<Tensor>)> {
        let loss = model_loss(math, &p, dtype, (&ids, &targets), (&cos, &sin))?;
        let grads = loss.backward()?;
        let grads = p
            .all()
            .iter()
            .map(|(name, v)| match grads.get(v.as_tensor()) {
                Some(g) => Ok(g.clone()),
                None => candle_core::bail!("{name} got no gradient"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss, grads))
    };
    let what = format!("model {b}x{t}, width {c}, depth 2, {dtype:?}");
    // Every op at once: a failure here that no op's own checks show is not one op's to avoid.
    let subject = None;
    report.start(subject, &what);
    let (loss_ref, grads_ref) = run(&Composite)?;
    match run(&Fused) {
        Ok((loss, grads)) => {
            report.compare(subject, &format!("{what}: loss"), &loss, &loss_ref, tol)?;
            for ((name, _), (g, g_ref)) in p.all().iter().zip(grads.iter().zip(&grads_ref)) {
                report.compare(subject, &format!("{what}: d {name}"), g, g_ref, tol)?;
            }
        }
        Err(e) => report.fail(subject, &what, e),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Speed at the gpu profile's shape

/// What an op moves or computes per forward + backward, for its rate.
enum Work {
    /// Bytes read and written (the fused kernels' minimum).
    Bytes(f64),
    /// Floating-point operations.
    Flops(f64),
}

fn speeds(dev: &Device, report: &mut Report) -> Result<()> {
    let (rows, seq) = if dev.is_cuda() { (32, 2048) } else { (2, 256) };
    let (c, h, hd, vocab) = (512, 4, 128, 8192);
    let dtype = if dev.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    };
    let size = dtype.size_in_bytes() as f64;
    let n = rows * seq;
    println!("speed: {rows} rows x {seq} tokens, {dtype:?}; forward + backward, ms (best of 5)");
    let x = |shape: &[usize], seed| seeded(shape, 1.0, seed, dev)?.to_dtype(dtype);
    let tokens = x(&[n, c], 1)?;
    let wide = x(&[n, 4 * c], 2)?;
    let heads = [
        x(&[rows, seq, h, hd], 3)?,
        x(&[rows, seq, h, hd], 4)?,
        x(&[rows, seq, h, hd], 5)?,
    ];
    let (cos, sin) = composite::rope_tables(seq, hd, dev)?;
    let lambdas = [
        x(&[1], 6)?.to_dtype(DType::F32)?,
        x(&[1], 7)?.to_dtype(DType::F32)?,
    ];
    let logits = x(&[n, vocab], 8)?;
    let targets = seeded_ids(&[n], vocab, 9, dev)?;
    let table = seeded(&[vocab, c], 1.0, 10, dev)?;
    let ids = seeded_ids(&[n], vocab, 11, dev)?;
    let elems = |shape: usize| shape as f64 * size;
    let rope_fused = |x: &[Tensor]| ops::rope_norm(&x[0], &cos, &sin, 1.0);
    let rope_reference = |x: &[Tensor]| composite::rope_norm(&x[0], &cos, &sin, 1.0);
    let cases: Vec<(CudaOp, String, Work, Vec<Tensor>, Op, Op)> = vec![
        (
            CudaOp::ReluSq,
            format!("relu_sq [{n}, {}]", 4 * c),
            Work::Bytes(5.0 * elems(n * 4 * c)),
            vec![wide.clone()],
            &|x| ops::relu_sq(&x[0]),
            &|x| composite::relu_sq(&x[0]),
        ),
        (
            CudaOp::RmsNorm,
            format!("rms_norm [{n}, {c}]"),
            Work::Bytes(5.0 * elems(n * c)),
            vec![tokens.clone()],
            &|x| ops::rms_norm(&x[0]),
            &|x| composite::rms_norm(&x[0]),
        ),
        (
            CudaOp::LambdaMix,
            format!("lambda_mix [{n}, {c}]"),
            Work::Bytes(8.0 * elems(n * c)),
            vec![
                tokens.clone(),
                tokens.clone(),
                lambdas[0].clone(),
                lambdas[1].clone(),
            ],
            &|x| ops::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
            &|x| composite::lambda_mix(&x[0], &x[1], &x[2], &x[3]),
        ),
        (
            CudaOp::RopeNorm,
            format!("rope_norm [{rows}, {seq}, {h}, {hd}]"),
            Work::Bytes(5.0 * elems(n * h * hd)),
            vec![heads[0].clone()],
            &rope_fused,
            &rope_reference,
        ),
        (
            CudaOp::SoftcapCrossEntropy,
            format!("softcap_cross_entropy [{n}, {vocab}]"),
            Work::Bytes(3.0 * elems(n * vocab)),
            vec![logits, targets.clone()],
            &|x| ops::softcap_cross_entropy(&x[0], &x[1], CAP),
            &|x| composite::cross_entropy(&composite::softcap(&x[0], CAP)?, &x[1]),
        ),
        (
            CudaOp::Embedding,
            format!("embedding [{vocab}, {c}] at {n} ids (f32)"),
            Work::Bytes(4.0 * 4.0 * (n * c) as f64),
            vec![table, ids],
            &|x| ops::embedding(&x[0], &x[1]),
            &|x| composite::embedding(&x[0], &x[1]),
        ),
        (
            // The lm head as trained: its three products (logits, and the two gradients), the
            // capped cross-entropy between, 8,192 rows at a time.
            CudaOp::LinearSoftcapCrossEntropy,
            format!("linear_softcap_cross_entropy [{n}, {c}] x [{vocab}, {c}]"),
            Work::Flops(6.0 * (n * c * vocab) as f64),
            vec![tokens.clone(), x(&[vocab, c], 12)?, targets],
            &|x| ops::linear_softcap_cross_entropy(&x[0], &x[1], &x[2], CAP),
            &|x| {
                let logits = composite::softcap(&composite::linear(&x[0], &x[1])?, CAP)?;
                composite::cross_entropy(&logits, &x[2])
            },
        ),
    ];
    for (op, what, work, inputs, fused, reference) in cases {
        let subject = kernels(op);
        time_pair(
            dev,
            report,
            subject,
            &what,
            work,
            &inputs,
            (fused, reference),
        )?;
    }
    for window in [seq, seq / 2] {
        // Causal pairs within the window, products of 2·hd FLOPs per pair: 2 forward and 5
        // backward, the usual count for a flash kernel that recomputes the scores once (ours
        // runs 7 backward: its dq kernel recomputes the scores and dP again, to need no atomics).
        let pairs: f64 = (0..seq).map(|i| (i + 1).min(window) as f64).sum();
        let flops = 7.0 * 2.0 * (hd as f64) * pairs * (rows * h) as f64;
        let subject = attention_kernels(dev, dtype, hd)?;
        time_pair(
            dev,
            report,
            subject,
            &format!("attention [{rows}, {seq}, {h}, {hd}] window {window}"),
            Work::Flops(flops),
            &heads,
            (
                &|x| ops::attention(&x[0], &x[1], &x[2], window, 1.0),
                &|x| composite::attention(&x[0], &x[1], &x[2], window, 1.0),
            ),
        )?;
    }
    Ok(())
}

/// Times `fused` and `reference` forward + backward (2 warm-up runs, best of 5, synchronised)
/// and prints both, the speed-up and the fused op's rate. The backward starts from a gradient of
/// ones (candle's seed for a non-scalar root), so no loss computation is timed.
fn time_pair(
    dev: &Device,
    report: &mut Report,
    subject: Subject,
    what: &str,
    work: Work,
    inputs: &[Tensor],
    (fused, reference): (Op, Op),
) -> Result<()> {
    let vars = variables(inputs)?;
    let best = |f: Op| -> Result<f64> {
        let mut best = f64::INFINITY;
        for i in 0..7 {
            dev.synchronize()?;
            let start = Instant::now();
            f(&vars)?.backward()?;
            dev.synchronize()?;
            if i >= 2 {
                best = best.min(start.elapsed().as_secs_f64());
            }
        }
        Ok(best)
    };
    report.start(subject, what);
    // Only the fused op failing counts against its kernels.
    let (fused_s, reference_s) = match (best(fused), best(reference)) {
        (Ok(f), Ok(r)) => (f, r),
        (Err(e), _) => {
            report.fail(subject, what, e);
            return Ok(());
        }
        (_, Err(e)) => {
            report.fail(None, &format!("{what}, the composite code"), e);
            return Ok(());
        }
    };
    let rate = match work {
        Work::Bytes(b) => format!("{:.2} TB/s", b / fused_s / 1e12),
        Work::Flops(f) => format!("{:.1} TFLOP/s", f / fused_s / 1e12),
    };
    println!(
        "TIME {what:<58} composite {:>9.3} ms fused {:>9.3} ms  x{:<6.2} {rate}",
        reference_s * 1e3,
        fused_s * 1e3,
        reference_s / fused_s
    );
    Ok(())
}
