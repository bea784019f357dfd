//! Runs a built training program as a child process in its own process group, with its output
//! copied to a log file and to the caller line by line, a hard timeout that kills the whole group,
//! and the result read only from the harness's `result.json`: nothing the training code prints
//! can stand in for it.

use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harness::summary::{Summary, RESULT_FILE};
use harness::{ENV_BUDGET, ENV_DATA_DIR, ENV_DESCRIBE, ENV_RUN_DIR, ENV_SEED};

use super::{io, TrainerError};
use crate::confine::Confinement;
use crate::research::record::RunEnd;
use crate::units::Seconds;

pub struct RunSpec<'a> {
    pub binary: &'a Path,
    pub data_dir: &'a Path,
    /// Receives `train.log`, the weights and `result.json`.
    pub run_dir: &'a Path,
    pub budget: Option<f64>,
    /// The run's seed (`Harness::seed`): 0 for a file's first run.
    pub seed: u64,
    pub timeout: Duration,
    pub confinement: Confinement,
    /// The CPUs the program may use, where runs share a machine (None: all).
    pub cpus: Option<&'a [usize]>,
    /// The one GPU the program sees (`CUDA_VISIBLE_DEVICES`), where runs share a machine with
    /// several (None: as the appliance sees them).
    pub gpu: Option<usize>,
    /// Polled while the program runs: true kills it (Ctrl-C).
    pub stop: &'a dyn Fn() -> bool,
    /// Only build the model and say what it is, stopping at the first batch (`describe`).
    pub describe: bool,
}

/// How a training run ended.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Finished(Box<Summary>),
    /// The harness's fast-fail rule fired (NaN or exploding loss).
    Diverged,
    /// Exited without a result: a panic, an error, a kill, out of memory.
    Crashed {
        exit: String,
    },
    TimedOut,
    /// Exited after an allocation failed (host memory, or the GPU's).
    OutOfMemory {
        exit: String,
    },
    /// Killed because `stop` asked for it.
    Interrupted,
    /// Killed because the caller judged its progress doomed (early stopping).
    Abandoned,
    /// Its job ended without a result for the cluster's reasons (preempted, node failure, its
    /// time limit, cancelled from outside): SLURM's state and reason. Not the file's doing.
    /// `retry`: whether running it again can help (not when the job's own time limit is
    /// shorter than a run).
    Lost {
        state: String,
        reason: String,
        retry: bool,
    },
}

impl Outcome {
    /// How the run ended, as the journal says it.
    pub fn end(&self) -> RunEnd {
        match self {
            Outcome::Finished(_) => RunEnd::Finished,
            Outcome::Diverged => RunEnd::Diverged,
            Outcome::Crashed { .. } => RunEnd::Crashed,
            Outcome::TimedOut => RunEnd::TimedOut,
            Outcome::OutOfMemory { .. } => RunEnd::OutOfMemory,
            Outcome::Interrupted => RunEnd::Interrupted,
            Outcome::Abandoned => RunEnd::StoppedEarly,
            Outcome::Lost { .. } => RunEnd::Lost,
        }
    }

    /// What went wrong, for a run without a result (`timeout` is the limit it ran under).
    pub fn problem(&self, timeout: Duration) -> Option<String> {
        Some(match self {
            Outcome::Finished(_) => return None,
            Outcome::Diverged => "FAIL: the loss became NaN or exploded; see its log".into(),
            Outcome::Crashed { exit } => {
                format!("the training program crashed ({exit}) without a result")
            }
            Outcome::OutOfMemory { exit } => format!(
                "the training program ran out of memory ({exit}): make the model or batch smaller"
            ),
            Outcome::TimedOut => format!(
                "the training program did not finish within {:.0}s and was killed",
                timeout.as_secs_f64()
            ),
            Outcome::Interrupted => "the training program was stopped".into(),
            Outcome::Abandoned => {
                "stopped early: its loss fell behind the best file's by more than the noise".into()
            }
            Outcome::Lost {
                state,
                reason,
                retry: true,
            } => format!(
                "the cluster ended the run's job without a result: SLURM state {state}, reason {reason} (not the training file's doing; the run goes to a new job)"
            ),
            Outcome::Lost {
                state,
                reason,
                retry: false,
            } => format!(
                "the cluster ended the run's job without a result: SLURM state {state}, reason {reason}: the job's time limit is shorter than a run; give a --slurm-time longer than the run's --timeout ({:.0} s)",
                timeout.as_secs_f64()
            ),
        })
    }
}

pub struct RunReport {
    pub outcome: Outcome,
    pub log: PathBuf,
    pub seconds: f64,
    /// The last lines the program printed.
    pub tail: Vec<String>,
    /// Where it ran, when an executor placed it (a cluster job, one of several workers).
    pub placed: Option<crate::research::record::Placed>,
}

pub const LOG_FILE: &str = "train.log";
/// What Rust's allocator and CUDA print when memory runs out.
const OOM_MESSAGES: [&str; 3] = [
    "memory allocation of",
    "CUDA_ERROR_OUT_OF_MEMORY",
    "out of memory",
];

/// The hard limit on one run by default: twice the budget plus start-up and evaluation.
pub fn default_timeout(budget: Seconds) -> Duration {
    Duration::from_secs_f64(2.0 * budget.get() + 120.0)
}
pub const TAIL_LINES: usize = 40;

/// Runs the program; each line it prints goes to `on_line`, which may abandon the run.
pub fn run(
    spec: &RunSpec,
    mut on_line: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<RunReport, TrainerError> {
    std::fs::create_dir_all(spec.run_dir)
        .map_err(io(format!("cannot create {}", spec.run_dir.display())))?;
    let result_path = spec.run_dir.join(RESULT_FILE);
    let _ = std::fs::remove_file(&result_path);
    let log_path = spec.run_dir.join(LOG_FILE);
    let mut log = std::fs::File::create(&log_path)
        .map_err(io(format!("cannot create {}", log_path.display())))?;

    // The program runs confined: it reads the data and writes only its run folder.
    let access = crate::confine::Allowed {
        read: &[spec.data_dir],
        write: &[spec.run_dir],
        keep_env: &[],
        cpus: spec.cpus.unwrap_or_default(),
    };
    let mut cmd = crate::confine::wrap(spec.binary, &access, spec.confinement).map_err(io(
        "cannot find the autoresearch binary to confine the training program",
    ))?;
    cmd.env(ENV_DATA_DIR, spec.data_dir)
        .env(ENV_RUN_DIR, spec.run_dir)
        .current_dir(spec.run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(budget) = spec.budget {
        cmd.env(ENV_BUDGET, budget.to_string());
    }
    cmd.env(ENV_SEED, spec.seed.to_string());
    // Set or removed: one left in the appliance's own environment must not cut real runs short.
    match spec.describe {
        true => cmd.env(ENV_DESCRIBE, "1"),
        false => cmd.env_remove(ENV_DESCRIBE),
    };
    if let Some(gpu) = spec.gpu {
        cmd.env("CUDA_VISIBLE_DEVICES", gpu.to_string());
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(io(format!("cannot start {}", spec.binary.display())))?;
    let pgid = child.id() as i32;

    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);

    let mut tail: Vec<String> = Vec::new();
    let (mut timed_out, mut interrupted, mut abandoned) = (false, false, false);
    let deadline = start + spec.timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                abandoned = on_line(&line).is_break();
                tail.push(line);
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            timed_out = true;
        } else if (spec.stop)() {
            interrupted = true;
        }
        if timed_out || interrupted || abandoned {
            kill_group(pgid);
            break;
        }
    }
    let status = child
        .wait()
        .map_err(io("cannot wait for the training program"))?;
    // The group may have children that outlive the leader; none may survive the run.
    kill_group(pgid);
    if !(timed_out || interrupted || abandoned) {
        for reader in readers {
            let _ = reader.join();
        }
    }
    let _ = log.flush();
    let seconds = start.elapsed().as_secs_f64();

    let outcome = if timed_out {
        Outcome::TimedOut
    } else if interrupted {
        Outcome::Interrupted
    } else if abandoned {
        Outcome::Abandoned
    } else if status.success() {
        match read_result(&result_path) {
            Some(summary) => Outcome::Finished(Box::new(summary)),
            None => Outcome::Crashed {
                exit: "exited 0 without writing result.json".into(),
            },
        }
    } else if tail.iter().any(|l| l == "FAIL") {
        Outcome::Diverged
    } else if tail
        .iter()
        .any(|l| OOM_MESSAGES.iter().any(|m| l.contains(m)))
    {
        Outcome::OutOfMemory {
            exit: describe_exit(&status),
        }
    } else {
        Outcome::Crashed {
            exit: describe_exit(&status),
        }
    };
    Ok(RunReport {
        outcome,
        log: log_path,
        seconds,
        tail,
        placed: None,
    })
}

fn read_result(path: &Path) -> Option<Summary> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn kill_group(pgid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created; it touches no
    // memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(libc::SIGKILL)) => "killed by SIGKILL (out of memory?)".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown exit".into(),
    }
}
