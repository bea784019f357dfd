//! A SLURM job per run (`--slurm-mode job`): each run is its own `sbatch` of the appliance's
//! hidden `node-run` command, which runs the task confined on the node and writes its report.
//! Simple, and right for an idle cluster; on a busy one every run waits in the queue again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::follow::{Placement, Standing};
use super::slurm::{self, JobId, SlurmError, SlurmOptions};
use super::task::{self, Task, TASK_FILE};

/// The jobs in flight, kept in the shared folder so that an appliance killed and restarted
/// finds them again.
pub const JOBS_FILE: &str = "jobs.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InFlight {
    pub job: JobId,
    pub task: Task,
}

/// How often a job's state is asked of the controller: a busy cluster's controller is shared.
const ASK_EVERY: Duration = Duration::from_secs(3);

/// One run's job, as `follow` sees it.
pub struct RunJob {
    pub job: JobId,
    asked: Option<(Instant, Standing)>,
}

impl RunJob {
    pub fn new(job: JobId) -> Self {
        RunJob { job, asked: None }
    }
}

impl Placement for RunJob {
    fn standing(&mut self) -> Standing {
        if let Some((at, standing)) = &self.asked {
            if at.elapsed() < ASK_EVERY {
                return standing.clone();
            }
        }
        let standing = match slurm::state(&self.job) {
            Ok(Some(s)) if s.pending() => Standing::Queued,
            Ok(Some(s)) if s.running() => Standing::Running,
            Ok(Some(s)) => Standing::Gone {
                state: s.state,
                reason: s.reason,
            },
            Ok(None) => Standing::Gone {
                state: "UNKNOWN".into(),
                reason: "neither squeue nor sacct knows the job".into(),
            },
            // The controller did not answer: ask again later, the job goes on meanwhile.
            Err(e) => {
                tracing::warn!("cannot read job {}'s state: {e}", self.job);
                self.asked
                    .as_ref()
                    .map_or(Standing::Queued, |(_, s)| s.clone())
            }
        };
        self.asked = Some((Instant::now(), standing.clone()));
        standing
    }

    fn kill(&mut self) {
        if let Err(e) = slurm::cancel(&self.job) {
            tracing::warn!("cannot cancel job {}: {e}", self.job);
        }
    }
}

/// Submits `task` as its own job, running `appliance node-run <task file>`.
pub fn submit(
    options: &SlurmOptions,
    appliance: &Path,
    task: &Task,
    name: &str,
) -> Result<JobId, SlurmError> {
    let task_file = task.run_dir.join(TASK_FILE);
    let command = [
        appliance.as_os_str().to_owned(),
        "node-run".into(),
        task_file.into_os_string(),
    ];
    slurm::submit(options, name, &command, &task.run_dir.join("job.out"))
}

/// The jobs a run folder's appliance left in flight.
pub fn in_flight(shared: &Path) -> Vec<InFlight> {
    task::read_json(&shared.join(JOBS_FILE)).unwrap_or_default()
}

pub fn save_in_flight(shared: &Path, jobs: &[InFlight]) -> std::io::Result<()> {
    task::write_json(&shared.join(JOBS_FILE), &jobs)
}

/// A job that runs (or ran, while no appliance followed it) the same thing as `task`: a
/// restarted appliance follows it instead of training again.
pub fn adoptable(jobs: &[InFlight], task: &Task) -> Option<(JobId, PathBuf)> {
    jobs.iter()
        .filter(|j| j.task.same_run(task))
        .find(|j| {
            j.task.run_dir.join(task::REPORT_FILE).is_file()
                || matches!(slurm::state(&j.job), Ok(Some(s)) if !s.ended())
        })
        .map(|j| (j.job.clone(), j.task.run_dir.clone()))
}
