//! Long-lived worker jobs (`--slurm-mode worker`, the default): one allocation per worker runs
//! experiment after experiment, so a busy cluster's queue is waited once, not once per run. A
//! worker is a folder in the shared path and a job running the appliance's hidden `node-worker`
//! command there: the appliance writes `task.json`, the worker renames it `running.json`, runs it
//! confined, writes the run's report into the run folder, and beats `heartbeat` every
//! `HEARTBEAT` meanwhile. A worker whose heartbeat stops is gone (killed, preempted, its node
//! down): its run is recorded as lost, and the next run gets a new worker job.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::follow::{Placement, Standing};
use super::slurm::{self, JobId, SlurmError, SlurmOptions};
use super::task::{self, Task};

/// The workers' jobs, kept in the shared folder so that a restarted appliance finds them.
pub const WORKERS_FILE: &str = "workers.json";
const TASK: &str = "task.json";
const RUNNING: &str = "running.json";
/// The last task the worker finished: a restarted appliance may ask for it once more.
const DONE: &str = "done.json";
const BEAT: &str = "heartbeat";
const QUIT: &str = "quit";

/// How often a worker beats.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Silence after which a running worker is taken for gone.
pub const HEARTBEAT_LOST: Duration = Duration::from_secs(20);
/// A worker with no task for this long ends its job: its appliance is gone or done.
const IDLE_EXIT: Duration = Duration::from_secs(15 * 60);
/// How often a worker job not yet beating is asked about (it may still be queued).
const ASK_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerJob {
    pub index: usize,
    pub job: JobId,
    pub dir: PathBuf,
}

// ----------------------------------------------------------------------------------------------
// The node's side: the hidden `node-worker` command

/// Runs tasks from `dir` until told to quit or idle for `IDLE_EXIT`.
pub fn serve(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let beat_path = dir.join(BEAT);
    std::thread::spawn(move || {
        // A counter, not a time: the nodes' clocks need not agree with the appliance's.
        for beat in 0u64.. {
            let _ = task::write_json(&beat_path, &beat);
            std::thread::sleep(HEARTBEAT);
        }
    });
    let mut idle_since = Instant::now();
    loop {
        if dir.join(QUIT).exists() || idle_since.elapsed() > IDLE_EXIT {
            return Ok(());
        }
        if let Some(task) = task::read_json::<Task>(&dir.join(TASK)) {
            std::fs::rename(dir.join(TASK), dir.join(RUNNING)).context("cannot take the task")?;
            task::execute_and_report(&task);
            let _ = std::fs::rename(dir.join(RUNNING), dir.join(DONE));
            idle_since = Instant::now();
            continue;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ----------------------------------------------------------------------------------------------
// The appliance's side

/// The worker jobs of one run folder.
pub struct Pool {
    /// Names the worker jobs in `squeue`: autoresearch-NAME-wK.
    name: String,
    shared: PathBuf,
    options: SlurmOptions,
    appliance: PathBuf,
    workers: Vec<WorkerJob>,
}

impl Pool {
    /// The pool, with the workers a previous appliance left still alive.
    pub fn open(name: &str, shared: &Path, options: SlurmOptions, appliance: PathBuf) -> Pool {
        let workers: Vec<WorkerJob> =
            task::read_json(&shared.join(WORKERS_FILE)).unwrap_or_default();
        let workers = workers
            .into_iter()
            .filter(|w| matches!(slurm::state(&w.job), Ok(Some(s)) if !s.ended()))
            .collect();
        Pool {
            name: name.to_string(),
            shared: shared.to_path_buf(),
            options,
            appliance,
            workers,
        }
    }

    pub fn workers(&self) -> &[WorkerJob] {
        &self.workers
    }

    /// Hands `task` to worker `index` (starting its job when it has none alive); returns the
    /// placement to follow and the task that will really run: a restarted appliance's task that
    /// the worker already runs is followed where it runs, not started again.
    pub fn place(&mut self, index: usize, task: &Task) -> Result<(WorkerRun, Task), SlurmError> {
        let worker = self.ensure(index)?;
        let run = WorkerRun::new(worker.clone());
        // Running, or finished while no appliance followed it.
        for file in [RUNNING, DONE] {
            if let Some(earlier) = task::read_json::<Task>(&worker.dir.join(file)) {
                let finished = earlier.run_dir.join(task::REPORT_FILE).is_file();
                if earlier.same_run(task) && (file == RUNNING || finished) {
                    return Ok((run, earlier));
                }
            }
        }
        task::fresh_run_dir(task).map_err(|e| refused(&task.run_dir, e))?;
        task::write_json(&worker.dir.join(TASK), task).map_err(|e| refused(&worker.dir, e))?;
        Ok((run, task.clone()))
    }

    /// Worker `index`'s job, submitted now when it has none that is alive.
    fn ensure(&mut self, index: usize) -> Result<WorkerJob, SlurmError> {
        let alive = self
            .workers
            .iter()
            .find(|w| w.index == index)
            .filter(|w| matches!(slurm::state(&w.job), Ok(Some(s)) if !s.ended()));
        if let Some(w) = alive {
            return Ok(w.clone());
        }
        let dir = self.shared.join("workers").join(format!("w{index}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| refused(&dir, e))?;
        let command = [
            self.appliance.as_os_str().to_owned(),
            "node-worker".into(),
            dir.clone().into_os_string(),
        ];
        let job = slurm::submit(
            &self.options,
            &format!("autoresearch-{}-w{index}", self.name),
            &command,
            &dir.join("job.out"),
        )?;
        let worker = WorkerJob { index, job, dir };
        self.workers.retain(|w| w.index != index);
        self.workers.push(worker.clone());
        self.save();
        Ok(worker)
    }

    fn save(&self) {
        if let Err(e) = task::write_json(&self.shared.join(WORKERS_FILE), &self.workers) {
            tracing::warn!("cannot save the worker jobs: {e}");
        }
    }

    /// Ends every worker job: asked to quit, then cancelled; none is left in the queue.
    pub fn shut_down(&mut self) {
        for w in &self.workers {
            let _ = std::fs::write(w.dir.join(QUIT), b"");
            if let Err(e) = slurm::cancel(&w.job) {
                tracing::warn!("cannot cancel worker job {}: {e}", w.job);
            }
        }
        self.workers.clear();
        let _ = std::fs::remove_file(self.shared.join(WORKERS_FILE));
    }
}

fn refused(path: &Path, e: std::io::Error) -> SlurmError {
    SlurmError::Refused {
        command: "the shared folder",
        message: format!("cannot write {}: {e}", path.display()),
    }
}

/// A run on a worker, as `follow` sees it: alive while its heartbeat goes on.
pub struct WorkerRun {
    pub worker: WorkerJob,
    beat: Option<(u64, Instant)>,
    asked: Option<(Instant, Option<slurm::JobState>)>,
}

impl WorkerRun {
    fn new(worker: WorkerJob) -> Self {
        WorkerRun {
            worker,
            beat: None,
            asked: None,
        }
    }

    /// The job's state, asked at most every `ASK_EVERY`.
    fn job_state(&mut self) -> Option<slurm::JobState> {
        if let Some((at, state)) = &self.asked {
            if at.elapsed() < ASK_EVERY {
                return state.clone();
            }
        }
        let state = slurm::state(&self.worker.job).ok().flatten();
        self.asked = Some((Instant::now(), state.clone()));
        state
    }
}

impl Placement for WorkerRun {
    fn standing(&mut self) -> Standing {
        let beat: Option<u64> = task::read_json(&self.worker.dir.join(BEAT));
        let now = Instant::now();
        match (beat, self.beat) {
            (Some(b), Some((last, _))) if b != last => self.beat = Some((b, now)),
            (Some(b), None) => self.beat = Some((b, now)),
            _ => {}
        }
        let task_waiting = self.worker.dir.join(TASK).exists();
        match self.beat {
            Some((_, at)) if now - at < HEARTBEAT_LOST => match task_waiting {
                true => Standing::Queued,
                false => Standing::Running,
            },
            // Never beaten yet: queued, unless its job has ended.
            None => match self.job_state() {
                Some(s) if s.ended() => Standing::Gone {
                    state: s.state,
                    reason: s.reason,
                },
                _ => Standing::Queued,
            },
            Some((_, at)) => {
                let silent = (now - at).as_secs();
                let (state, reason) = match self.job_state() {
                    Some(s) => (s.state, s.reason),
                    None => ("UNKNOWN".into(), "the job is no longer known".into()),
                };
                Standing::Gone {
                    state,
                    reason: format!("{reason}; worker heartbeat silent for {silent} s"),
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Err(e) = slurm::cancel(&self.worker.job) {
            tracing::warn!("cannot cancel worker job {}: {e}", self.worker.job);
        }
    }
}
