//! The bad-input catalogue of the research loop: each failure is survived with a clear message
//! and a journal that records exactly what happened, with nothing finished lost.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use autoresearch::research::record::{Outcome, RecordKind, RunEnd};
use common::research::{journal, loop_cmd, repo, run_dir, spawn_loop, wait_for_line};
use common::{baseline, run};

const TRAIN_FN: &str = "fn train(h: &mut Harness) -> harness::Result<Trained> {";

/// The baseline with `code` run first thing in `train`.
fn with_code_first(code: &str) -> String {
    let source = baseline();
    assert!(source.contains(TRAIN_FN));
    source.replacen(TRAIN_FN, &format!("{TRAIN_FN}\n    {code}"), 1)
}

#[test]
fn failing_training_files_are_recorded_with_their_outcome() {
    let source = baseline();
    let cases: Vec<(&str, String, Outcome, Option<RunEnd>, &str)> = vec![
        (
            "does not compile",
            with_code_first("let _ = undefined_value;"),
            Outcome::CompileError,
            None,
            "cannot find value `undefined_value`",
        ),
        (
            "refused by the gate",
            with_code_first("let _secret = include_str!(\"/etc/passwd\");"),
            Outcome::CompileError,
            None,
            "compile-time file access",
        ),
        (
            "panics",
            with_code_first("panic!(\"the agent broke it\");"),
            Outcome::Crash,
            Some(RunEnd::Crashed),
            "exit code 101",
        ),
        (
            "exits without a summary",
            source.replacen("harness::run(train)", "let _ = train;", 1),
            Outcome::Crash,
            Some(RunEnd::Crashed),
            "exited 0 without writing result.json",
        ),
        (
            "produces NaN",
            source.replacen(
                "model.loss(&x, &y)? / micro_steps as f64",
                "model.loss(&x, &y)? * f64::NAN",
                1,
            ),
            Outcome::Crash,
            Some(RunEnd::Diverged),
            "FAIL: the loss became NaN",
        ),
        (
            "exhausts memory",
            with_code_first("let big = vec![1u8; 1 << 46];\n    std::hint::black_box(&big);"),
            Outcome::Crash,
            Some(RunEnd::OutOfMemory),
            "out of memory",
        ),
    ];
    for (name, file, outcome, run_outcome, message) in cases {
        assert_ne!(file, source, "{name}: the variant changed nothing");
        let guard = repo(&file);
        let root = guard.path();
        let (ok, stdout, stderr) = run(&mut loop_cmd(
            root,
            &["--baseline-runs", "1", "--timeout", "120"],
        ));
        assert!(
            !ok,
            "{name}: the loop cannot start on a failing baseline\n{stdout}"
        );
        assert!(
            stderr.contains("fix train/src/train.rs"),
            "{name}: {stderr}"
        );
        let records = journal(root);
        assert_eq!(records.len(), 1, "{name}");
        assert_eq!(records[0].outcome, outcome, "{name}: {:?}", records[0]);
        assert_eq!(
            records[0].runs.first().map(|r| r.outcome),
            run_outcome,
            "{name}"
        );
        let error = records[0].error.as_deref().unwrap_or_default();
        assert!(error.contains(message), "{name}: {error}");
    }
}

#[test]
fn a_missing_or_empty_protocol_stops_the_loop_before_anything_runs() {
    let guard = repo(&baseline());
    let root = guard.path();
    std::fs::remove_file(root.join("program.md")).unwrap();
    let (ok, _, stderr) = run(&mut loop_cmd(root, &[]));
    assert!(!ok);
    assert!(
        stderr.contains("cannot read the research protocol")
            && stderr.contains("restore program.md"),
        "{stderr}"
    );
    std::fs::write(root.join("program.md"), "\n \n").unwrap();
    let (ok, _, stderr) = run(&mut loop_cmd(root, &[]));
    assert!(!ok);
    assert!(stderr.contains("is empty"), "{stderr}");
    assert!(!run_dir(root).exists());
}

/// Whether this machine lets an unprivileged process make a user and mount namespace, which
/// the full-disk tests need for a private tmpfs; None with the reason when it does not.
fn private_mounts_unavailable() -> Option<String> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// `inner` in a private mount namespace where `folder` is a full 64 KiB tmpfs (no root needed).
fn with_full_folder(folder: &Path, inner: &Command) -> std::process::Output {
    let script = "mount -t tmpfs -o size=64k tmpfs \"$1\" && head -c 65536 /dev/zero > \"$1/filler\"; shift && exec \"$@\"";
    Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "bash",
            "-c",
            script,
            "_",
        ])
        .arg(folder)
        .arg(inner.get_program())
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The journal on a file system with no room left: the loop stops and says so, and the
/// finished run survives in the pending record, which the next start puts in the journal.
#[test]
fn a_full_disk_stops_the_loop_without_losing_the_finished_run() {
    if let Some(why) = private_mounts_unavailable() {
        eprintln!("skipped: this machine gives no private mount namespace ({why})");
        return;
    }
    let guard = repo(&baseline());
    let root = guard.path();
    let dir = run_dir(root);
    std::fs::create_dir_all(&dir).unwrap();
    let tiny = root.join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    std::os::unix::fs::symlink(
        tiny.join("experiments.jsonl"),
        dir.join("experiments.jsonl"),
    )
    .unwrap();
    let inner = loop_cmd(root, &["--baseline-runs", "1", "--max-experiments", "0"]);
    let out = with_full_folder(&tiny, &inner);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot write the journal") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(
        stderr.contains("free disk space, then resume with the same --tag"),
        "{stderr}"
    );
    let pending = autoresearch::research::pending::load(&dir)
        .unwrap()
        .unwrap();
    let value = pending.runs[0].summary.as_ref().unwrap().val_bpb;

    // Space again (the journal back on the ordinary disk): the run is recorded, then redone.
    std::fs::remove_file(dir.join("experiments.jsonl")).unwrap();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &["--baseline-runs", "1", "--max-experiments", "0"],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    assert_eq!(records[0].outcome, Outcome::Interrupted);
    assert_eq!(
        records[0].runs[0].summary.as_ref().map(|s| s.val_bpb),
        Some(value)
    );
    assert_eq!(records[1].outcome, Outcome::Keep);
    assert_eq!(records[1].kind, RecordKind::Baseline);
}

/// The build's target folder on a full disk is the machine's problem, not the agent's: the loop
/// ends with the fix named, and nothing is recorded against the training file.
#[test]
fn a_full_build_disk_ends_the_loop_with_the_fix_named() {
    if let Some(why) = private_mounts_unavailable() {
        eprintln!("skipped: this machine gives no private mount namespace ({why})");
        return;
    }
    let guard = repo(&baseline());
    let root = guard.path();
    let target = root.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let mut inner = loop_cmd(root, &["--baseline-runs", "1", "--max-experiments", "0"]);
    inner.env("CARGO_TARGET_DIR", &target);
    let out = with_full_folder(&target, &inner);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("could not be built for a reason outside the training file")
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert!(!stderr.contains("fix train/src/train.rs"), "{stderr}");
    // Nothing was recorded against the file: the next start measures the baseline.
    let records = autoresearch::research::journal::read(&run_dir(root)).unwrap();
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn kill_nine_during_a_proposal_and_during_evaluation_loses_nothing() {
    let guard = repo(&baseline());
    let root = guard.path();
    let dir = run_dir(root);
    let args = [
        "--baseline-runs",
        "1",
        "--max-experiments",
        "1",
        "--action",
        "set",
    ];

    // Killed once the loop says the agent is writing: nothing is pending yet.
    let (mut child, mut stdout) = spawn_loop(root, &args);
    wait_for_line(&mut stdout, "e0001: the agent writes");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!dir.join("pending.json").exists(), "a candidate was taken");
    assert_eq!(journal(root).len(), 1);
    let baseline_value = journal(root)[0].val_bpb.unwrap();

    // Killed once the loop says the harness is evaluating: the run has no result.
    let (mut child, mut stdout) = spawn_loop(root, &args);
    wait_for_line(&mut stdout, "e0001 run 1: evaluating");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("e0001/run1/result.json").exists(),
        "the evaluation had finished"
    );

    let (ok, stdout, stderr) = run(&mut loop_cmd(root, &args));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    assert_eq!(records[0].val_bpb, Some(baseline_value));
    assert_eq!(records[1].n, 1);
    assert_eq!(records[1].outcome, Outcome::Interrupted, "{:?}", records[1]);
    assert!(records[1].commit.is_some());
    assert_eq!(records[2].retry_of, Some(1));
    assert_ne!(records[2].outcome, Outcome::Interrupted);
    assert!(!Path::new(&dir.join("pending.json")).exists());
}
