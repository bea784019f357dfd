//! The journal of a research run: `experiments.jsonl`, append-only and fsync'd, one full record
//! per experiment, is the single source of truth; `results.tsv`, in the reference's exact format
//! (so its analysis tools read it), is rebuilt from it after every record. A crash while a line is
//! being written leaves a torn last line: opening the journal moves it aside (nothing is deleted)
//! and goes on with the complete records.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use harness::summary::Summary;
use serde::{Deserialize, Serialize};

use super::{io, ResearchError};
use crate::scheduler::owner::Schedule;

pub const JOURNAL_FILE: &str = "experiments.jsonl";
pub const RESULTS_FILE: &str = "results.tsv";
pub const RESULTS_HEADER: &str = "commit\tval_bpb\tmemory_gb\tstatus\tdescription";

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
    /// The agent's edit did not compile, even after repair rounds.
    CompileError,
    /// No proposal applied (or every one was refused by the static gate).
    Rejected,
    /// Stopped by Ctrl-C or a killed appliance before it finished.
    Interrupted,
}

impl Outcome {
    /// The reference's `status` column.
    pub fn tsv_status(self) -> &'static str {
        match self {
            Outcome::Keep => "keep",
            Outcome::Discard => "discard",
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
}

/// One run of the training program within an experiment (the baseline and confirmations run
/// the same file more than once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// finished, diverged, crashed, timed_out or interrupted.
    pub outcome: String,
    pub summary: Option<Summary>,
    /// Wall time of the training program, start-up and evaluation included.
    pub seconds: f64,
    pub log: PathBuf,
    /// The exit status, for runs without a result.
    pub exit: Option<String>,
}

/// What the keep/discard rule saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// The best val_bpb before this experiment (mean of its runs).
    pub best_before: f64,
    /// This experiment's val_bpb (mean of its runs).
    pub candidate: f64,
    /// best_before - candidate: positive is better.
    pub improvement: f64,
    /// The improvement a single run needs (shrinks by sqrt(runs) for a mean of runs).
    pub margin: f64,
    /// Run-to-run standard deviation of the baseline.
    pub noise_sigma: f64,
    pub baseline_runs: Vec<f64>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// 0 is the baseline.
    pub n: usize,
    pub outcome: Outcome,
    /// The mean val_bpb of the finished runs.
    pub val_bpb: Option<f64>,
    /// The trainer's own peak memory over its runs: its process's peak resident set on the CPU;
    /// on a GPU the device's peak use during a run less the use when the experiment's runs began
    /// (so its CUDA context and allocations, without a resident agent). Each run's own figure
    /// as the trainer reported it stays in its result.json.
    pub peak_vram_mb: Option<f64>,
    pub started: String,
    pub finished: String,
    pub description: String,
    pub idea: Option<String>,
    pub diff: Option<String>,
    /// `set` or `replace`.
    pub action: Option<String>,
    /// Proposals generated for this experiment, and repair rounds among them.
    pub proposals: usize,
    pub repairs: usize,
    /// Why each proposal before the used one was not used.
    pub rejections: Vec<String>,
    /// The candidate's commit (reachable through refs/autoresearch/<tag>/<n>), and the best
    /// commit it was made on.
    pub commit: Option<String>,
    pub parent: String,
    /// SHA-256 of the candidate training file, so no file is tried twice across resumes.
    pub file_sha256: Option<String>,
    pub runs: Vec<RunRecord>,
    pub decision: Option<Decision>,
    pub timing: Timing,
    /// The error for failed experiments (compiler errors, exit status).
    pub error: Option<String>,
    pub log_tail: Vec<String>,
    /// This experiment re-runs an interrupted one.
    pub retry_of: Option<usize>,
    /// The agent was reset to the best commit with its failures summarised before this one.
    pub agent_reset: bool,
    /// Where the agent was during the training runs, and what moving it cost.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// The proposal written ahead during the previous experiment's training, and what became
    /// of it.
    #[serde(default)]
    pub draft: Option<DraftRecord>,
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
    /// used, stale (no longer applies to the file that won), failed (applied but was refused or
    /// did not compile), or none (no reply applied).
    pub outcome: String,
}

impl DraftRecord {
    pub fn saved_seconds(&self) -> f64 {
        (self.seconds - self.waited_seconds).max(0.0)
    }
}

impl Record {
    /// One results.tsv row; experiments without a commit (no proposal applied) have none.
    pub fn tsv_row(&self) -> Option<String> {
        let commit = self.commit.as_deref()?;
        if self.outcome == Outcome::Interrupted {
            return None;
        }
        let (bpb, memory_gb) = match (self.outcome, self.val_bpb) {
            (Outcome::Keep | Outcome::Discard, Some(v)) => {
                (v, self.peak_vram_mb.unwrap_or(0.0) / 1024.0)
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
            &commit[..commit.len().min(7)],
            self.outcome.tsv_status()
        ))
    }
}

pub struct Journal {
    dir: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl Journal {
    /// Opens (or starts) the journal in `dir`. A torn last line is moved to a side file, whose
    /// path is returned.
    pub fn open(dir: &Path) -> Result<(Self, Option<PathBuf>), ResearchError> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let path = dir.join(JOURNAL_FILE);
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
        };
        let mut records = Vec::new();
        let mut good_len = 0;
        let mut torn = None;
        let mut offset = 0;
        for line in text.split_inclusive(|&b| b == b'\n') {
            let complete = line.ends_with(b"\n");
            let parsed = std::str::from_utf8(line)
                .ok()
                .and_then(|l| serde_json::from_str::<Record>(l.trim_end()).ok());
            match parsed {
                Some(record) if complete => {
                    records.push(record);
                    offset += line.len();
                    good_len = offset;
                }
                _ if offset + line.len() == text.len() => {
                    // The last line only: a write cut short by a crash.
                    torn = Some(line.to_vec());
                    break;
                }
                _ => {
                    return Err(ResearchError::CorruptJournal {
                        path,
                        line: records.len() + 1,
                    })
                }
            }
        }
        let torn_path = match torn {
            Some(bytes) => {
                let side = dir.join(format!(
                    "{JOURNAL_FILE}.torn-{}",
                    jiff::Timestamp::now().as_second()
                ));
                std::fs::write(&side, bytes).map_err(io(format!(
                    "cannot save the torn line to {}",
                    side.display()
                )))?;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(format!("cannot open {}", path.display())))?;
                f.set_len(good_len as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(io(format!("cannot repair {}", path.display())))?;
                Some(side)
            }
            None => None,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            file,
            records,
        };
        journal.write_results()?;
        Ok((journal, torn_path))
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Appends a record durably, then rebuilds results.tsv from the whole journal.
    pub fn append(&mut self, record: Record) -> Result<(), ResearchError> {
        let mut line = serde_json::to_string(&record).expect("records serialise");
        line.push('\n');
        let path = self.dir.join(JOURNAL_FILE);
        // One write call, then fsync: a crash leaves at most a torn last line, which `open` repairs.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| ResearchError::JournalWrite {
                path: path.clone(),
                source,
            })?;
        self.records.push(record);
        self.write_results()
    }

    /// results.tsv, written to a temporary file and renamed, so readers never see half of it.
    fn write_results(&self) -> Result<(), ResearchError> {
        let mut text = format!("{RESULTS_HEADER}\n");
        for row in self.records.iter().filter_map(Record::tsv_row) {
            text.push_str(&row);
            text.push('\n');
        }
        let path = self.dir.join(RESULTS_FILE);
        super::write_atomic(&path, text.as_bytes()).map_err(|source| ResearchError::JournalWrite {
            path: path.clone(),
            source,
        })
    }
}

/// Reads a journal without repairing it (for `report`, which may run beside a live loop).
pub fn read(dir: &Path) -> Result<Vec<Record>, ResearchError> {
    let path = dir.join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ResearchError::NoJournal(dir.to_path_buf())
        } else {
            io(format!("cannot read {}", path.display()))(e)
        }
    })?;
    // A torn last line (a crash, or a write in progress) is skipped here.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn record(n: usize, outcome: Outcome, val_bpb: Option<f64>) -> Record {
        Record {
            n,
            outcome,
            val_bpb,
            peak_vram_mb: val_bpb.map(|_| 2048.0),
            started: "2026-11-27T00:00:00Z".into(),
            finished: "2026-11-27T00:05:00Z".into(),
            description: if n == 0 {
                "baseline".into()
            } else {
                format!("idea {n}\twith a tab")
            },
            idea: Some(format!("idea {n}")),
            diff: None,
            action: Some("set".into()),
            proposals: 1,
            repairs: 0,
            rejections: vec![],
            commit: Some(format!("{n:07}abcdef0123")),
            parent: "p".into(),
            file_sha256: None,
            runs: vec![],
            decision: None,
            timing: Timing::default(),
            error: None,
            log_tail: vec![],
            retry_of: None,
            agent_reset: false,
            schedule: None,
            draft: None,
        }
    }

    #[test]
    fn results_tsv_follows_the_reference_format() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, torn) = Journal::open(dir.path()).unwrap();
        assert!(torn.is_none());
        journal
            .append(record(0, Outcome::Keep, Some(1.79306712)))
            .unwrap();
        journal.append(record(1, Outcome::Crash, None)).unwrap();
        journal
            .append(record(2, Outcome::Discard, Some(1.8)))
            .unwrap();
        let mut rejected = record(3, Outcome::Rejected, None);
        rejected.commit = None;
        journal.append(rejected).unwrap();
        let tsv = std::fs::read_to_string(dir.path().join(RESULTS_FILE)).unwrap();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(
            lines,
            [
                RESULTS_HEADER,
                "0000000\t1.793067\t2.0\tkeep\tbaseline",
                "0000001\t0.000000\t0.0\tcrash\tidea 1 with a tab",
                "0000002\t1.800000\t2.0\tdiscard\tidea 2 with a tab",
            ]
        );
    }

    #[test]
    fn a_torn_last_line_is_set_aside_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _) = Journal::open(dir.path()).unwrap();
            journal.append(record(0, Outcome::Keep, Some(1.9))).unwrap();
            journal
                .append(record(1, Outcome::Discard, Some(2.0)))
                .unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"n\":2,\"outcome\":\"ke").unwrap();
        drop(f);
        // The reader skips it while a loop may be writing.
        assert_eq!(read(dir.path()).unwrap().len(), 2);
        let (mut journal, torn) = Journal::open(dir.path()).unwrap();
        let torn = torn.expect("the torn line is reported");
        assert_eq!(
            std::fs::read_to_string(torn).unwrap(),
            "{\"n\":2,\"outcome\":\"ke"
        );
        assert_eq!(journal.records().len(), 2);
        journal.append(record(2, Outcome::Keep, Some(1.8))).unwrap();
        let (journal, torn) = Journal::open(dir.path()).unwrap();
        assert!(torn.is_none());
        assert_eq!(
            journal.records().iter().map(|r| r.n).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    #[test]
    fn a_bad_line_in_the_middle_is_an_error_not_a_silent_loss() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&record(0, Outcome::Keep, Some(1.9))).unwrap();
        std::fs::write(
            dir.path().join(JOURNAL_FILE),
            format!("{good}\ngarbage\n{good}\n"),
        )
        .unwrap();
        let err = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
