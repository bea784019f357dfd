//! `bench trainer`: the training program's speed at the prepared profile's shape, with the time
//! of its steps split into forward, backward and optimizer, and, given a Python with torch,
//! PyTorch's reference (`torch_ref_cpu.py`, eager and torch.compile) right after it on the same
//! machine at the same shape, with the ratios.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use harness::meta::DataMeta;

use crate::cli::BenchTrainerArgs;
use crate::trainer::{build, run as runner};

/// The model's shape as the training program printed it.
#[derive(Debug, PartialEq)]
struct Shape {
    depth: usize,
    width: usize,
    head_dim: usize,
    rows: usize,
}

pub fn run(args: &BenchTrainerArgs) -> Result<()> {
    let confinement = args.confinement.confinement();
    let data_dir = args.data.resolve();
    let meta = DataMeta::load(&data_dir)?;
    let script = match (&args.torch, &args.torch_script) {
        (None, _) => None,
        (Some(_), Some(script)) => Some(script.clone()),
        (Some(_), None) => Some(default_torch_script()),
    };
    if let Some(script) = script.as_ref().filter(|s| !s.is_file()) {
        bail!(
            "the PyTorch reference {} does not exist: pass its path with --torch-script",
            script.display()
        );
    }
    let binary = match &args.trainer_bin {
        Some(bin) => bin.clone(),
        None => {
            let file = args
                .train_file
                .clone()
                .unwrap_or_else(build::default_train_file);
            build::build(&file, "bench-trainer", confinement)?.binary
        }
    };
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let spec = runner::RunSpec {
        binary: &binary,
        data_dir: &data_dir,
        run_dir: scratch.path(),
        seed: 0,
        budget: Some(args.budget.get()),
        timeout: runner::default_timeout(args.budget),
        confinement,
        cpus: None,
        gpu: None,
        stop: &|| false,
        describe: false,
    };
    let report = runner::run(&spec, |_| ControlFlow::Continue(()))?;
    let summary = match report.outcome {
        runner::Outcome::Finished(summary) => *summary,
        failed => bail!(
            "the training run failed: {}; its last lines:\n{}",
            failed.problem(spec.timeout).unwrap_or_default(),
            report.tail.join("\n")
        ),
    };
    let shape = report
        .tail
        .iter()
        .find_map(|l| parse_shape(l))
        .or_else(|| {
            let log = std::fs::read_to_string(&report.log).ok()?;
            log.lines().find_map(parse_shape)
        })
        .context("the training program did not print its `model:` line")?;
    let seq = meta.profile.seq_len;
    println!("machine: {}", summary.device);
    println!(
        "trainer: depth {}, width {}, heads of {}, {} rows of {seq} tokens per forward: {:.0} tokens/s, MFU {:.1}%, {} steps in {:.1}s",
        shape.depth,
        shape.width,
        shape.head_dim,
        shape.rows,
        summary.tokens_per_second,
        summary.mfu_percent,
        summary.num_steps,
        summary.training_seconds
    );
    if let Some(parts) = &summary.parts {
        let total = parts.total().max(1e-9);
        println!(
            "step split (timed steps): forward {:.0}%, backward {:.0}%, optimizer {:.0}% ({:.2}s, {:.2}s, {:.2}s per step)",
            100.0 * parts.forward_seconds / total,
            100.0 * parts.backward_seconds / total,
            100.0 * parts.optimizer_seconds / total,
            parts.forward_seconds / parts.steps.max(1) as f64,
            parts.backward_seconds / parts.steps.max(1) as f64,
            parts.optimizer_seconds / parts.steps.max(1) as f64,
        );
    }
    let (Some(python), Some(script)) = (&args.torch, &script) else {
        return Ok(());
    };
    for (name, compile) in [("eager", 0), ("torch.compile", 1)] {
        let tokens_per_second = torch(python, script, &shape, &meta, args.budget.get(), compile)?;
        println!(
            "PyTorch {name}: {tokens_per_second:.0} tokens/s; trainer / PyTorch {name}: {:.2}x",
            summary.tokens_per_second / tokens_per_second
        );
    }
    Ok(())
}

/// `../shared/bench/torch_ref_cpu.py` beside the appliance's checkout.
fn default_torch_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/torch_ref_cpu.py")
}

/// Runs the PyTorch reference at `shape` for `seconds` and returns its tokens/s.
fn torch(
    python: &Path,
    script: &Path,
    shape: &Shape,
    meta: &DataMeta,
    seconds: f64,
    compile: u8,
) -> Result<f64> {
    let arg = |v: usize| v.to_string();
    let out = Command::new(python)
        .arg(script)
        .args(["--depth", &arg(shape.depth), "--dim", &arg(shape.width)])
        .args([
            "--head",
            &arg(shape.head_dim),
            "--vocab",
            &arg(meta.profile.vocab_size),
        ])
        .args([
            "--seq",
            &arg(meta.profile.seq_len),
            "--batch",
            &arg(shape.rows),
        ])
        .args([
            "--seconds",
            &seconds.to_string(),
            "--compile",
            &compile.to_string(),
        ])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the PyTorch reference failed ({}): is torch installed for {}?\n{}",
            out.status,
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tok_per_s=")?.parse().ok())
        .with_context(|| format!("the PyTorch reference printed no tok_per_s: {stdout}"))
}

/// `model: depth 4, width 256, 2 heads of 128 | 1 x 16 rows per step | F32`.
fn parse_shape(line: &str) -> Option<Shape> {
    let rest = line.strip_prefix("model: depth ")?;
    let (depth, rest) = rest.split_once(", width ")?;
    let (width, rest) = rest.split_once(", ")?;
    let head_dim = rest.split_once(" heads of ")?.1.split_whitespace().next()?;
    let rows = rest.split_once(" x ")?.1.split_whitespace().next()?;
    Some(Shape {
        depth: depth.parse().ok()?,
        width: width.parse().ok()?,
        head_dim: head_dim.parse().ok()?,
        rows: rows.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_line_gives_the_shape_for_pytorch() {
        let line = "model: depth 4, width 256, 2 heads of 128 | 1 x 16 rows per step | F32";
        assert_eq!(
            parse_shape(line),
            Some(Shape {
                depth: 4,
                width: 256,
                head_dim: 128,
                rows: 16
            })
        );
        assert_eq!(parse_shape("step 00001 (  0.0%) | loss 7.6"), None);
    }
}
