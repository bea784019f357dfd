//! Each fused op against today's composite code from the training file, forward + backward, at the
//! cpu profile's shape: 16 rows of 256 tokens, width 256, 2 heads of 128, vocabulary 2048, windows
//! 128 and 256, the 24 block matrices of depth 4 for Muon. Prints a table of milliseconds, the best
//! of REPEATS runs of each.
//! Usage: cargo run --release -p autoresearch-ops --example op-bench [-- REPEATS [FILTER]]
//! (FILTER: only the rows whose name contains it).
//!
//! The backward of every op starts from a fixed random output gradient `r`, handed over by a
//! custom op ([`Seed`]) so that no loss computation is timed; what candle's autograd adds around
//! every op (a `zeros_like` and an add for each gradient it stores) is timed on both sides, and
//! the first row times it alone. The loss ops are differentiated directly. Columns: forward alone,
//! then forward + backward.

use std::time::Instant;

use autoresearch_ops as ops;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Result, Shape, Tensor, Var};
use ops::composite as reference;

const ROWS: usize = 16;
const SEQ: usize = 256;
const WIDTH: usize = 256;
const HEADS: usize = 2;
const HEAD_DIM: usize = 128;
const VOCAB: usize = 2048;
const DEPTH: usize = 4;
const CAP: f64 = 15.0;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let repeats: usize = args
        .next()
        .map(|a| a.parse().expect("usage: op-bench [REPEATS [FILTER]]"))
        .unwrap_or(7);
    let filter = args.next().unwrap_or_default();
    let dev = Device::Cpu;
    let randn = |shape: &[usize], std: f64| -> Result<Tensor> {
        Tensor::randn(0f32, std as f32, shape, &dev)
    };
    let var = |shape: &[usize], std: f64| -> Result<Var> { Var::from_tensor(&randn(shape, std)?) };
    let ids = |n: usize| -> Result<Tensor> {
        Tensor::rand(0f32, VOCAB as f32, n, &dev)?.to_dtype(DType::U32)
    };
    println!(
        "{ROWS} rows x {SEQ} tokens, width {WIDTH}, {HEADS} heads of {HEAD_DIM}, vocabulary {VOCAB}, f32, {} threads; best of {repeats} runs, ms",
        rayon::current_num_threads()
    );
    println!(
        "{:<52} {:>21} {:>21} {:>8}",
        "", "forward", "forward + backward", "speed-up"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "op", "composite", "fused", "composite", "fused", "(f + b)"
    );
    let bench = Bench { repeats, filter };

    let tokens = [ROWS, SEQ, WIDTH];
    let x = var(&tokens, 1.0)?;
    let r_tokens = randn(&tokens, 1.0)?;
    bench.alone("autograd alone, on a [16, 256, 256] variable", || {
        seed(x.as_tensor(), &r_tokens)
    })?;

    let heads = [ROWS, SEQ, HEADS, HEAD_DIM];
    let (q, k, v) = (var(&heads, 1.0)?, var(&heads, 1.0)?, var(&heads, 1.0)?);
    let r_heads = randn(&heads, 1.0)?;
    for window in [SEQ / 2, SEQ] {
        let scale = 1.0 / (HEAD_DIM as f64).sqrt();
        bench.op(
            &format!("attention, window {window}"),
            Some(&r_heads),
            || reference::attention(&q, &k, &v, window, scale),
            || ops::attention(&q, &k, &v, window, scale),
        )?;
    }
    let (cos, sin) = reference::rope_tables(SEQ, HEAD_DIM, &dev)?;
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    bench.op(
        "rope + qk-norm + scale [16, 256, 2, 128]",
        Some(&r_heads),
        || reference::rms_norm(&reference::rope(&q, &cos, &sin)?)? * scale,
        || ops::rope_norm(&q, &cos, &sin, scale),
    )?;
    bench.op(
        "rms_norm [16, 256, 256]",
        Some(&r_tokens),
        || reference::rms_norm(&x),
        || ops::rms_norm(&x),
    )?;
    let x0 = var(&tokens, 1.0)?;
    let (resid, mix) = (var(&[1], 1.0)?, var(&[1], 0.1)?);
    bench.op(
        "lambda mix λr·x + λ0·x0 [16, 256, 256]",
        Some(&r_tokens),
        || reference::lambda_mix(&x, &x0, &resid, &mix),
        || ops::lambda_mix(&x, &x0, &resid, &mix),
    )?;
    let hidden = var(&[ROWS, SEQ, 4 * WIDTH], 1.0)?;
    let r_hidden = randn(&[ROWS, SEQ, 4 * WIDTH], 1.0)?;
    bench.op(
        "relu² [16, 256, 1024]",
        Some(&r_hidden),
        || reference::relu_sq(&hidden),
        || ops::relu_sq(&hidden),
    )?;
    let (w_fc, w_proj) = (
        var(&[4 * WIDTH, WIDTH], 0.05)?,
        var(&[WIDTH, 4 * WIDTH], 0.05)?,
    );
    bench.op(
        "MLP: linear, relu², linear [16, 256, 256 -> 1024]",
        Some(&r_tokens),
        || {
            reference::linear(
                &reference::relu_sq(&reference::linear(&x, &w_fc)?)?,
                &w_proj,
            )
        },
        || ops::mlp(&x, &w_fc, &w_proj),
    )?;
    let ve = var(&heads, 1.0)?;
    let gate = var(&[HEADS, 32], 0.1)?;
    bench.op(
        "value-embedding gate [16, 256, 2, 128]",
        Some(&r_heads),
        || reference::value_gate(&v, &ve, &x, &gate),
        || ops::value_gate(&v, &ve, &x, &gate),
    )?;
    let table = var(&[VOCAB, WIDTH], 1.0)?;
    let token_ids = ids(ROWS * SEQ)?.reshape((ROWS, SEQ))?;
    bench.op(
        "embedding [2048, 256] at [16, 256] ids",
        Some(&r_tokens),
        || reference::embedding(&table, &token_ids),
        || ops::embedding(&table, &token_ids),
    )?;
    let n = ROWS * SEQ;
    let logits = var(&[n, VOCAB], 5.0)?;
    let targets = ids(n)?;
    bench.op(
        "soft-cap + cross-entropy on [4096, 2048] logits",
        None,
        || reference::cross_entropy(&reference::softcap(&logits, CAP)?, &targets),
        || ops::softcap_cross_entropy(&logits, &targets, CAP),
    )?;
    let h = var(&[n, WIDTH], 1.0)?;
    let head = var(&[VOCAB, WIDTH], 0.05)?;
    bench.op(
        "lm head + soft-cap + cross-entropy, [4096, 256] x [2048, 256]",
        None,
        || {
            reference::cross_entropy(
                &reference::softcap(&reference::linear(&h, &head)?, CAP)?,
                &targets,
            )
        },
        || ops::linear_softcap_cross_entropy(&h, &head, &targets, CAP),
    )?;

    // The optimizer: Muon over the 24 block matrices of depth 4, AdamW over the four tables.
    let mut shapes = Vec::new();
    for _ in 0..DEPTH {
        shapes.extend([[WIDTH, WIDTH]; 4]);
        shapes.extend([[4 * WIDTH, WIDTH], [WIDTH, 4 * WIDTH]]);
    }
    let weights = shapes
        .iter()
        .map(|s| var(s, 0.05))
        .collect::<Result<Vec<_>>>()?;
    let grads = shapes
        .iter()
        .map(|s| randn(s, 0.01))
        .collect::<Result<Vec<_>>>()?;
    let moms = weights
        .iter()
        .map(|w| w.zeros_like())
        .collect::<Result<Vec<_>>>()?;
    let settings = (0.04, 0.95, 0.2);
    bench.step(
        "Muon step, 24 matrices (Newton-Schulz x5)",
        || {
            for ((w, g), m) in weights.iter().zip(&grads).zip(&moms) {
                let (w_new, _) = reference::muon((w, g, m), settings, 5, DType::F32)?;
                w.set(&w_new)?;
            }
            Ok(())
        },
        || {
            let params: Vec<ops::MuonParam> = weights
                .iter()
                .zip(&grads)
                .zip(&moms)
                .map(|((w, g), m)| ops::MuonParam {
                    weight: w.as_tensor(),
                    grad: g,
                    momentum: m,
                })
                .collect();
            let s = ops::MuonStep {
                lr: settings.0,
                momentum: settings.1,
                weight_decay: settings.2,
                ns_steps: 5,
                compute_dtype: DType::F32,
            };
            ops::muon_step(&params, &s)
        },
    )?;
    let tables = (0..4)
        .map(|_| var(&[VOCAB, WIDTH], 0.05))
        .collect::<Result<Vec<_>>>()?;
    let table_grads = (0..4)
        .map(|_| randn(&[VOCAB, WIDTH], 0.01))
        .collect::<Result<Vec<_>>>()?;
    let moments = tables
        .iter()
        .map(|t| Ok((t.zeros_like()?, t.zeros_like()?)))
        .collect::<Result<Vec<_>>>()?;
    let betas = (0.8, 0.95, 1e-10, 0.0);
    bench.step(
        "AdamW step, 4 tables of [2048, 256]",
        || {
            for ((w, g), (m, v)) in tables.iter().zip(&table_grads).zip(&moments) {
                let (w_new, _, _) = reference::adam((w, g, m, v), 0.01, betas, 3)?;
                w.set(&w_new)?;
            }
            Ok(())
        },
        || {
            let s = ops::AdamStep {
                lr: 0.01,
                beta1: betas.0,
                beta2: betas.1,
                eps: betas.2,
                weight_decay: 0.0,
                step: 3,
            };
            for ((w, g), (m, v)) in tables.iter().zip(&table_grads).zip(&moments) {
                ops::adamw_step(w.as_tensor(), g, m, v, &s)?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

struct Bench {
    repeats: usize,
    /// Only the rows whose name contains this run.
    filter: String,
}

impl Bench {
    /// The fastest of `repeats` runs of `f` after one warm-up run, in milliseconds: the least
    /// disturbed by whatever else the machine runs.
    fn time(&self, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
        f()?;
        let mut times = Vec::with_capacity(self.repeats);
        for _ in 0..self.repeats.max(1) {
            let start = Instant::now();
            f()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times.into_iter().fold(f64::INFINITY, f64::min))
    }

    fn alone(&self, name: &str, f: impl FnMut() -> Result<()>) -> Result<()> {
        if !name.contains(&self.filter) {
            return Ok(());
        }
        println!("{name:<52} {:>10} {:>10} {:>10.2}", "", "", self.time(f)?);
        Ok(())
    }

    /// Forward, then forward + backward of two ways of computing one output: its backward starts
    /// from `r` (seeded), or from the output itself when it is a loss (`None`).
    fn op(
        &self,
        name: &str,
        r: Option<&Tensor>,
        composite: impl Fn() -> Result<Tensor>,
        fused: impl Fn() -> Result<Tensor>,
    ) -> Result<()> {
        if !name.contains(&self.filter) {
            return Ok(());
        }
        let both = |f: &dyn Fn() -> Result<Tensor>| -> Result<()> {
            let y = f()?;
            match r {
                Some(r) => seed(&y, r),
                None => y.backward().map(drop),
            }
        };
        let (cf, ff) = (
            self.time(|| composite().map(drop))?,
            self.time(|| fused().map(drop))?,
        );
        let (cb, fb) = (self.time(|| both(&composite))?, self.time(|| both(&fused))?);
        println!(
            "{name:<52} {cf:>10.2} {ff:>10.2} {cb:>10.2} {fb:>10.2} {:>7.1}x",
            cb / fb
        );
        Ok(())
    }

    /// An optimizer step, two ways.
    fn step(
        &self,
        name: &str,
        composite: impl FnMut() -> Result<()>,
        fused: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        if !name.contains(&self.filter) {
            return Ok(());
        }
        let (c, f) = (self.time(composite)?, self.time(fused)?);
        println!(
            "{name:<52} {:>10} {:>10} {c:>10.2} {f:>10.2} {:>7.1}x",
            "",
            "",
            c / f
        );
        Ok(())
    }
}

/// Back-propagates `r` as the gradient of `y` (the gradients are dropped).
fn seed(y: &Tensor, r: &Tensor) -> Result<()> {
    y.apply_op2(r, Seed)?.backward().map(drop)
}

/// A scalar whose gradient wrt its first input is its second input: starts a backward pass from a
/// given output gradient, at no cost of its own.
struct Seed;

impl CustomOp2 for Seed {
    fn name(&self) -> &'static str {
        "seed"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![0.0]), Shape::from(())))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        r: &Tensor,
        _: &Tensor,
        _: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(r.clone()), None))
    }
}
