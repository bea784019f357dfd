//! Building and running candidates for the loop, and what a run adds to its experiment's record.
//! The training program is behind the `Trainer` trait, so the loop's control logic can be
//! driven by scripted results in tests.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::early_stop::{Curve, Verdict, Watch};
use super::progress::parse_step_line;
use super::record::{Outcome, Placed, Record, RunRecord};
use super::stop::Stop;
use crate::confine::Confinement;
use crate::trainer::run::{self, RunReport};
use crate::trainer::{build, TrainerError};
use crate::units::{Bytes, Seconds};

/// Which of the loop's workers a run goes to: `index` of `of`, 0 of 1 when runs go one at a
/// time. The executor gives each its own share: CPUs, a GPU, a worker job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub index: usize,
    pub of: usize,
}

impl Lane {
    pub const ONLY: Lane = Lane { index: 0, of: 1 };

    /// This lane's CPUs out of `available`: a block of its own, or None (all of them) when runs
    /// go one at a time. With fewer CPUs than lanes, lanes share them in turn.
    pub fn cpus(self, available: &[usize]) -> Option<Vec<usize>> {
        if self.of <= 1 || available.is_empty() {
            return None;
        }
        let n = available.len();
        if n < self.of {
            return Some(vec![available[self.index % n]]);
        }
        let (each, extra) = (n / self.of, n % self.of);
        let start = self.index * each + self.index.min(extra);
        let len = each + usize::from(self.index < extra);
        Some(available[start..start + len].to_vec())
    }
}

/// What the loop hears of a run while it goes on. A closure over the lines is one.
pub trait RunEvents {
    /// A line the program printed; Break abandons the run (early stopping).
    fn line(&mut self, line: &str) -> ControlFlow<()>;

    /// Where the executor placed the run (its SLURM job, its worker), as soon as it knows: before
    /// the run starts, while it may still wait in a queue.
    fn placed(&mut self, _placed: &Placed) {}
}

impl<F: FnMut(&str) -> ControlFlow<()>> RunEvents for F {
    fn line(&mut self, line: &str) -> ControlFlow<()> {
        self(line)
    }
}

/// A run's loss curve as its step lines come, and early stopping's verdict on it.
pub struct Progress {
    pub curve: Curve,
    watch: Option<Watch>,
    /// Some once the run fell behind the best file's for good.
    pub doomed: Option<Verdict>,
}

impl Progress {
    pub fn new(watch: Option<Watch>) -> Self {
        Progress {
            curve: Curve::new(),
            watch,
            doomed: None,
        }
    }

    /// One line of the run; Break once it is doomed.
    pub fn see(&mut self, line: &str) -> ControlFlow<()> {
        // A file that prints a step line of its own with a NaN loss: not a point of the curve
        // (the journal would write it as null).
        let point = parse_step_line(line).filter(|(_, p, l, _)| p.is_finite() && l.is_finite());
        if let Some((_, progress, loss, _)) = point {
            self.curve.push([progress as f32, loss as f32]);
            self.doomed = self.watch.as_mut().and_then(|w| w.see(progress, loss));
        }
        match self.doomed {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Builds the loop's candidates and trains them; runs may go on at once, from several threads.
pub trait Trainer: Send + Sync {
    /// The training program for a candidate's text (built already when the agent checked that
    /// it compiles: then this only finds it).
    fn build(&mut self, text: &str) -> Result<build::Built, TrainerError>;

    /// One run of `binary` on `lane` with its output in `run_dir` and the run's `seed` (0 for a
    /// file's first run); where it is placed and each line it prints go to `events`, which may
    /// abandon it (early stopping).
    fn run(
        &self,
        binary: &Path,
        run_dir: &Path,
        seed: u64,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError>;
}

impl<T: Trainer + ?Sized> Trainer for Box<T> {
    fn build(&mut self, text: &str) -> Result<build::Built, TrainerError> {
        (**self).build(text)
    }

    fn run(
        &self,
        binary: &Path,
        run_dir: &Path,
        seed: u64,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        (**self).run(binary, run_dir, seed, lane, events)
    }
}

/// The real trainer: builds in the agent's staging slot, runs confined for the budget.
pub struct LocalTrainer {
    pub slot: String,
    pub data_dir: PathBuf,
    pub budget: Seconds,
    pub timeout: Duration,
    pub confinement: Confinement,
    pub stop: Stop,
    /// GPUs on this machine: with one per worker, each worker's runs get their own.
    pub gpus: usize,
}

impl Trainer for LocalTrainer {
    fn build(&mut self, text: &str) -> Result<build::Built, TrainerError> {
        let label = Path::new(super::git::TRAIN_FILE);
        build::build_source(text, label, &self.slot, self.confinement)
    }

    fn run(
        &self,
        binary: &Path,
        run_dir: &Path,
        seed: u64,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        let stop = self.stop.clone();
        let cpus = lane.cpus(&crate::confine::own_cpus());
        let spec = run::RunSpec {
            binary,
            data_dir: &self.data_dir,
            run_dir,
            budget: Some(self.budget.get()),
            seed,
            timeout: self.timeout,
            confinement: self.confinement,
            cpus: cpus.as_deref(),
            gpu: (lane.of > 1 && self.gpus >= lane.of).then_some(lane.index),
            stop: &move || stop.requested(),
            describe: false,
        };
        let placed = (lane.of > 1).then_some(Placed {
            executor: crate::executor::ExecutorKind::Local,
            worker: Some(lane.index),
            job: None,
            host: None,
        });
        if let Some(placed) = &placed {
            events.placed(placed);
        }
        let mut report = run::run(&spec, |line| events.line(line))?;
        report.placed = placed;
        Ok(report)
    }
}

/// Adds a finished run to `record`: its summary, seconds and loss curve, the trainer's own peak
/// (`trainer_peak`, for a run with a result), and the error for a run without one. Returns the
/// experiment's outcome when the run produced no result.
pub fn record_run(
    record: &mut Record,
    report: RunReport,
    curve: Curve,
    trainer_peak: Option<Bytes>,
    timeout: Duration,
) -> Option<Outcome> {
    record.in_flight = None;
    record.timing.training_seconds += report.seconds;
    record.log_tail = report.tail.clone();
    let end = report.outcome.end();
    let exit = report.outcome.problem(timeout);
    let summary = match report.outcome {
        run::Outcome::Finished(summary) => Some(*summary),
        _ => None,
    };
    if let Some(s) = &summary {
        record.timing.eval_seconds += s.eval_seconds;
    }
    if let Some(peak) = trainer_peak {
        record.trainer_peak = Some(record.trainer_peak.unwrap_or_default().max(peak));
    }
    if let Some(exit) = &exit {
        let tail = &report.tail[report.tail.len().saturating_sub(12)..];
        record.error = Some(format!("{exit}\n{}", tail.join("\n")));
    }
    record.runs.push(RunRecord {
        outcome: end,
        summary,
        seconds: report.seconds,
        log: report.log,
        exit,
        curve,
        commit: None,
        placed: report.placed,
    });
    end.outcome_without_result()
}

/// Deletes the weights of `record`'s runs: those of an experiment that was not kept only fill the
/// disk.
pub fn drop_weights(record: &Record) {
    for run in &record.runs {
        if let Some(dir) = run.log.parent() {
            let _ = std::fs::remove_file(dir.join(harness::WEIGHTS_FILE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::commit;
    use super::super::record::{RecordKind, RunEnd};
    use super::*;

    fn report(outcome: run::Outcome, tail: &[&str]) -> RunReport {
        RunReport {
            outcome,
            log: PathBuf::from("e0001/run1/train.log"),
            seconds: 7.5,
            tail: tail.iter().map(|l| l.to_string()).collect(),
            placed: None,
        }
    }

    #[test]
    fn lanes_split_the_cpus_into_blocks() {
        let eight: Vec<usize> = (0..8).collect();
        assert_eq!(Lane::ONLY.cpus(&eight), None);
        let lane = |index, of| Lane { index, of };
        assert_eq!(lane(0, 2).cpus(&[0, 1]), Some(vec![0]));
        assert_eq!(lane(1, 2).cpus(&[0, 1]), Some(vec![1]));
        assert_eq!(lane(0, 3).cpus(&eight), Some(vec![0, 1, 2]));
        assert_eq!(lane(1, 3).cpus(&eight), Some(vec![3, 4, 5]));
        assert_eq!(lane(2, 3).cpus(&eight), Some(vec![6, 7]));
        // The appliance's own CPUs, whichever they are.
        assert_eq!(lane(1, 2).cpus(&[4, 5, 6, 7]), Some(vec![6, 7]));
        // More lanes than CPUs: they take turns.
        assert_eq!(lane(2, 3).cpus(&[0, 1]), Some(vec![0]));
    }

    #[test]
    fn a_run_without_a_result_names_its_end_and_keeps_the_log_tail() {
        let mut record = Record::new(1, RecordKind::Experiment, commit(0), String::new());
        let lines: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let crashed = run::Outcome::Crashed {
            exit: "exit code 101".into(),
        };
        let curve = vec![[0.5, 6.0], [1.0, 5.0]];
        let failed = record_run(
            &mut record,
            report(crashed, &refs),
            curve.clone(),
            None,
            Duration::from_secs(9),
        );
        assert_eq!(failed, Some(Outcome::Crash));
        assert_eq!(record.runs[0].outcome, RunEnd::Crashed);
        assert_eq!(record.runs[0].curve, curve);
        let error = record.error.unwrap();
        assert!(error.starts_with("the training program crashed (exit code 101)"));
        // The last twelve lines only.
        assert!(
            error.contains("line 8\n") && !error.contains("line 7\n"),
            "{error}"
        );
        assert_eq!(record.log_tail.len(), 20);
        assert_eq!(record.timing.training_seconds, 7.5);
        assert_eq!(record.trainer_peak, None);

        let mut record = Record::new(2, RecordKind::Experiment, commit(0), String::new());
        let timed_out = record_run(
            &mut record,
            report(run::Outcome::TimedOut, &[]),
            vec![],
            None,
            Duration::from_secs(9),
        );
        assert_eq!(timed_out, Some(Outcome::Timeout));
        assert!(record.error.unwrap().contains("within 9s"));
    }
}
