//! `doctor`'s check of a SLURM setup: a job on the cluster that reads the prepared data and
//! writes the shared folder, from a node, as the runs will.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::slurm::{self, SlurmOptions};

/// How long `doctor` waits for its job: on a busy cluster it may not start in time, which is
/// said, not called a failure of the path.
const WAIT: Duration = Duration::from_secs(90);

/// Submits the check and waits for it; what it found, or why the path does not work.
pub fn shared_path(options: &SlurmOptions, shared: &Path, data_dir: &Path) -> Result<String> {
    let dir = shared.join("doctor");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {} here", dir.display()))?;
    let answer = dir.join(format!("answer-{}", std::process::id()));
    let _ = std::fs::remove_file(&answer);
    let meta = data_dir.join(harness::meta::META_FILE);
    let script = format!(
        "test -r '{}' || {{ echo 'cannot read the prepared data' > '{}.fail'; exit 1; }}; hostname > '{}'",
        meta.display(),
        answer.display(),
        answer.display()
    );
    let command: Vec<OsString> = ["/bin/sh".into(), "-c".into(), script.into()].to_vec();
    let job = slurm::submit(
        options,
        "autoresearch-doctor",
        &command,
        &dir.join("job.out"),
    )?;
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Ok(host) = std::fs::read_to_string(&answer) {
            let _ = std::fs::remove_file(&answer);
            return Ok(format!(
                "job {job} on {} read {} and wrote {}",
                host.trim(),
                data_dir.display(),
                shared.display()
            ));
        }
        match slurm::state(&job)? {
            Some(s) if s.ended() => {
                std::thread::sleep(Duration::from_secs(2));
                if answer.is_file() {
                    continue;
                }
                let fail =
                    std::fs::read_to_string(answer.with_extension("fail")).unwrap_or_default();
                bail!(
                    "job {job} ended {s} without writing {}{}: the prepared data ({}) and the shared folder must be on a file system every node mounts at the same path (--data-dir, --slurm-shared)",
                    answer.display(),
                    match fail.trim() { "" => String::new(), f => format!(" ({f})") },
                    data_dir.display()
                );
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    let _ = slurm::cancel(&job);
    Ok(format!(
        "job {job} did not start within {}s (the queue is busy): not checked",
        WAIT.as_secs()
    ))
}
