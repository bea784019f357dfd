//! The SLURM executor end to end on a real single-node cluster (Debian's munge, slurmctld and
//! slurmd, configured and started by scripts/slurm-cluster.sh; `.ci/run` stops it after the
//! tests): runs as jobs and on worker jobs, a worker cancelled from outside, kill -9 of the
//! appliance and a restart that adopts the run still going, Ctrl-C, and SLURM's own time limit.
//! Needs root, as the script does. The loops here share the node, so they run one at a time.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use autoresearch::executor::task::Task;
use autoresearch::executor::ExecutorKind;
use autoresearch::research::record::{Outcome, Record, RunEnd};
use common::research::{journal, loop_with_budget, prepared, repo, run_dir};
use common::{autoresearch, baseline, run, wait_exit};

fn spawn_loop(repo: &Path, budget: &str, extra: &[&str]) -> Child {
    loop_with_budget(repo, budget, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The cluster, started once per test binary; the loops one at a time.
fn cluster() -> MutexGuard<'static, ()> {
    static STARTED: OnceLock<()> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    STARTED.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-cluster.sh");
        let (ok, stdout, stderr) = run(Command::new(script).arg("start"));
        assert!(ok, "the test cluster did not start:\n{stdout}\n{stderr}");
    });
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// SLURM's state of `job` (squeue remembers ended jobs for an hour on the test cluster).
fn job_state(job: &str) -> String {
    let out = Command::new("squeue")
        .args([
            "--noheader",
            "--states=all",
            "--format=%T|%r",
            "--jobs",
            job,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn alive(job: &str) -> bool {
    let state = job_state(job);
    state.starts_with("PENDING") || state.starts_with("RUNNING") || state.starts_with("COMPLETING")
}

/// Every job id a run folder's records name.
fn jobs_of(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| &r.runs)
        .filter_map(|run| run.placed.as_ref()?.job.clone())
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The task worker 0 is running, once it runs one.
fn running_task(root: &Path) -> Option<Task> {
    let path = run_dir(root).join("slurm/workers/w0/running.json");
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn worker_job(root: &Path) -> String {
    let path = run_dir(root).join("slurm/workers.json");
    let workers: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    workers[0]["job"].as_str().unwrap().to_string()
}

#[test]
fn a_loop_runs_each_run_as_its_own_job() {
    let _cluster = cluster();
    let guard = repo(&baseline());
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_with_budget(
        root,
        "5",
        &[
            "--executor",
            "slurm",
            "--slurm-mode",
            "job",
            "--workers",
            "2",
            "--baseline-runs",
            "1",
            "--max-experiments",
            "2",
            "--action",
            "set",
            "--controller",
            "off",
            "--proposals",
            "6",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("executor: slurm (job mode)"), "{stdout}");
    // The round's two candidates ran as jobs of their own, one per lane.
    let lanes: Vec<usize> = journal(root)[1..]
        .iter()
        .flat_map(|r| &r.runs)
        .map(|run| run.placed.as_ref().unwrap().worker.unwrap())
        .collect();
    assert_eq!(lanes.len(), 2, "both candidates trained");
    assert_ne!(lanes[0], lanes[1]);
    let records = journal(root);
    let base = &records[0];
    assert_eq!(base.outcome, Outcome::Keep);
    let runs: Vec<_> = records.iter().flat_map(|r| &r.runs).collect();
    assert!(!runs.is_empty());
    let mut ids = Vec::new();
    for run in &runs {
        let placed = run
            .placed
            .as_ref()
            .expect("a cluster run says where it ran");
        assert_eq!(placed.executor, ExecutorKind::Slurm);
        let job = placed.job.clone().unwrap();
        // The run's result is the harness's, read on this side from the shared folder.
        if run.outcome == RunEnd::Finished {
            assert!(
                job_state(&job).starts_with("COMPLETED"),
                "{job}: {}",
                job_state(&job)
            );
            assert!(run.log.with_file_name("result.json").is_file());
            assert!(placed.host.is_some());
        }
        ids.push(job);
    }
    ids.dedup();
    assert_eq!(ids.len(), runs.len(), "one job per run: {ids:?}");
    // The training program and the appliance ran from the shared folder.
    let shared = run_dir(root).join("slurm");
    assert!(shared.join("programs").read_dir().unwrap().count() >= 1);
    assert!(shared.join("bin").read_dir().unwrap().count() == 1);
    assert!(ids.iter().all(|j| !alive(j)));
}

#[test]
fn a_killed_loop_adopts_its_run_on_resume_and_ctrl_c_leaves_no_job() {
    let _cluster = cluster();
    let guard = repo(&baseline());
    let root = guard.path();
    let options = [
        "--executor",
        "slurm",
        "--baseline-runs",
        "1",
        "--max-experiments",
        "0",
    ];
    let mut child = spawn_loop(root, "20", &options);
    wait_for(
        "the worker to run the baseline",
        Duration::from_secs(180),
        || running_task(root).is_some(),
    );
    let first = running_task(root).unwrap();
    let worker = worker_job(root);
    // The pending record names the job its run went to, from the moment it was placed.
    let pending: Record =
        serde_json::from_slice(&std::fs::read(run_dir(root).join("pending.json")).unwrap())
            .unwrap();
    let in_flight = pending.in_flight.expect("the run in flight is named");
    assert_eq!(in_flight.job.as_deref(), Some(worker.as_str()));
    assert_eq!(in_flight.worker, Some(0));
    // kill -9: the appliance goes, the worker job and its run go on.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(&worker), "{}", job_state(&worker));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running_task(root).as_ref(), Some(&first));

    let (ok, stdout, stderr) = run(&mut loop_with_budget(root, "20", &options));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    // The resumed loop's baseline followed the run that was still going, in its folder and job,
    // instead of training again.
    let base = records
        .iter()
        .find(|r| r.outcome == Outcome::Keep)
        .expect("a baseline");
    assert_eq!(base.runs.len(), 1);
    assert_eq!(base.runs[0].log, first.run_dir.join("train.log"));
    let placed = base.runs[0].placed.as_ref().unwrap();
    assert_eq!(placed.job.as_deref(), Some(worker.as_str()));
    assert_eq!(placed.worker, Some(0));
    // The loop ended: its worker job with it.
    wait_for("the worker job to end", Duration::from_secs(30), || {
        !alive(&worker)
    });

    // Ctrl-C while a run trains on a new worker: every job of the run ends.
    let mut child = spawn_loop(root, "20", &["--executor", "slurm"]);
    wait_for("the next run", Duration::from_secs(300), || {
        running_task(root).is_some_and(|t| t.run_dir != first.run_dir)
    });
    let worker = worker_job(root);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(wait_exit(child.id() as i32, Duration::from_secs(60)));
    child.wait().unwrap();
    assert!(!alive(&worker), "{worker}: {}", job_state(&worker));
    for job in jobs_of(&journal(root)) {
        assert!(!alive(&job), "{job}: {}", job_state(&job));
    }
}

#[test]
fn a_worker_cancelled_from_outside_is_noticed_and_its_run_goes_to_a_new_one() {
    let _cluster = cluster();
    let guard = repo(&baseline());
    let root = guard.path();
    let mut child = spawn_loop(
        root,
        "10",
        &[
            "--executor",
            "slurm",
            "--workers",
            "2",
            "--baseline-runs",
            "1",
            "--max-experiments",
            "2",
            "--action",
            "set",
            "--controller",
            "off",
            "--proposals",
            "6",
        ],
    );
    wait_for(
        "the worker to run the baseline",
        Duration::from_secs(180),
        || running_task(root).is_some(),
    );
    let worker = worker_job(root);
    assert!(Command::new("scancel")
        .arg(&worker)
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(child.id() as i32, Duration::from_secs(420)));
    assert!(child.wait().unwrap().success());
    let records = journal(root);
    let base = &records[0];
    assert_eq!(base.outcome, Outcome::Keep, "{records:#?}");
    let [lost, finished] = &base.runs[..] else {
        panic!("a lost run and its rerun: {:#?}", base.runs)
    };
    assert_eq!(lost.outcome, RunEnd::Lost);
    let exit = lost.exit.as_deref().unwrap();
    assert!(
        exit.contains("CANCELLED") && exit.contains("heartbeat silent"),
        "{exit}"
    );
    assert_eq!(
        lost.placed.as_ref().unwrap().job.as_deref(),
        Some(worker.as_str())
    );
    assert_eq!(finished.outcome, RunEnd::Finished);
    let second = finished.placed.as_ref().unwrap().job.clone().unwrap();
    assert_ne!(second, worker, "a new worker job took the run");
    // Then a round of two on two worker jobs, each its own.
    let round: Vec<_> = records[1..]
        .iter()
        .flat_map(|r| &r.runs)
        .map(|run| run.placed.clone().unwrap())
        .collect();
    assert_eq!(round.len(), 2, "both candidates trained: {records:#?}");
    assert_ne!(round[0].worker, round[1].worker);
    assert_ne!(round[0].job, round[1].job);
    // The loop ended: every worker job with it.
    for job in jobs_of(&records) {
        wait_for("the worker jobs to end", Duration::from_secs(30), || {
            !alive(&job)
        });
    }
}

#[test]
fn a_job_killed_by_its_time_limit_is_recorded_with_slurms_reason() {
    let _cluster = cluster();
    let guard = repo(&baseline());
    let root = guard.path();
    // A one-minute job for a run that needs more: SLURM kills it.
    let (ok, stdout, stderr) = run(&mut loop_with_budget(
        root,
        "200",
        &[
            "--executor",
            "slurm",
            "--slurm-mode",
            "job",
            "--slurm-time",
            "1",
            "--baseline-runs",
            "1",
        ],
    ));
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("SLURM state TIMEOUT, reason TimeLimit")
            && stderr.contains("give a --slurm-time longer than the run's --timeout"),
        "{stderr}"
    );
    // In flight when the loop stopped: the pending record holds the run and SLURM's reason.
    let pending: Record =
        serde_json::from_slice(&std::fs::read(run_dir(root).join("pending.json")).unwrap())
            .unwrap();
    let run = &pending.runs[0];
    assert_eq!(run.outcome, RunEnd::Lost);
    assert!(run.exit.as_deref().unwrap().contains("TimeLimit"));
    let job = run.placed.as_ref().unwrap().job.clone().unwrap();
    assert!(
        job_state(&job).starts_with("TIMEOUT|TimeLimit"),
        "{}",
        job_state(&job)
    );
}

#[test]
fn doctor_checks_the_cluster_from_a_node_and_names_a_bad_config() {
    let _cluster = cluster();
    let guard = repo(&baseline());
    let root = guard.path();
    let shared = root.join("shared");
    let out = autoresearch(&["doctor", "--executor", "slurm", "--slurm-mode", "job"])
        .arg("--slurm-shared")
        .arg(&shared)
        .arg("--data-dir")
        .arg(prepared())
        .arg("--program")
        .arg(root.join("program.md"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok  executor     slurm, job mode, partition (default)"),
        "{stdout}"
    );
    assert!(stdout.contains("ok  sbatch       slurm"), "{stdout}");
    let shared_line = stdout
        .lines()
        .find(|l| l.contains("shared path"))
        .unwrap_or_default();
    assert!(
        shared_line.starts_with("ok ")
            && shared_line.contains(" read ")
            && shared_line.contains("and wrote"),
        "{stdout}"
    );

    // A key the file does not have is named, with the file.
    std::fs::write(
        root.join("autoresearch.toml"),
        "executor = \"slurm\"\n[slurm]\npartiton = \"gpu\"\n",
    )
    .unwrap();
    let out = autoresearch(&["doctor", "--program"])
        .arg(root.join("program.md"))
        .arg("--data-dir")
        .arg(prepared())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("--  executor") && stdout.contains("unknown field `partiton`"),
        "{stdout}"
    );
}
