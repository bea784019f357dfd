//! `confirm`: runs the best commit and the baseline alternately, `--runs` times each, with the
//! run's budget, and reports the improvement with its 95 % interval: whether the best file is
//! really better, or its keep was the noise's doing. The result goes into the journal as a
//! confirmation record, which `report` shows.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use harness::meta::DataMeta;

use crate::cli::ConfirmArgs;
use crate::research::confirmation::{self, Interval};
use crate::research::git::Workspace;
use crate::research::journal::Journal;
use crate::research::locate::RunFolder;
use crate::research::lock::RunLock;
use crate::research::now;
use crate::research::pending;
use crate::research::progress::Ui;
use crate::research::record::{Outcome, Record, RecordKind, RunRecord};
use crate::research::runner::{Lane, LocalTrainer, Trainer};
use crate::research::stop::Stop;
use crate::trainer::run::default_timeout;
use crate::units::Seconds;

/// The first pair's seed. The loop gives run k of an experiment seed k - 1, and runs at most a
/// handful, so seeds from here on are new to both files.
const FIRST_SEED: u64 = 1000;

pub fn run(args: &ConfirmArgs) -> Result<()> {
    let RunFolder { tag, dir } = args.run.locate()?;
    // Not beside the loop of the same run: the two would share the device.
    let _lock = RunLock::acquire(&dir, &tag)?;
    let (mut journal, _) = Journal::open(&dir)?;
    // An experiment a killed loop left in flight goes into the journal first: otherwise this
    // confirmation would take its number, and the loop's resume would take it as recorded.
    pending::recover(&dir, &mut journal, now())?;
    let history = journal.history();
    let baseline = history
        .baseline()
        .with_context(|| format!("the run {tag} has no finished baseline yet: nothing to confirm"))?
        .clone();
    let best = history
        .last_kept()
        .filter(|r| !r.is_baseline())
        .with_context(|| format!("no experiment of the run {tag} was kept: nothing to confirm"))?;
    let best = best.clone();
    let (Some(base_commit), Some(best_commit)) = (baseline.commit, best.commit) else {
        bail!("the journal of {tag} has a record without its commit");
    };
    let workspace = Workspace::open(&args.run.checkout()?, &tag, &dir.join("worktree"))?;

    let data_dir = args.data.resolve();
    let meta = DataMeta::load(&data_dir)?;
    let budget = match (args.budget, baseline.budget_seconds) {
        (Some(budget), _) => budget,
        (None, Some(seconds)) => Seconds::new(seconds).map_err(anyhow::Error::msg)?,
        (None, None) => Seconds::new(meta.profile.budget_seconds).map_err(anyhow::Error::msg)?,
    };
    let stop = Stop::on_signals()?;
    let mut trainer = LocalTrainer {
        slot: format!("confirm-{tag}"),
        data_dir,
        budget,
        timeout: default_timeout(budget),
        confinement: args.confinement.confinement(),
        stop: stop.clone(),
        gpus: crate::scheduler::memory::Device::gpu_count(),
    };
    let files = [(base_commit, "the baseline"), (best_commit, "the best")];
    let mut binaries: Vec<PathBuf> = Vec::new();
    for (commit, _) in files {
        binaries.push(trainer.build(&workspace.file_at(commit)?)?.binary);
    }

    let start = Instant::now();
    let n = history.next_n();
    let mut record = Record::new(n, RecordKind::Confirmation, base_commit, now());
    record.commit = Some(best_commit);
    record.budget_seconds = Some(budget.get());
    record.description = format!(
        "confirm e{:04} against the baseline, {} runs each",
        best.n, args.runs
    );
    let mut ui = Ui::new(true);
    println!("{tag}: {} with {budget} per run", record.description);
    let mut values: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    'runs: for i in 0..args.runs {
        // ABBA: the order alternates, so neither file always runs second, on a warmed machine.
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for (j, k) in order.into_iter().enumerate() {
            let ((commit, name), binary) = (&files[k], &binaries[k]);
            let index = 2 * i + j + 1;
            let run_dir = dir.join(format!("e{n:04}")).join(format!("run{index}"));
            ui.training_begin(n, index, budget);
            // The pair's seed, one the loop never used: each pair is a new initialisation of
            // both files, not the ones the keep was chosen on.
            let seed = FIRST_SEED + i as u64;
            let report = trainer.run(binary, &run_dir, seed, Lane::ONLY, &mut |_: &str| {
                ControlFlow::Continue(())
            })?;
            let end = report.outcome.end();
            let summary = match report.outcome {
                crate::trainer::run::Outcome::Finished(s) => Some(*s),
                _ => None,
            };
            if let Some(s) = &summary {
                values[k].push(s.val_bpb);
                println!("e{n:04} run {index}: {name} val_bpb {:.6}", s.val_bpb);
            }
            record.runs.push(RunRecord {
                outcome: end,
                summary,
                seconds: report.seconds,
                log: report.log,
                exit: None,
                curve: Vec::new(),
                commit: Some(*commit),
                placed: report.placed,
            });
            if stop.requested() {
                break 'runs;
            }
        }
    }
    record.timing.training_seconds = record.runs.iter().map(|r| r.seconds).sum();
    record.timing.total_seconds = start.elapsed().as_secs_f64();
    record.finished = now();
    record.interval = Interval::welch(&values[0], &values[1]);
    record.outcome = match record.interval {
        _ if stop.requested() => Outcome::Interrupted,
        Some(i) if i.excludes_zero() => Outcome::Confirmed,
        _ => Outcome::NotConfirmed,
    };
    let line = confirmation::describe(&record);
    journal.append(record)?;
    println!("{line}");
    Ok(())
}
