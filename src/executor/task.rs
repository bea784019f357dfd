//! A training run handed to another process through a folder both can reach: the task (what to
//! run), the report (how it ended) and a cancel file. SLURM jobs and worker jobs read tasks and
//! write reports with these; the appliance follows them (`follow`). The run itself is the same
//! confined `trainer::run` as on this machine, so a node runs agent-written code exactly as
//! confined as the appliance does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::confine::Confinement;
use crate::trainer::run::{self, Outcome, RunSpec, LOG_FILE};

/// In the run folder: what to run, written by the appliance.
pub const TASK_FILE: &str = "task.json";
/// In the run folder: how the run ended, written by whoever ran it (atomically, last).
pub const REPORT_FILE: &str = "report.json";
/// In the run folder: the appliance asks the run to end (`Cancel`).
pub const CANCEL_FILE: &str = "cancel";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    /// Receives the log, `result.json` and the report.
    pub run_dir: PathBuf,
    pub budget: Option<f64>,
    pub seed: u64,
    pub timeout_seconds: f64,
    pub allow_unconfined: bool,
}

impl Task {
    pub fn confinement(&self) -> Confinement {
        match self.allow_unconfined {
            true => Confinement::BestEffort,
            false => Confinement::Required,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.run_dir.join(LOG_FILE)
    }

    /// The task's identity: the same program, data, budget and seed. A restarted appliance
    /// that asks for a run with the same identity as one still going adopts it.
    pub fn same_run(&self, other: &Task) -> bool {
        (&self.binary, &self.data_dir, self.budget, self.seed)
            == (&other.binary, &other.data_dir, other.budget, other.seed)
    }
}

/// Why the appliance ends a run early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cancel {
    /// Its loss fell behind (early stopping).
    Abandon,
    /// The loop is stopping (Ctrl-C).
    Stop,
}

/// How a run handed away ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub outcome: Outcome,
    pub seconds: f64,
    pub tail: Vec<String>,
    /// The machine that ran it.
    pub host: String,
}

/// `task`'s run folder, made ready for a fresh try: no report or cancel of an earlier one, which
/// the appliance would otherwise take for this one's.
pub fn fresh_run_dir(task: &Task) -> std::io::Result<()> {
    std::fs::create_dir_all(&task.run_dir)?;
    for stale in [REPORT_FILE, CANCEL_FILE] {
        match std::fs::remove_file(task.run_dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

pub fn write_json(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(value).expect("tasks and reports serialise");
    crate::research::write_atomic(path, &json)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn cancel(run_dir: &Path, why: Cancel) -> std::io::Result<()> {
    write_json(&run_dir.join(CANCEL_FILE), &why)
}

pub fn cancelled(run_dir: &Path) -> Option<Cancel> {
    read_json(&run_dir.join(CANCEL_FILE))
}

/// Runs `task` here (on a node, inside its job) and writes its report; the cancel file ends it.
pub fn execute(task: &Task) -> anyhow::Result<Report> {
    let _ = std::fs::remove_file(task.run_dir.join(REPORT_FILE));
    let stop = || cancelled(&task.run_dir).is_some();
    let spec = RunSpec {
        binary: &task.binary,
        data_dir: &task.data_dir,
        run_dir: &task.run_dir,
        budget: task.budget,
        seed: task.seed,
        timeout: Duration::from_secs_f64(task.timeout_seconds),
        confinement: task.confinement(),
        // A node's CPUs are SLURM's to bind (its task/affinity plugin), not the task's.
        cpus: None,
        gpu: None,
        stop: &stop,
        describe: false,
    };
    let report = run::run(&spec, |_| std::ops::ControlFlow::Continue(()))?;
    // A stop the appliance asked for because the run fell behind is early stopping, not Ctrl-C.
    let outcome = match (report.outcome, cancelled(&task.run_dir)) {
        (Outcome::Interrupted, Some(Cancel::Abandon)) => Outcome::Abandoned,
        (outcome, _) => outcome,
    };
    let report = Report {
        outcome,
        seconds: report.seconds,
        tail: report.tail,
        host: hostname(),
    };
    write_json(&task.run_dir.join(REPORT_FILE), &report)?;
    Ok(report)
}

/// Runs `task` and writes its report; where the node itself could not run it (the program or
/// the data unreadable there, a full disk), the report says the run was lost, with why: the
/// appliance then runs it elsewhere, and nothing is held against the training file.
pub fn execute_and_report(task: &Task) -> Report {
    match execute(task) {
        Ok(report) => report,
        Err(e) => {
            let report = Report {
                outcome: Outcome::Lost {
                    state: "NODE_ERROR".into(),
                    reason: format!("{e:#}"),
                    retry: true,
                },
                seconds: 0.0,
                tail: Vec::new(),
                host: hostname(),
            };
            if let Err(e) = write_json(&task.run_dir.join(REPORT_FILE), &report) {
                eprintln!("cannot write the report in {}: {e}", task.run_dir.display());
            }
            report
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(seed: u64) -> Task {
        Task {
            binary: "/shared/programs/abc".into(),
            data_dir: "/shared/data".into(),
            run_dir: format!("/shared/runs/t/e0001/run{seed}").into(),
            budget: Some(60.0),
            seed,
            timeout_seconds: 240.0,
            allow_unconfined: false,
        }
    }

    #[test]
    fn a_run_is_the_same_whatever_folder_it_writes_to() {
        let (a, mut b) = (task(0), task(0));
        b.run_dir = "/shared/runs/t/e0002/run1".into();
        assert!(a.same_run(&b));
        assert!(!a.same_run(&task(1)));
    }

    #[test]
    fn tasks_reports_and_cancels_go_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TASK_FILE);
        write_json(&path, &task(3)).unwrap();
        assert_eq!(read_json::<Task>(&path), Some(task(3)));
        assert_eq!(cancelled(dir.path()), None);
        cancel(dir.path(), Cancel::Abandon).unwrap();
        assert_eq!(cancelled(dir.path()), Some(Cancel::Abandon));
        let report = Report {
            outcome: Outcome::Crashed {
                exit: "exit code 101".into(),
            },
            seconds: 2.5,
            tail: vec!["thread 'main' panicked".into()],
            host: "node1".into(),
        };
        write_json(&dir.path().join(REPORT_FILE), &report).unwrap();
        let back: Report = read_json(&dir.path().join(REPORT_FILE)).unwrap();
        assert!(matches!(back.outcome, Outcome::Crashed { exit } if exit == "exit code 101"));
        assert_eq!((back.seconds, back.host.as_str()), (2.5, "node1"));
    }
}
