//! Where training runs execute. `local` (the default) runs them as children of the appliance
//! (`research::runner::LocalTrainer`); `slurm` hands them to a SLURM cluster: the built program
//! and the appliance's own binary are copied into a folder the nodes share, each run is a task
//! in its run folder there, run on a node by the appliance's hidden `node-run` (a job per run)
//! or `node-worker` (long-lived worker jobs) command, confined exactly as locally, and followed
//! from here through its log and report (`follow`).

pub mod follow;
pub mod jobs;
pub mod probe;
pub mod slurm;
pub mod task;
pub mod workers;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::confine::Confinement;
use crate::research::record::Placed;
use crate::research::runner::{Lane, LocalTrainer, RunEvents, Trainer};
use crate::trainer::run::{Outcome, RunReport};
use crate::trainer::{build, TrainerError};
use slurm::SlurmOptions;
use task::Task;

/// Where training runs execute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Children of the appliance, on this machine.
    #[default]
    Local,
    /// Jobs on a SLURM cluster.
    Slurm,
}

named!(ExecutorKind {
    Local => "local",
    Slurm => "slurm",
});

/// How runs become SLURM jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SlurmMode {
    /// Long-lived worker jobs that run experiment after experiment: the queue is waited once.
    #[default]
    Worker,
    /// One job per run.
    Job,
}

named!(SlurmMode {
    Worker => "worker",
    Job => "job",
});

/// Where a loop's runs go, checked (`cli::executor_args` makes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    Local,
    Slurm {
        mode: SlurmMode,
        options: SlurmOptions,
        /// A folder every node mounts at the same path.
        shared: PathBuf,
    },
}

impl Executor {
    pub fn kind(&self) -> ExecutorKind {
        match self {
            Executor::Local => ExecutorKind::Local,
            Executor::Slurm { .. } => ExecutorKind::Slurm,
        }
    }
}

/// Trains on a SLURM cluster; builds here, where the toolchain is.
pub struct SlurmTrainer {
    /// Builds the candidates, and holds the runs' settings: data, budget, timeout, confinement,
    /// Ctrl-C.
    local: LocalTrainer,
    /// On a file system every node mounts at the same path: programs, tasks, worker folders.
    shared: PathBuf,
    options: SlurmOptions,
    mode: SlurmMode,
    /// The appliance's binary in `shared`, which the jobs run.
    appliance: PathBuf,
    /// The worker jobs (worker mode), one per lane.
    pool: Option<Mutex<workers::Pool>>,
    /// The in-flight file of job mode is read and rewritten by one run at a time.
    jobs_file: Mutex<()>,
}

impl SlurmTrainer {
    pub fn new(
        local: LocalTrainer,
        shared: PathBuf,
        options: SlurmOptions,
        mode: SlurmMode,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        std::fs::create_dir_all(&shared)
            .with_context(|| format!("cannot create the shared folder {}", shared.display()))?;
        let appliance = slurm::shared_appliance(&shared).with_context(|| {
            format!(
                "cannot copy the appliance into the shared folder {}",
                shared.display()
            )
        })?;
        let pool = (mode == SlurmMode::Worker).then(|| {
            Mutex::new(workers::Pool::open(
                &local.slot,
                &shared,
                options.clone(),
                appliance.clone(),
            ))
        });
        Ok(SlurmTrainer {
            local,
            shared,
            options,
            mode,
            appliance,
            pool,
            jobs_file: Mutex::new(()),
        })
    }

    fn task(&self, binary: &Path, run_dir: &Path, seed: u64) -> Task {
        Task {
            binary: binary.to_path_buf(),
            data_dir: self.local.data_dir.clone(),
            run_dir: run_dir.to_path_buf(),
            budget: Some(self.local.budget.get()),
            seed,
            timeout_seconds: self.local.timeout.as_secs_f64(),
            allow_unconfined: self.local.confinement == Confinement::BestEffort,
        }
    }

    /// A job per run: submitted, or adopted where a killed appliance left the same run going.
    fn run_as_job(
        &self,
        task: Task,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        let guard = self.jobs_file.lock().unwrap_or_else(|e| e.into_inner());
        let mut in_flight = jobs::in_flight(&self.shared);
        let (job, task) = match jobs::adoptable(&in_flight, &task) {
            Some((job, run_dir)) => (job, Task { run_dir, ..task }),
            None => {
                prepare_run_dir(&task)?;
                let name = format!("autoresearch-{}", self.local.slot);
                let job = jobs::submit(&self.options, &self.appliance, &task, &name)?;
                in_flight.push(jobs::InFlight {
                    job: job.clone(),
                    task: task.clone(),
                });
                jobs::save_in_flight(&self.shared, &in_flight).map_err(shared_io)?;
                (job, task)
            }
        };
        drop(guard);
        let worker = (lane.of > 1).then_some(lane.index);
        let mut placement = jobs::RunJob::new(job.clone());
        let mut report = self.follow(&task, &mut placement, worker, &job, events)?;
        let _guard = self.jobs_file.lock().unwrap_or_else(|e| e.into_inner());
        let mut in_flight = jobs::in_flight(&self.shared);
        in_flight.retain(|j| j.job != job);
        jobs::save_in_flight(&self.shared, &in_flight).map_err(shared_io)?;
        // A job of its own killed by its time limit: a new job would be killed the same way.
        if let Outcome::Lost { state, retry, .. } = &mut report.outcome {
            if state == "TIMEOUT" {
                *retry = false;
            }
        }
        Ok(report)
    }

    fn run_on_worker(
        &self,
        task: Task,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        let pool = self.pool.as_ref().expect("worker mode has a pool");
        let placed = pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .place(lane.index, &task);
        let (mut placement, task) = placed?;
        let (worker, job) = (placement.worker.index, placement.worker.job.clone());
        self.follow(&task, &mut placement, Some(worker), &job, events)
    }

    /// Says where the run went, follows it to its end, and notes where it ran.
    fn follow(
        &self,
        task: &Task,
        placement: &mut dyn follow::Placement,
        worker: Option<usize>,
        job: &slurm::JobId,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        let mut placed = Placed {
            executor: ExecutorKind::Slurm,
            worker,
            job: Some(job.0.clone()),
            host: None,
        };
        events.placed(&placed);
        let stop = self.local.stop.clone();
        let mut report =
            follow::follow(task, placement, &mut |line| events.line(line), &move || {
                stop.requested()
            })?;
        placed.host =
            task::read_json::<task::Report>(&task.run_dir.join(task::REPORT_FILE)).map(|r| r.host);
        report.placed = Some(placed);
        Ok(report)
    }
}

impl Trainer for SlurmTrainer {
    fn build(&mut self, text: &str) -> Result<build::Built, TrainerError> {
        let built = self.local.build(text)?;
        // The build folder is this machine's; the nodes read the program from the shared one.
        let dir = self.shared.join("programs");
        let name = built.binary.file_name().expect("a kept program has a name");
        let shared = dir.join(name);
        if !shared.is_file() {
            std::fs::create_dir_all(&dir).map_err(shared_io)?;
            build::copy_into_place(&built.binary, &shared).map_err(shared_io)?;
        }
        Ok(build::Built {
            binary: shared,
            seconds: built.seconds,
        })
    }

    fn run(
        &self,
        binary: &Path,
        run_dir: &Path,
        seed: u64,
        lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        let task = self.task(binary, run_dir, seed);
        match self.mode {
            SlurmMode::Job => self.run_as_job(task, lane, events),
            SlurmMode::Worker => self.run_on_worker(task, lane, events),
        }
    }
}

impl Drop for SlurmTrainer {
    /// The loop is over (or stopped): no worker job outlives it. A kill -9 skips this, and the
    /// restarted appliance finds the workers again.
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.lock().unwrap_or_else(|e| e.into_inner()).shut_down();
        }
    }
}

/// A fresh run folder with the task in it, which its job's `node-run` reads.
fn prepare_run_dir(task: &Task) -> Result<(), TrainerError> {
    task::fresh_run_dir(task).map_err(shared_io)?;
    task::write_json(&task.run_dir.join(task::TASK_FILE), task).map_err(shared_io)
}

fn shared_io(e: std::io::Error) -> TrainerError {
    TrainerError::Io {
        what: "the shared folder".into(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_with_the_journal_and_the_config_file() {
        for kind in ExecutorKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        for mode in SlurmMode::ALL {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.name());
        }
    }
}
