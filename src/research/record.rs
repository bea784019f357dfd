//! The research run's vocabulary: one record per experiment, and the enums that say what it was
//! and how it ended. Each enum has one name per variant, the same in the journal, results.tsv,
//! the live line, the prompt and the report.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use harness::summary::Summary;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::changes::Change;
use super::confirmation::Interval;
use super::controller::Choice;
use crate::agent::ledger::{Constants, Tried};
use crate::agent::prompt::Action;
use crate::scheduler::owner::Schedule;
use crate::units::Bytes;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The unchanged training file, run several times: the first value to beat, and the noise.
    Baseline,
    /// A candidate from the agent (or the re-run of an interrupted one).
    Experiment,
    /// The best file and the baseline run alternately (`autoresearch confirm`).
    Confirmation,
}

named!(RecordKind {
    Baseline => "baseline",
    Experiment => "experiment",
    Confirmation => "confirmation",
});

/// How an experiment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Beat the best by more than the noise floor: the branch advanced.
    Keep,
    /// Trained, but not better beyond the noise: the branch went back to the best commit.
    Discard,
    /// The training program exited without a result (panic, error, out of memory, NaN).
    Crash,
    /// Killed at the hard timeout.
    Timeout,
    /// The agent's edit did not compile, even after repair rounds, or the gate refused it.
    CompileError,
    /// No proposal applied.
    Rejected,
    /// Stopped by Ctrl-C or a killed appliance before it finished.
    Interrupted,
    /// Stopped during training: its loss was worse than the best file's at the same progress by
    /// more than the baseline runs' spread allows. A result, not a failure.
    StoppedEarly,
    /// With several workers: beat the best beyond the noise, but another candidate of its round
    /// beat it by more; its change was re-applied on top of that one and queued again
    /// (`requeue_of`).
    Requeued,
    /// As `Requeued`, but its change no longer applies on top of the new best.
    Superseded,
    /// A confirmation whose 95 % interval excludes zero: the improvement is real.
    Confirmed,
    /// A confirmation whose interval includes zero.
    NotConfirmed,
}

named!(Outcome {
    Keep => "keep",
    Discard => "discard",
    Crash => "crash",
    Timeout => "timeout",
    CompileError => "compile_error",
    Rejected => "rejected",
    Interrupted => "interrupted",
    StoppedEarly => "stopped_early",
    Requeued => "requeued",
    Superseded => "superseded",
    Confirmed => "confirmed",
    NotConfirmed => "not_confirmed",
});

impl Outcome {
    /// The reference's `status` column, which knows only these three.
    pub fn tsv_status(self) -> &'static str {
        match self {
            Outcome::Keep => "keep",
            Outcome::Discard | Outcome::StoppedEarly | Outcome::Requeued | Outcome::Superseded => {
                "discard"
            }
            _ => "crash",
        }
    }

    /// Counts towards the consecutive-failure reset.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Crash | Outcome::Timeout | Outcome::CompileError | Outcome::Rejected
        )
    }

    /// Trained to a result that the keep rule judged.
    pub fn is_judged(self) -> bool {
        matches!(
            self,
            Outcome::Keep | Outcome::Discard | Outcome::Requeued | Outcome::Superseded
        )
    }
}

/// How one run of the training program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    Finished,
    /// The harness's fast-fail rule fired (NaN or exploding loss).
    Diverged,
    /// Exited without a result: a panic, an error, a kill.
    Crashed,
    TimedOut,
    /// Exited after an allocation failed (host memory, or the GPU's).
    OutOfMemory,
    Interrupted,
    /// Killed because its loss curve fell behind the best file's (early stopping).
    StoppedEarly,
    /// Its job was ended by the cluster (preemption, node failure, a time limit, a cancel from
    /// outside): nothing said about the file, so the experiment is run again.
    Lost,
}

named!(RunEnd {
    Finished => "finished",
    Diverged => "diverged",
    Crashed => "crashed",
    TimedOut => "timed_out",
    OutOfMemory => "out_of_memory",
    Interrupted => "interrupted",
    StoppedEarly => "stopped_early",
    Lost => "lost",
});

impl RunEnd {
    /// The experiment's outcome when this run produced no result (a failure, or a stop).
    pub fn outcome_without_result(self) -> Option<Outcome> {
        match self {
            RunEnd::Finished => None,
            RunEnd::Diverged | RunEnd::Crashed | RunEnd::OutOfMemory => Some(Outcome::Crash),
            RunEnd::TimedOut => Some(Outcome::Timeout),
            RunEnd::Interrupted | RunEnd::Lost => Some(Outcome::Interrupted),
            RunEnd::StoppedEarly => Some(Outcome::StoppedEarly),
        }
    }
}

/// What became of a proposal written ahead during the previous experiment's training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftOutcome {
    /// It still applied to the file that won, was new and compiled: the experiment's candidate.
    Used,
    /// It no longer applied to the file that won, or that file was already tried.
    Stale,
    /// It applied but the gate refused it or it did not compile.
    Failed,
    /// No reply the draft wrote applied, so there was nothing to use.
    #[serde(rename = "none")]
    NothingApplied,
}

named!(DraftOutcome {
    Used => "used",
    Stale => "stale",
    Failed => "failed",
    NothingApplied => "none",
});

/// A commit of the run's repository. A hex string only in files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitId(pub git2::Oid);

impl CommitId {
    /// The first seven hex digits, as results.tsv and the report show it.
    pub fn short(&self) -> String {
        self.0.to_string()[..7].to_string()
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CommitId {
    type Err = git2::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        git2::Oid::from_str(text).map(CommitId)
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CommitId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a commit id")))
    }
}

/// One run of the training program within an experiment (the baseline and confirmations run
/// the same file more than once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub outcome: RunEnd,
    pub summary: Option<Summary>,
    /// Wall time of the training program, start-up and evaluation included.
    pub seconds: f64,
    pub log: PathBuf,
    /// The exit status, for runs without a result.
    pub exit: Option<String>,
    /// The smoothed training loss at each step's progress (`[progress, loss]`), which early
    /// stopping compares with the best file's.
    #[serde(default)]
    pub curve: Vec<[f32; 2]>,
    /// The file that ran, where a record runs more than one (a confirmation).
    #[serde(default)]
    pub commit: Option<CommitId>,
    /// Where it ran, when not as the appliance's only child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<Placed>,
}

/// Where a run ran, when an executor other than the appliance's own process tree ran it, or
/// one of several workers did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub executor: crate::executor::ExecutorKind,
    /// The worker's number, where several run at once.
    pub worker: Option<usize>,
    /// The SLURM job that ran it.
    pub job: Option<String>,
    /// The machine it ran on.
    pub host: Option<String>,
}

/// What the keep/discard rule saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// The best's val_bpb it was judged against: its recorded value (the mean of its runs),
    /// or with paired judging the mean of its latest runs (`reference_runs`).
    pub best_before: f64,
    /// This experiment's val_bpb (mean of its runs).
    pub candidate: f64,
    /// best_before - candidate: positive is better.
    pub improvement: f64,
    /// The improvement a single run needs (shrinks by sqrt(runs) for a mean of runs).
    pub margin: f64,
    /// Run-to-run standard deviation of the baseline.
    pub noise_sigma: f64,
    /// The profile's known spread pooled into `noise_sigma` with the baseline's runs, where one
    /// was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_prior: Option<f64>,
    pub baseline_runs: Vec<f64>,
    /// The best file's latest runs it was judged against, its reference runs beside it among
    /// them (empty: judged against the best's recorded value).
    #[serde(default)]
    pub reference_runs: Vec<f64>,
    pub rule: String,
}

/// Seconds spent on each part of an experiment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timing {
    /// Prompt reading and generation, repairs included.
    pub agent_seconds: f64,
    pub build_seconds: f64,
    /// The training program's wall time, all runs, evaluation included.
    pub training_seconds: f64,
    pub eval_seconds: f64,
    pub total_seconds: f64,
}

/// A draft written while a training run had the machine (think while training).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DraftRecord {
    /// The experiment whose training it was written beside.
    pub during: usize,
    /// Writing it, and the part of that the loop waited for after the run had ended: the rest
    /// ran beside training and is what thinking ahead saved.
    pub seconds: f64,
    pub waited_seconds: f64,
    /// Replies written until one applied.
    pub replies: usize,
    pub outcome: DraftOutcome,
}

impl DraftRecord {
    pub fn saved_seconds(&self) -> f64 {
        (self.seconds - self.waited_seconds).max(0.0)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub n: usize,
    pub kind: RecordKind,
    pub outcome: Outcome,
    /// The mean val_bpb of the finished runs.
    pub val_bpb: Option<f64>,
    /// The trainer's own peak memory over its runs: its process's peak resident set on the CPU;
    /// on a GPU the device's peak use during a run less the use when the experiment's runs began
    /// (so its CUDA context and allocations, without a resident agent). Each run's own figure
    /// as the harness reported it (the device's) stays in its summary.
    #[serde(rename = "trainer_peak_bytes")]
    pub trainer_peak: Option<Bytes>,
    pub started: String,
    pub finished: String,
    pub description: String,
    pub idea: Option<String>,
    pub diff: Option<String>,
    /// One line per edit, against the parent.
    #[serde(default)]
    pub changes: Vec<Change>,
    pub action: Option<Action>,
    /// The search controller's move for this experiment and why.
    #[serde(default)]
    pub choice: Option<Choice>,
    /// Proposals generated for this experiment, and repair rounds among them.
    pub proposals: usize,
    pub repairs: usize,
    /// Why each proposal before the used one was not used.
    pub rejections: Vec<String>,
    /// Training seconds per run (the budget the record's runs had).
    #[serde(default)]
    pub budget_seconds: Option<f64>,
    /// The candidate's commit (reachable through refs/autoresearch/<tag>/<n>), and the best
    /// commit it was made on.
    pub commit: Option<CommitId>,
    pub parent: CommitId,
    /// SHA-256 of the candidate training file, so no file is tried twice across resumes.
    pub file_sha256: Option<String>,
    /// The candidate's constants and its skeleton's hash (the file with every value blanked),
    /// which the sampler learns from and near-duplicates are found by.
    #[serde(default)]
    pub constants: Option<Constants>,
    #[serde(default)]
    pub skeleton_sha256: Option<String>,
    pub runs: Vec<RunRecord>,
    pub decision: Option<Decision>,
    pub timing: Timing,
    /// The error for failed experiments (compiler errors, exit status).
    pub error: Option<String>,
    pub log_tail: Vec<String>,
    /// This experiment re-runs an interrupted one.
    pub retry_of: Option<usize>,
    /// Where its run in flight was placed (its SLURM job, its worker): in pending.json while the
    /// run goes on, gone once the run is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<Placed>,
    /// This experiment is a requeued one's change on top of the best that beat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_of: Option<usize>,
    /// The agent was reset to the best commit with its failures summarised before this one.
    pub agent_reset: bool,
    /// Where the agent was during the training runs, and what moving it cost.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// The proposal written ahead during the previous experiment's training, and what became
    /// of it.
    #[serde(default)]
    pub draft: Option<DraftRecord>,
    /// A confirmation's improvement of the best over the baseline, with its 95 % interval.
    #[serde(default)]
    pub interval: Option<Interval>,
}

impl Record {
    /// A record in flight: interrupted until it ends otherwise.
    pub fn new(n: usize, kind: RecordKind, parent: CommitId, started: String) -> Self {
        Record {
            n,
            kind,
            outcome: Outcome::Interrupted,
            val_bpb: None,
            trainer_peak: None,
            started,
            finished: String::new(),
            description: String::new(),
            idea: None,
            diff: None,
            changes: Vec::new(),
            action: None,
            choice: None,
            proposals: 0,
            repairs: 0,
            rejections: Vec::new(),
            budget_seconds: None,
            commit: None,
            parent,
            file_sha256: None,
            constants: None,
            skeleton_sha256: None,
            runs: Vec::new(),
            decision: None,
            timing: Timing::default(),
            error: None,
            log_tail: Vec::new(),
            retry_of: None,
            requeue_of: None,
            in_flight: None,
            agent_reset: false,
            schedule: None,
            draft: None,
            interval: None,
        }
    }

    pub fn is_baseline(&self) -> bool {
        self.kind == RecordKind::Baseline
    }

    /// How the agent is told of this record: `the baseline` or `e0012`.
    pub fn label(&self) -> String {
        match self.kind {
            RecordKind::Baseline => "the baseline".into(),
            RecordKind::Experiment | RecordKind::Confirmation => format!("e{:04}", self.n),
        }
    }

    /// Notes the candidate `text`, committed as `commit` on `parent` (its parent's file): what it
    /// changed, its constants and hashes. Returns it as the ledger takes it.
    pub fn note_candidate(&mut self, commit: CommitId, parent: &str, text: &str) -> Tried {
        let tried = Tried::of(&self.label(), text);
        self.changes = super::changes::changes(parent, text);
        self.commit = Some(commit);
        self.file_sha256 = Some(tried.sha256.clone());
        self.skeleton_sha256 = tried.skeleton.clone();
        self.constants = Some(tried.constants.clone());
        tried
    }

    /// Its training file, as the ledger takes it; None when it had none.
    pub fn tried(&self) -> Option<Tried> {
        Some(Tried {
            label: self.label(),
            sha256: self.file_sha256.clone()?,
            skeleton: self.skeleton_sha256.clone(),
            constants: self.constants.clone().unwrap_or_default(),
        })
    }

    /// val_bpb of each run of its own file that finished (not the best file's reference runs).
    pub fn finished_values(&self) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.commit.is_none() || r.commit == self.commit)
            .filter_map(|r| r.summary.as_ref().map(|s| s.val_bpb))
            .collect()
    }

    /// val_bpb of each finished run of `commit`'s file in this record, in order: its own runs
    /// when it is that commit's record, the reference runs when it ran that file beside another.
    pub fn values_of(&self, commit: CommitId) -> impl Iterator<Item = f64> + '_ {
        self.runs
            .iter()
            .filter(move |r| r.commit.or(self.commit) == Some(commit))
            .filter_map(|r| r.summary.as_ref().map(|s| s.val_bpb))
    }

    /// One results.tsv row, in the reference's format; experiments without a commit (no
    /// proposal applied) and interrupted ones have none.
    pub fn tsv_row(&self) -> Option<String> {
        let commit = self.commit.as_ref()?;
        if self.outcome == Outcome::Interrupted || self.kind == RecordKind::Confirmation {
            return None;
        }
        let (bpb, memory_gb) = match self.val_bpb {
            Some(v) if self.outcome.is_judged() => {
                (v, self.trainer_peak.unwrap_or_default().as_gib())
            }
            _ => (0.0, 0.0),
        };
        // Tabs and newlines would break the reference's parser.
        let description: String = self
            .description
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Some(format!(
            "{}\t{bpb:.6}\t{memory_gb:.1}\t{}\t{description}",
            commit.short(),
            self.outcome.tsv_status()
        ))
    }

    /// Parses a journal line, in today's format or an older one (see `upgrade`).
    pub fn from_line(line: &str) -> serde_json::Result<Record> {
        let mut value: serde_json::Value = serde_json::from_str(line)?;
        upgrade(&mut value);
        serde_json::from_value(value)
    }
}

/// Journals written before records had a kind and a memory unit: the baseline is the record
/// the loop described as "baseline" without an agent's idea (an agent's idea is always
/// recorded), and the trainer's peak was a float of MiB named `peak_vram_mb`.
fn upgrade(value: &mut serde_json::Value) {
    let Some(fields) = value.as_object_mut() else {
        return;
    };
    if !fields.contains_key("kind") {
        let baseline = fields.get("description").and_then(|d| d.as_str()) == Some("baseline")
            && fields.get("idea").is_none_or(|i| i.is_null());
        let kind = if baseline {
            RecordKind::Baseline
        } else {
            RecordKind::Experiment
        };
        fields.insert("kind".into(), kind.name().into());
    }
    if let Some(mib) = fields.remove("peak_vram_mb") {
        let bytes = mib.as_f64().map(|m| Bytes::from_mib_f64(m).0);
        fields
            .entry("trainer_peak_bytes")
            .or_insert_with(|| bytes.into());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A commit id made from a small number, for records in tests.
    pub fn commit(n: usize) -> CommitId {
        format!("{n:07}{}", "abcdef0123456789abcdef0123456789a")
            .parse()
            .unwrap()
    }

    pub fn record(n: usize, outcome: Outcome, val_bpb: Option<f64>) -> Record {
        let kind = if n == 0 {
            RecordKind::Baseline
        } else {
            RecordKind::Experiment
        };
        let mut r = Record::new(n, kind, commit(0), "2026-11-27T00:00:00Z".into());
        r.outcome = outcome;
        r.val_bpb = val_bpb;
        r.trainer_peak = val_bpb.map(|_| Bytes::mib(2048));
        r.finished = "2026-11-27T00:05:00Z".into();
        r.description = if n == 0 {
            "baseline".into()
        } else {
            format!("idea {n}\twith a tab")
        };
        if n > 0 {
            r.idea = Some(format!("idea {n}"));
            r.action = Some(Action::Set);
        }
        r.proposals = 1;
        r.commit = Some(commit(n));
        r
    }

    fn serde_name<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_variant_has_one_name_everywhere() {
        for o in Outcome::ALL {
            assert_eq!(serde_name(o), o.name());
            assert_eq!(o.to_string(), o.name());
        }
        for k in RecordKind::ALL {
            assert_eq!(serde_name(k), k.name());
        }
        for e in RunEnd::ALL {
            assert_eq!(serde_name(e), e.name());
        }
        for d in DraftOutcome::ALL {
            assert_eq!(serde_name(d), d.name());
        }
        for a in Action::ALL {
            assert_eq!(serde_name(a), a.name());
        }
        assert_eq!(Outcome::CompileError.to_string(), "compile_error");
    }

    #[test]
    fn records_round_trip_with_typed_fields() {
        let r = record(3, Outcome::Discard, Some(1.8));
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains("\"kind\":\"experiment\""), "{line}");
        assert!(line.contains("\"trainer_peak_bytes\":2147483648"), "{line}");
        assert!(
            line.contains(&format!("\"commit\":\"{}\"", commit(3))),
            "{line}"
        );
        let back = Record::from_line(&line).unwrap();
        assert_eq!(back.commit, Some(commit(3)));
        assert_eq!(back.action, Some(Action::Set));
        assert_eq!(back.trainer_peak, Some(Bytes::mib(2048)));
    }

    /// Lines written by the loop before records were typed (a real journal of that version):
    /// they read with the same meaning, and an agent's idea called "baseline" is not taken for
    /// the baseline.
    #[test]
    fn journals_of_the_untyped_format_still_read() {
        let text = include_str!("../../tests/fixtures/journal-untyped.jsonl");
        let records: Vec<Record> = text
            .lines()
            .map(|l| Record::from_line(l).unwrap())
            .collect();
        let kinds: Vec<RecordKind> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds[0], RecordKind::Baseline);
        assert!(kinds[1..].iter().all(|k| *k == RecordKind::Experiment));
        let base = &records[0];
        assert_eq!(base.outcome, Outcome::Keep);
        assert!(base.trainer_peak.unwrap() > Bytes::mib(10));
        assert_eq!(base.runs[0].outcome, RunEnd::Finished);
        // The fixture's last line is an agent idea named "baseline" (the old grammar allowed it).
        let idea = records.last().unwrap();
        assert_eq!(idea.description, "baseline");
        assert_eq!(idea.kind, RecordKind::Experiment);
    }

    #[test]
    fn results_rows_follow_the_reference_format() {
        assert_eq!(
            record(0, Outcome::Keep, Some(1.79306712))
                .tsv_row()
                .unwrap(),
            "0000000\t1.793067\t2.0\tkeep\tbaseline"
        );
        assert_eq!(
            record(1, Outcome::Crash, None).tsv_row().unwrap(),
            "0000001\t0.000000\t0.0\tcrash\tidea 1 with a tab"
        );
        assert_eq!(record(2, Outcome::Interrupted, Some(1.8)).tsv_row(), None);
        let mut rejected = record(3, Outcome::Rejected, None);
        rejected.commit = None;
        assert_eq!(rejected.tsv_row(), None);
    }
}
