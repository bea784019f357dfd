//! The runs of one record: each training run (of its own file, or of the best file beside a
//! candidate) and the judgement of a candidate's runs against the best, paired or not.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::Research;
use crate::research::early_stop::Watch;
use crate::research::history::Best;
use crate::research::noise::{mean, Judgement, NoiseFloor};
use crate::research::pending;
use crate::research::progress::Ui;
use crate::research::record::{CommitId, Outcome, Placed, Record};
use crate::research::runner::{record_run, Lane, Progress, RunEvents, Trainer};
use crate::research::sourcing::Proposer;
use crate::trainer::run::RunReport;
use crate::units::Bytes;

/// The best file's runs a paired judgement compares with: the latest, so that they were made
/// on the machine as it is now, and up to three, so that one lucky run does not set the bar.
/// Right after a keep there are only the kept file's own one or two; candidates within the noise
/// of them have the best file run beside them until there are three (`worth_running_the_best`).
pub const REFERENCE_RUNS: usize = 3;

/// Runs of one record the cluster may end before the loop stops and says so: a cluster that
/// keeps ending jobs needs its admin, not more tries.
const LOST_RUNS: usize = 3;

/// What the loop hears of one of its runs: the lines for the terminal, the live view and early
/// stopping; the placement for the pending record, so that a job waiting in a queue is named
/// there.
struct Hearing<'a> {
    ui: &'a mut Ui,
    n: usize,
    index: usize,
    progress: Progress,
    record: &'a mut Record,
    dir: &'a Path,
}

impl RunEvents for Hearing<'_> {
    fn line(&mut self, line: &str) -> ControlFlow<()> {
        self.ui.training_line(self.n, self.index, line);
        self.progress.see(line)
    }

    fn placed(&mut self, placed: &Placed) {
        self.record.in_flight = Some(placed.clone());
        if let Err(e) = pending::save(self.dir, self.record) {
            self.ui.say(&format!("e{:04}: {e}", self.n));
        }
    }
}

/// How one training run went, for `train`.
enum Ran {
    /// Its job was ended by the cluster; `retry`: a new job may finish it.
    Lost { retry: bool },
    /// Some(outcome) when it produced no result.
    Ended(Option<Outcome>),
}

impl<P: Proposer, T: Trainer> Research<P, T> {
    /// Trains the candidate `binary` and judges its runs against the best, running it again
    /// while it is better but within the noise (`--max-runs`); returns the best's value it was
    /// judged against (its recorded value, or with paired judging the mean of its latest runs).
    pub(super) fn train_and_judge(
        &mut self,
        binary: &Path,
        record: &mut Record,
        best: Best,
        floor: &NoiseFloor,
    ) -> Result<f64> {
        // What the candidate was judged against: the best's recorded value, or its latest runs.
        let mut bar = best.val_bpb;
        for i in 1..=self.settings.max_runs {
            // The k-th run of a candidate has seed k-1, as the best file's runs had.
            if let Some(failed) = self.train(binary, record, (i - 1) as u64, None)? {
                record.outcome = failed;
                break;
            }
            let values = record.finished_values();
            // Asked only when paired, as the best's runs are looked up for it.
            if self.settings.paired
                && i == 1
                && self.worth_running_the_best(&values, record, best, floor)
            {
                // The best file runs again now, on the machine as it is.
                if self.run_best_beside(record, best)? == Some(Outcome::Interrupted) {
                    record.val_bpb = Some(mean(&values));
                    record.outcome = Outcome::Interrupted;
                    break;
                }
            }
            let judgement;
            (judgement, bar) = self.judge(record, best, floor, self.settings.max_runs);
            record.outcome = match judgement {
                Judgement::Keep => Outcome::Keep,
                Judgement::Discard => Outcome::Discard,
                Judgement::Confirm => {
                    self.ui.say(&format!(
                        "e{:04}: {:.6} is better than {bar:.6} but within the noise: one more run",
                        record.n,
                        values[values.len() - 1],
                    ));
                    continue;
                }
            };
            break;
        }
        Ok(bar)
    }

    /// Judges `record`'s finished runs against the best, paired or not, with `max_runs` allowed
    /// (1: no confirmation runs); notes its value and the decision in it, and returns the
    /// judgement and the best's value it was judged against.
    pub(super) fn judge(
        &self,
        record: &mut Record,
        best: Best,
        floor: &NoiseFloor,
        max_runs: usize,
    ) -> (Judgement, f64) {
        let values = record.finished_values();
        record.val_bpb = Some(mean(&values));
        if self.settings.paired {
            let reference = self.reference(record, best);
            record.decision = Some(floor.decision_paired(&reference, &values));
            let judgement = floor.judge_paired(&reference, &values, max_runs);
            (judgement, mean(&reference))
        } else {
            record.decision = Some(floor.decision(best.val_bpb, &values));
            (floor.judge(best.val_bpb, &values, max_runs), best.val_bpb)
        }
    }

    /// Adds a finished run to `record` (see `runner::record_run`), with the trainer's share of
    /// its peak and early stopping's verdict; Some(outcome) when it produced no result.
    pub(super) fn record_ran(
        &mut self,
        record: &mut Record,
        report: RunReport,
        progress: Progress,
    ) -> Option<Outcome> {
        let peak = match &report.outcome {
            crate::trainer::run::Outcome::Finished(s) => Some(
                self.proposer
                    .trainer_share(Bytes::from_mib_f64(s.peak_vram_mb), self.schedule.as_ref()),
            ),
            _ => None,
        };
        let failed = record_run(record, report, progress.curve, peak, self.settings.timeout);
        if let Some(verdict) = progress.doomed {
            record.error = Some(verdict.to_string());
        }
        failed
    }

    /// Every finished run of the best file at this run's budget, oldest first, this record's
    /// runs of it included (not confirmations: their seeds and budget are their own).
    fn best_runs(&self, record: &Record, best: Best) -> Vec<f64> {
        let mut runs = self
            .history()
            .runs_of(best.commit, self.settings.budget.get());
        runs.extend(record.values_of(best.commit));
        runs
    }

    /// What a candidate is judged against when judging is paired: the best file's latest runs,
    /// or its recorded value where the journal has none of its runs at this budget.
    pub(super) fn reference(&self, record: &Record, best: Best) -> Vec<f64> {
        let runs = self.best_runs(record, best);
        if runs.is_empty() {
            return vec![best.val_bpb];
        }
        runs[runs.len().saturating_sub(REFERENCE_RUNS)..].to_vec()
    }

    /// Whether the best file runs again beside a candidate's first run (`values`): when it beats
    /// the best's latest runs (promising), or when those are fewer than `REFERENCE_RUNS` and the
    /// run is within the noise of them. A keep often rests on one run that was lucky (it was kept
    /// for being the best draw); without more runs of its file, that draw alone would be the bar
    /// for every candidate after it, and a candidate as good as the file would be discarded.
    fn worth_running_the_best(
        &self,
        values: &[f64],
        record: &Record,
        best: Best,
        floor: &NoiseFloor,
    ) -> bool {
        let reference = self.reference(record, best);
        let behind = mean(values) - mean(&reference);
        behind < 0.0
            || (reference.len() < REFERENCE_RUNS
                && behind < floor.needed_paired(values.len(), reference.len()))
    }

    /// Runs the best file once more beside the candidate, with a seed none of its runs had, so
    /// that its latest runs are independent draws.
    fn run_best_beside(&mut self, record: &mut Record, best: Best) -> Result<Option<Outcome>> {
        let binary = self.build_best(best, record)?;
        let seed = self.best_runs(record, best).len() as u64;
        self.train(&binary, record, seed, Some(best.commit))
    }

    /// The best file's training program, for its runs beside a candidate. It built before, so
    /// failing to build now is the machine's doing.
    fn build_best(&mut self, best: Best, record: &mut Record) -> Result<PathBuf> {
        let text = self.workspace.file_at(best.commit)?;
        match self.build(&text, record)? {
            Ok(binary) => Ok(binary),
            Err(errors) => bail!(
                "the best file ({}) no longer builds, though it did before: {errors}",
                best.commit.short()
            ),
        }
    }

    /// One training run of `record`'s file, or with `of` of the best file beside it; Some(outcome)
    /// when it produced no result. A run whose job the cluster ended (preempted, its worker
    /// gone) stays in the record and runs again in a new job, up to `LOST_RUNS` times.
    pub(super) fn train(
        &mut self,
        binary: &Path,
        record: &mut Record,
        seed: u64,
        of: Option<CommitId>,
    ) -> Result<Option<Outcome>> {
        let mut lost = 0;
        loop {
            let (error, tail) = (record.error.clone(), record.log_tail.clone());
            match self.train_once(binary, record, seed, of)? {
                Ran::Lost { retry } => {
                    lost += 1;
                    let why = record.error.clone().unwrap_or_default();
                    (record.error, record.log_tail) = (error, tail);
                    if !retry || lost >= LOST_RUNS {
                        bail!("e{:04}: {why}; the experiment runs again when the run is resumed with the same --tag", record.n);
                    }
                    self.ui.say(&format!("e{:04}: {why}", record.n));
                }
                Ran::Ended(outcome) => return Ok(outcome),
            }
        }
    }

    fn train_once(
        &mut self,
        binary: &Path,
        record: &mut Record,
        seed: u64,
        of: Option<CommitId>,
    ) -> Result<Ran> {
        let n = record.n;
        let index = record.runs.len() + 1;
        let run_dir = self
            .settings
            .dir
            .join(format!("e{n:04}"))
            .join(format!("run{index}"));
        if record.runs.is_empty() {
            // The device is arranged once per experiment, before its first run.
            self.schedule = self.proposer.make_room()?;
            if let Some(s) = self
                .schedule
                .as_ref()
                .filter(|s| !s.decision.plan.is_resident())
            {
                self.ui.say(&format!(
                    "e{n:04}: agent {:?} for the run: {}",
                    s.decision.plan, s.decision.reason
                ));
            }
            self.start_drafts(record, 1)?;
        }
        if of.is_some() {
            self.ui.say(&format!(
                "e{n:04} run {index}: the best file again, beside the candidate"
            ));
        }
        self.ui.training_begin(n, index, self.settings.budget);
        let watch = (self.settings.early_stop && !record.is_baseline() && of.is_none())
            .then(|| Watch::against_best(&self.history()))
            .flatten();
        let mut hearing = Hearing {
            ui: &mut self.ui,
            n,
            index,
            progress: Progress::new(watch),
            record,
            dir: &self.settings.dir,
        };
        // Each run of a file again has its own seed: a second run then measures the luck of the
        // initialisation, instead of repeating the first.
        let report = self
            .trainer
            .run(binary, &run_dir, seed, Lane::ONLY, &mut hearing)?;
        let progress = hearing.progress;
        let candidates = (record.error.clone(), record.log_tail.clone());
        let lost = match &report.outcome {
            crate::trainer::run::Outcome::Lost { retry, .. } => Some(*retry),
            _ => None,
        };
        // A run of the best beside a candidate is never watched: no verdict to lose below.
        let failed = self.record_ran(record, report, progress);
        if let Some(best) = of {
            record
                .runs
                .last_mut()
                .expect("the run just recorded")
                .commit = Some(best);
            // The best file's run says nothing of the candidate: its error and log stay its own.
            (record.error, record.log_tail) = candidates;
        }
        pending::save(&self.settings.dir, record)?;
        Ok(match lost {
            Some(retry) => Ran::Lost { retry },
            None => Ran::Ended(failed),
        })
    }
}
