//! `propose`: how a user judges a model before a night's run. Proposes edits against the current
//! training file without training, printing each idea, its diff and whether it applied and
//! compiled, then the valid-edit rate.

use std::ops::ControlFlow;

use anyhow::{Context, Result};

use crate::agent::engine::Engine;
use crate::agent::ledger::{Ledger, Tried};
use crate::agent::prompt::{Action, PromptInput};
use crate::agent::propose::{Agent, Attempt, Event, Settings, Verdict};
use crate::cli::ProposeArgs;
use crate::research::settings::ActionChoice;
use crate::trainer::build;

pub fn run(args: &ProposeArgs) -> Result<()> {
    let train_file = args
        .train_file
        .clone()
        .unwrap_or_else(build::default_train_file);
    let source = std::fs::read_to_string(&train_file)
        .with_context(|| format!("cannot read the training file {}", train_file.display()))?;
    let program = crate::program::load(args.program.as_deref())?;
    let model = args.model.resolve()?;
    let engine = Engine::load(&model, args.model.gpu_layers())?;
    eprintln!("loaded {} in {:.1}s", model.display(), engine.load_seconds);
    let context = args
        .agent
        .ctx
        .unwrap_or_else(|| engine.n_ctx_train().min(8192));

    let mut agent = Agent {
        engine: &engine,
        program,
        settings: Settings {
            context,
            max_tokens: args.agent.max_tokens,
            temperature: args.agent.temperature,
            max_repairs: args.agent.repairs,
            slot: "propose".into(),
            confinement: args.confinement.confinement(),
        },
        ledger: Ledger::default(),
        tuner: None,
        shapes: None,
    };
    agent.ledger.insert(Tried::of("the training file", &source));

    let actions: Vec<(Action, usize)> = match args.action {
        ActionChoice::Replace => vec![(Action::Replace, args.count)],
        ActionChoice::Set => vec![(Action::Set, args.count)],
        // Half and half: the narrow action is what a weak model gets right.
        ActionChoice::Mixed => vec![
            (Action::Set, args.count.div_ceil(2)),
            (Action::Replace, args.count / 2),
        ],
    };
    let mut all = Vec::new();
    let (mut decode_tokens, mut decode_seconds) = (0usize, 0f64);
    for (action, count) in actions.into_iter().filter(|(_, n)| *n > 0) {
        let program = agent.program.clone();
        let input = PromptInput::plain(&program, &source, action);
        let mut shown = all.len();
        let (stats, attempts) = agent.propose(&source, &input, count, args.seed, &mut |event| {
            if let Event::Finished(a) = event {
                shown += 1;
                print_attempt(shown, a);
            }
            ControlFlow::Continue(())
        })?;
        eprintln!(
            "prompt ({action}): {} tokens (level {}), {} of them restored from the previous prompt, read in {:.1}s",
            stats.tokens, stats.level, stats.reused, stats.seconds,
        );
        for a in &attempts {
            decode_tokens += a.reply_tokens;
            decode_seconds += a.generate_seconds;
        }
        all.extend(attempts);
    }
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, a) in all.iter().enumerate() {
            if let Verdict::Valid(text) = &a.verdict {
                let path = dir.join(format!("proposal-{}.rs", i + 1));
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    let valid = all.iter().filter(|a| a.is_valid()).count();
    println!(
        "valid edits: {valid}/{} ({:.0}%) | decode {:.1} tokens/s with grammar",
        all.len(),
        100.0 * valid as f64 / all.len().max(1) as f64,
        decode_tokens as f64 / decode_seconds.max(1e-9)
    );
    Ok(())
}

fn print_attempt(index: usize, a: &Attempt) {
    println!("## proposal {index} ({:?})", a.action);
    println!("idea: {}", a.idea.as_deref().unwrap_or("(none)"));
    if let Some(diff) = &a.diff {
        print!("{diff}");
    }
    let repairs = if a.repairs > 0 {
        format!(", {} repair round(s)", a.repairs)
    } else {
        String::new()
    };
    match &a.verdict {
        Verdict::Valid(_) => println!(
            "-> applies and compiles (build {:.1}s{repairs})",
            a.build_seconds
        ),
        Verdict::Rejected(r) => println!("-> rejected: {r}\nreply was:\n{}", a.reply.trim_end()),
        Verdict::Refused(r) => println!("-> refused by the static gate:\n{r}"),
        Verdict::DoesNotCompile { errors, .. } => {
            println!("-> does not compile{repairs}:\n{errors}")
        }
    }
    println!(
        "({} tokens in {:.1}s)\n",
        a.reply_tokens, a.generate_seconds
    );
}
