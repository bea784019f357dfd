//! The hidden commands a SLURM job runs on its node: `node-run` (one task) and `node-worker`
//! (`executor::workers::serve`).

use std::path::Path;

use anyhow::{Context, Result};

use crate::executor::task::{self, Task};

/// Runs the task in `task_file` and writes its report beside it.
pub fn run_task(task_file: &Path) -> Result<()> {
    let task: Task = task::read_json(task_file)
        .with_context(|| format!("cannot read the task {}", task_file.display()))?;
    task::execute_and_report(&task);
    Ok(())
}
