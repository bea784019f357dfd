//! SLURM's command-line clients, which is all a login node is guaranteed to have: `sbatch` to
//! submit, `squeue` (then `sacct`) to follow, `scancel` to cancel. Nothing here knows about
//! training; `jobs` and `workers` put runs in the jobs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// How the appliance's jobs are submitted: the user's cluster options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Generic resources per job, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// The jobs' time limit, in sbatch's format (`--time`).
    pub time: Option<String>,
    /// CPUs per job.
    pub cpus: usize,
    /// Further `sbatch` options, as given (`--account=lab`, `--qos=long`).
    pub extra: Vec<String>,
}

/// A job as SLURM numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job's state and SLURM's reason for it, as `squeue` or `sacct` print them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED, PREEMPTED, NODE_FAIL, ...
    pub state: String,
    /// Resources, Priority, TimeLimit, NonZeroExitCode, None, ...
    pub reason: String,
}

impl JobState {
    pub fn pending(&self) -> bool {
        matches!(self.state.as_str(), "PENDING" | "CONFIGURING" | "REQUEUED")
    }

    pub fn running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "RUNNING" | "COMPLETING" | "SUSPENDED" | "STAGE_OUT" | "RESIZING" | "SIGNALING"
        )
    }

    /// The job is over, whatever became of it.
    pub fn ended(&self) -> bool {
        !self.pending() && !self.running()
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason.as_str() {
            "" | "None" => f.write_str(&self.state),
            reason => write!(f, "{} ({reason})", self.state),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {command}: {source}; install SLURM's client commands (Debian: slurm-client) or run the appliance on a login node of the cluster")]
    Missing {
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} refused: {message}")]
    Refused {
        command: &'static str,
        message: String,
    },
}

/// Submits `command` as a batch job; its output goes to `output`.
pub fn submit(
    options: &SlurmOptions,
    name: &str,
    command: &[OsString],
    output: &Path,
) -> Result<JobId, SlurmError> {
    let mut sbatch = Command::new("sbatch");
    sbatch
        .arg("--parsable")
        .arg(format!("--job-name={name}"))
        .arg(format!("--output={}", output.display()))
        .arg(format!("--cpus-per-task={}", options.cpus.max(1)))
        // The job's environment is not the appliance's: only what the command line says.
        .arg("--export=NONE");
    if let Some(p) = &options.partition {
        sbatch.arg(format!("--partition={p}"));
    }
    if let Some(g) = &options.gres {
        sbatch.arg(format!("--gres={g}"));
    }
    if let Some(t) = &options.time {
        sbatch.arg(format!("--time={t}"));
    }
    sbatch.args(&options.extra);
    sbatch.arg(format!("--wrap=exec {}", shell_words(command)));
    let out = output_of("sbatch", &mut sbatch)?;
    // --parsable prints "id" or "id;cluster".
    let id = out.trim().split(';').next().unwrap_or_default();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err(SlurmError::Refused {
            command: "sbatch",
            message: format!("printed no job id: {out:?}"),
        });
    }
    Ok(JobId(id.to_string()))
}

/// The job's state: from `squeue` while the controller remembers it (running, or ended within
/// its MinJobAge), then from `sacct`; None when neither knows the job.
pub fn state(job: &JobId) -> Result<Option<JobState>, SlurmError> {
    let mut squeue = Command::new("squeue");
    squeue.args(["--noheader", "--states=all", "--format=%T|%r", "--jobs"]);
    squeue.arg(&job.0);
    // squeue exits non-zero for a job id it no longer knows.
    if let Ok(out) = output_of("squeue", &mut squeue) {
        if let Some(state) = parse_state(&out) {
            return Ok(Some(state));
        }
    }
    let mut sacct = Command::new("sacct");
    sacct.args([
        "--noheader",
        "--parsable2",
        "--allocations",
        "--format=State,Reason",
    ]);
    sacct.arg(format!("--jobs={}", job.0));
    match output_of("sacct", &mut sacct) {
        Ok(out) => Ok(parse_state(&out)),
        // No accounting database: the job has aged out of the controller, and nothing remembers
        // it.
        Err(SlurmError::Refused { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Cancels the job (and every step in it).
pub fn cancel(job: &JobId) -> Result<(), SlurmError> {
    let mut scancel = Command::new("scancel");
    scancel.arg("--full").arg(&job.0);
    output_of("scancel", &mut scancel).map(drop)
}

/// The first line of `squeue`/`sacct` output as a state: `RUNNING|None`, `CANCELLED by 0|None`
/// (sacct names who cancelled), `TIMEOUT|TimeLimit`.
fn parse_state(out: &str) -> Option<JobState> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    let (state, reason) = line.split_once('|').unwrap_or((line, ""));
    let state = state.split_whitespace().next()?.trim_end_matches('+');
    Some(JobState {
        state: state.to_string(),
        reason: reason.trim().to_string(),
    })
}

fn output_of(command: &'static str, cmd: &mut Command) -> Result<String, SlurmError> {
    let out = cmd
        .output()
        .map_err(|source| SlurmError::Missing { command, source })?;
    if !out.status.success() {
        return Err(SlurmError::Refused {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `command` for the job's shell, each word single-quoted.
fn shell_words(command: &[OsString]) -> String {
    command
        .iter()
        .map(|w| format!("'{}'", w.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The appliance's own binary where jobs can run it: copied into the shared folder, named by its
/// content, so that a rebuilt appliance never changes a binary under a running job.
pub fn shared_appliance(shared: &Path) -> std::io::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bytes = std::fs::read(&me)?;
    let name = format!("autoresearch-{}", &harness::meta::sha256_hex(&bytes)[..16]);
    let dir = shared.join("bin");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    if !path.is_file() {
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_read_from_squeue_and_sacct_lines() {
        let running = parse_state("RUNNING|None\n").unwrap();
        assert!(running.running() && !running.ended());
        assert_eq!(running.to_string(), "RUNNING");
        let timeout = parse_state("TIMEOUT|TimeLimit\n").unwrap();
        assert!(timeout.ended());
        assert_eq!(timeout.to_string(), "TIMEOUT (TimeLimit)");
        let cancelled = parse_state("CANCELLED by 0|None\n").unwrap();
        assert_eq!(cancelled.state, "CANCELLED");
        assert!(cancelled.ended());
        let pending = parse_state("PENDING|Resources").unwrap();
        assert!(pending.pending() && !pending.ended());
        assert_eq!(parse_state("\n"), None);
    }

    #[test]
    fn the_job_command_is_quoted_for_its_shell() {
        let words: Vec<OsString> = ["/shared/bin/a b", "node-run", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            shell_words(&words),
            r"'/shared/bin/a b' 'node-run' 'it'\''s'"
        );
    }
}
