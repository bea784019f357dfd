//! `bench agent`: the agent's model speed in this process (load, prompt processing, decoding),
//! side by side with llama.cpp's own llama-bench (`--llama-bench PATH`, built against the same
//! vendored llama.cpp by scripts/build-llama-bench.sh) on the same file and machine.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::agent::engine::{self, Engine};
use crate::cli::BenchAgentArgs;

pub fn run(args: &BenchAgentArgs) -> Result<()> {
    let model = args.model.resolve()?;
    let gpu_layers = args.model.gpu_layers();
    let start = Instant::now();
    let engine = Engine::load(&model, gpu_layers)?;
    let load = start.elapsed().as_secs_f64();

    // A prompt of exactly the asked length, from real text.
    let text = include_str!("../../train/src/train.rs").repeat(4);
    let mut tokens = engine.tokenize(&text);
    if tokens.len() < args.prompt_tokens {
        bail!("the benchmark text has only {} tokens", tokens.len());
    }
    tokens.truncate(args.prompt_tokens);
    let context = args.prompt_tokens + args.gen_tokens + 16;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let mut session = engine.session_tokens(tokens.clone(), context)?;
        pp.push(args.prompt_tokens as f64 / session.prompt_seconds);
        // No end-of-generation stop would be fair to llama-bench, which always decodes n tokens;
        // a high temperature keeps a base model from ending early.
        let generation = session.generate(None, args.gen_tokens, 1.5, round as u32)?;
        tg.push(generation.tokens as f64 / generation.seconds);
    }
    let ours_pp = mean(&pp);
    let ours_tg = mean(&tg);
    println!("model: {}", model.display());
    println!("load: {load:.2}s");
    println!(
        "autoresearch: pp{} {ours_pp:.1} tokens/s | tg{} {ours_tg:.1} tokens/s ({} rounds)",
        args.prompt_tokens, args.gen_tokens, args.rounds
    );
    let Some(bench) = &args.llama_bench else {
        println!("llama-bench: not given (pass --llama-bench PATH for the side-by-side ratio)");
        return Ok(());
    };
    let (theirs_pp, theirs_tg) = llama_bench(bench, &model, args, gpu_layers)?;
    println!(
        "llama-bench:  pp{} {theirs_pp:.1} tokens/s | tg{} {theirs_tg:.1} tokens/s",
        args.prompt_tokens, args.gen_tokens
    );
    println!(
        "ratio (autoresearch / llama-bench): pp {:.2} | tg {:.2}",
        ours_pp / theirs_pp,
        ours_tg / theirs_tg
    );
    Ok(())
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Runs llama-bench on the same model and returns its (prompt, generation) tokens/s.
fn llama_bench(
    bench: &Path,
    model: &Path,
    args: &BenchAgentArgs,
    gpu_layers: u32,
) -> Result<(f64, f64)> {
    let threads = engine::threads();
    let output = Command::new(bench)
        .arg("-m")
        .arg(model)
        .args(["-p", &args.prompt_tokens.to_string()])
        .args(["-n", &args.gen_tokens.to_string()])
        .args(["-r", &args.rounds.to_string()])
        .args(["-t", &threads.to_string()])
        .args(["-ngl", &gpu_layers.min(999).to_string()])
        .args(["-o", "json"])
        .output()
        .with_context(|| format!("cannot run {}", bench.display()))?;
    if !output.status.success() {
        bail!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("llama-bench printed no JSON array")?;
    let rate = |prompt: bool| {
        rows.iter()
            .find(|r| (r["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt)
            .and_then(|r| r["avg_ts"].as_f64())
            .context("llama-bench's JSON lacks avg_ts")
    };
    Ok((rate(true)?, rate(false)?))
}
