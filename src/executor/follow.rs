//! Following a run that another machine executes, through its run folder: the log's new lines go
//! to the loop as they are written (the live view and early stopping see them as for a local
//! run), a cancel file asks the run to end, and the report written last says how it ended. Where
//! the job itself is (queued, running, gone) is the `Placement`'s to say.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use super::task::{self, Cancel, Report, Task, REPORT_FILE};
use crate::trainer::run::{Outcome, RunReport};
use crate::trainer::TrainerError;

/// Where a handed-away run's job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Waiting for the cluster: the run's clock has not started.
    Queued,
    Running,
    /// The job is over or lost; SLURM's state and reason, or what was noticed.
    Gone {
        state: String,
        reason: String,
    },
}

/// The job a run was placed in.
pub trait Placement {
    fn standing(&mut self) -> Standing;
    /// Ends the job at once (the run's own cancel file was not enough, or it never started).
    fn kill(&mut self);
}

/// How often the run folder is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long a run asked to stop may take before its job is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a report may lag behind its job's end on a shared file system.
const REPORT_LAG: Duration = Duration::from_secs(10);
/// Beyond the run's own timeout (which its runner enforces), before the job is killed from here.
const TIMEOUT_SLACK: Duration = Duration::from_secs(60);

/// Follows `task`'s run in `placement` until it ends; lines go to `on_line`, which may abandon
/// it; `stop` ends it (Ctrl-C).
pub fn follow(
    task: &Task,
    placement: &mut dyn Placement,
    on_line: &mut dyn FnMut(&str) -> ControlFlow<()>,
    stop: &dyn Fn() -> bool,
) -> Result<RunReport, TrainerError> {
    let mut log = LogTail::default();
    let mut tail: Vec<String> = Vec::new();
    let (mut asked, mut started, mut gone) = (None::<(Cancel, Instant)>, None::<Instant>, None);
    let timeout = Duration::from_secs_f64(task.timeout_seconds) + TIMEOUT_SLACK;
    loop {
        for line in log.new_lines(&task.log()) {
            if asked.is_none() && on_line(&line).is_break() {
                asked = Some((Cancel::Abandon, Instant::now()));
                let _ = task::cancel(&task.run_dir, Cancel::Abandon);
            }
            push_tail(&mut tail, line);
        }
        if let Some(report) = task::read_json::<Report>(&task.run_dir.join(REPORT_FILE)) {
            for line in log.new_lines(&task.log()) {
                push_tail(&mut tail, line);
            }
            return Ok(run_report(
                task,
                report.outcome,
                report.seconds,
                report.tail,
            ));
        }
        if asked.is_none() && stop() {
            asked = Some((Cancel::Stop, Instant::now()));
            let _ = task::cancel(&task.run_dir, Cancel::Stop);
        }
        let standing = match gone.as_ref() {
            Some((standing, _)) => Standing::clone(standing),
            None => placement.standing(),
        };
        let now = Instant::now();
        match &standing {
            Standing::Queued if asked.is_some() => {
                // Never started: nothing to wait for.
                placement.kill();
                return Ok(run_report(task, Outcome::Interrupted, 0.0, tail));
            }
            Standing::Queued => {}
            Standing::Running => {
                let since = *started.get_or_insert(now);
                if now - since > timeout {
                    placement.kill();
                    return Ok(run_report(task, Outcome::TimedOut, secs(since), tail));
                }
            }
            Standing::Gone { state, reason } => {
                let at = gone.get_or_insert_with(|| (standing.clone(), now)).1;
                if now - at > REPORT_LAG {
                    let outcome = match asked {
                        Some((Cancel::Stop, _)) => Outcome::Interrupted,
                        Some((Cancel::Abandon, _)) => Outcome::Abandoned,
                        None => Outcome::Lost {
                            state: state.clone(),
                            reason: reason.clone(),
                            retry: true,
                        },
                    };
                    let seconds = started.map_or(0.0, secs);
                    return Ok(run_report(task, outcome, seconds, tail));
                }
            }
        }
        if let Some((_, at)) = asked {
            if now - at > STOP_GRACE && gone.is_none() {
                placement.kill();
            }
        }
        std::thread::sleep(POLL);
    }
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// The run's report as the loop takes it: the log in the run folder; where it ran is the
/// executor's to add.
fn run_report(task: &Task, outcome: Outcome, seconds: f64, tail: Vec<String>) -> RunReport {
    RunReport {
        outcome,
        log: task.log(),
        seconds,
        tail,
        placed: None,
    }
}

fn push_tail(tail: &mut Vec<String>, line: String) {
    tail.push(line);
    if tail.len() > crate::trainer::run::TAIL_LINES {
        tail.remove(0);
    }
}

/// The complete lines appended to a log since the last look.
#[derive(Default)]
struct LogTail {
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    fn new_lines(&mut self, path: &Path) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(path) else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut bytes).is_err()
        {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        String::from_utf8_lossy(&complete)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn only_complete_lines_are_read_and_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.log");
        let mut tail = LogTail::default();
        assert!(tail.new_lines(&path).is_empty());
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "step 1\nstep 2\nste").unwrap();
        assert_eq!(tail.new_lines(&path), ["step 1", "step 2"]);
        assert!(tail.new_lines(&path).is_empty());
        writeln!(f, "p 3").unwrap();
        assert_eq!(tail.new_lines(&path), ["step 3"]);
    }

    /// A placement that plays a scripted job: queued, running, then gone.
    struct Scripted {
        standings: Vec<Standing>,
        killed: bool,
    }

    impl Placement for Scripted {
        fn standing(&mut self) -> Standing {
            match self.standings.len() {
                1 => self.standings[0].clone(),
                _ => self.standings.remove(0),
            }
        }
        fn kill(&mut self) {
            self.killed = true;
        }
    }

    fn task(dir: &Path) -> Task {
        Task {
            binary: "/bin/true".into(),
            data_dir: dir.to_path_buf(),
            run_dir: dir.to_path_buf(),
            budget: Some(1.0),
            seed: 0,
            timeout_seconds: 100.0,
            allow_unconfined: false,
        }
    }

    #[test]
    fn a_report_ends_the_run_with_every_line_passed_on() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.log"), "a\nb\n").unwrap();
        let report = Report {
            outcome: Outcome::Diverged,
            seconds: 3.0,
            tail: vec!["FAIL".into()],
            host: "n1".into(),
        };
        task::write_json(&dir.path().join(REPORT_FILE), &report).unwrap();
        let mut seen = Vec::new();
        let mut job = Scripted {
            standings: vec![Standing::Running],
            killed: false,
        };
        let got = follow(
            &task(dir.path()),
            &mut job,
            &mut |l| {
                seen.push(l.to_string());
                ControlFlow::Continue(())
            },
            &|| false,
        )
        .unwrap();
        assert!(matches!(got.outcome, Outcome::Diverged));
        assert_eq!(seen, ["a", "b"]);
        assert!(!job.killed);
    }

    #[test]
    fn a_stop_before_the_job_starts_cancels_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = Scripted {
            standings: vec![Standing::Queued],
            killed: false,
        };
        let got = follow(
            &task(dir.path()),
            &mut job,
            &mut |_| ControlFlow::Continue(()),
            &|| true,
        )
        .unwrap();
        assert!(matches!(got.outcome, Outcome::Interrupted));
        assert!(job.killed);
    }

    #[test]
    fn an_abandoned_run_asks_its_runner_to_stop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.log"), "doomed\n").unwrap();
        let mut job = Scripted {
            standings: vec![Standing::Running],
            killed: false,
        };
        let run_dir = dir.path().to_path_buf();
        // The runner answers the cancel file with its report.
        let answer = std::thread::spawn(move || {
            while task::cancelled(&run_dir).is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let report = Report {
                outcome: Outcome::Abandoned,
                seconds: 1.0,
                tail: vec![],
                host: "n1".into(),
            };
            task::write_json(&run_dir.join(REPORT_FILE), &report).unwrap();
        });
        let got = follow(
            &task(dir.path()),
            &mut job,
            &mut |_| ControlFlow::Break(()),
            &|| false,
        )
        .unwrap();
        answer.join().unwrap();
        assert!(matches!(got.outcome, Outcome::Abandoned));
        assert_eq!(task::cancelled(dir.path()), Some(Cancel::Abandon));
    }
}
