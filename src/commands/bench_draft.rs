//! `bench draft`: what thinking while training costs the trainer and saves the agent. The same
//! training program runs twice for the same budget, first alone, then with the agent writing
//! proposals beside it the whole time. The ratio of the two tokens/s is the trainer's cost; the
//! seconds a draft takes beside training are what an experiment that uses one no longer waits.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use harness::meta::DataMeta;
use harness::summary::Summary;

use crate::agent::ledger::Ledger;
use crate::agent::prompt::{Action, PromptInput};
use crate::agent::propose::{Agent, Settings};
use crate::cli::BenchDraftArgs;
use crate::confine::Confinement;
use crate::scheduler::resident::ResidentAgent;
use crate::trainer::{build, run as runner};
use crate::units::Seconds;

/// One draft: seconds, replies written, whether one applied.
struct Drafted {
    seconds: f64,
    replies: usize,
    applies: bool,
}

pub fn run(args: &BenchDraftArgs) -> Result<()> {
    let confinement = args.confinement.confinement();
    let data_dir = args.data.resolve();
    DataMeta::load(&data_dir)?;
    let train_file = args
        .train_file
        .clone()
        .unwrap_or_else(build::default_train_file);
    let source = std::fs::read_to_string(&train_file)
        .with_context(|| format!("cannot read {}", train_file.display()))?;
    let binary = match &args.trainer_bin {
        Some(bin) => bin.clone(),
        None => build::build(&train_file, "bench-draft", confinement)?.binary,
    };
    let program = crate::program::load(args.program.as_deref())?;
    let model = args.model.resolve()?;
    let mut resident = ResidentAgent::load(&model, args.model.gpu_layers(), args.ctx)?;
    let settings = Settings {
        context: resident.context(),
        max_tokens: args.max_tokens,
        temperature: 0.8,
        max_repairs: 0,
        slot: "bench-draft".into(),
        confinement,
    };
    let agent = Agent {
        engine: resident.engine()?,
        program: program.clone(),
        settings,
        ledger: Ledger::default(),
        tuner: None,
        shapes: None,
    };
    let input = PromptInput::plain(&program, &source, Action::Set);
    let draft = |seed: u32, stop: &dyn Fn() -> bool| -> Result<Drafted> {
        let start = Instant::now();
        let (replies, reply) = agent.draft(&source, &input, args.proposals, seed, stop)?;
        Ok(Drafted {
            seconds: start.elapsed().as_secs_f64(),
            replies,
            applies: reply.is_some(),
        })
    };

    let alone = draft(1, &|| false)?;
    println!(
        "draft alone: {:.2}s ({} replies, {})",
        alone.seconds,
        alone.replies,
        if alone.applies {
            "one applies"
        } else {
            "none applies"
        }
    );
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let budget = args.budget;
    let train = |dir: &str| {
        train(
            &binary,
            &data_dir,
            &scratch.path().join(dir),
            budget,
            confinement,
        )
    };
    let solo = train("alone")?;
    println!("trainer alone: {}", describe(&solo));

    let done = AtomicBool::new(false);
    let (beside, drafts) = std::thread::scope(|s| {
        let drafting = s.spawn(|| {
            let mut drafts = Vec::new();
            let mut seed = 100;
            while !done.load(Ordering::Relaxed) {
                let d = draft(seed, &|| done.load(Ordering::Relaxed));
                // A draft cut short by the end of the run says nothing about its length.
                if done.load(Ordering::Relaxed) {
                    break;
                }
                drafts.push(d?);
                seed += 10;
            }
            anyhow::Ok(drafts)
        });
        let beside = train("beside");
        done.store(true, Ordering::Relaxed);
        let drafts = drafting
            .join()
            .map_err(|_| anyhow::anyhow!("the drafting thread panicked"));
        (beside, drafts)
    });
    let (beside, drafts) = (beside?, drafts??);
    println!(
        "trainer with the agent drafting beside it: {}",
        describe(&beside)
    );
    println!(
        "trainer tokens/s beside drafting / alone: {:.3}",
        beside.tokens_per_second / solo.tokens_per_second
    );
    if drafts.is_empty() {
        println!("no draft finished during the {budget} run");
    } else {
        let mean = drafts.iter().map(|d| d.seconds).sum::<f64>() / drafts.len() as f64;
        let applied = drafts.iter().filter(|d| d.applies).count();
        let replies: usize = drafts.iter().map(|d| d.replies).sum();
        println!(
            "drafts beside training: {} finished, {replies} replies, {applied} applied; mean {mean:.2}s each (alone {:.2}s): an experiment that uses a draft waits that much less for its agent",
            drafts.len(),
            alone.seconds
        );
    }
    Ok(())
}

fn train(
    binary: &Path,
    data_dir: &Path,
    run_dir: &Path,
    budget: Seconds,
    confinement: Confinement,
) -> Result<Summary> {
    let spec = runner::RunSpec {
        binary,
        data_dir,
        run_dir,
        seed: 0,
        budget: Some(budget.get()),
        timeout: runner::default_timeout(budget),
        confinement,
        cpus: None,
        gpu: None,
        stop: &|| false,
        describe: false,
    };
    let report = runner::run(&spec, |_| ControlFlow::Continue(()))?;
    match report.outcome {
        runner::Outcome::Finished(summary) => Ok(*summary),
        failed => bail!(
            "the training run failed: {}; its last lines:\n{}",
            failed.problem(spec.timeout).unwrap_or_default(),
            report.tail.join("\n")
        ),
    }
}

fn describe(s: &Summary) -> String {
    format!(
        "{:.0} tokens/s, MFU {:.1}%, peak {:.0} MiB, {} steps, val_bpb {:.6}",
        s.tokens_per_second, s.mfu_percent, s.peak_vram_mb, s.num_steps, s.val_bpb
    )
}
