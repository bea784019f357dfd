//! The bad-input catalogue of the research loop: each failure is survived with a clear message
//! and a journal that records exactly what happened, with nothing finished lost.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::research::{journal, loop_cmd, repo, run_dir, wait_for};
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
    let cases: Vec<(&str, String, &str, Option<&str>, &str)> = vec![
        (
            "does not compile",
            with_code_first("let _ = undefined_value;"),
            "compile_error",
            None,
            "cannot find value `undefined_value`",
        ),
        (
            "refused by the gate",
            with_code_first("let _secret = include_str!(\"/etc/passwd\");"),
            "compile_error",
            None,
            "compile-time file access",
        ),
        (
            "panics",
            with_code_first("panic!(\"the agent broke it\");"),
            "crash",
            Some("crashed"),
            "exit code 101",
        ),
        (
            "exits without a summary",
            source.replacen("harness::run(train)", "let _ = train;", 1),
            "crash",
            Some("crashed"),
            "exited 0 without writing result.json",
        ),
        (
            "produces NaN",
            source.replacen(
                "let loss = (model.loss(&x, &y)? / micro_steps as f64)?;",
                "let loss = (model.loss(&x, &y)? * f64::NAN)?;",
                1,
            ),
            "crash",
            Some("diverged"),
            "FAIL: the loss became NaN",
        ),
        (
            "exhausts memory",
            with_code_first("let big = vec![1u8; 1 << 46];\n    std::hint::black_box(&big);"),
            "crash",
            Some("out_of_memory"),
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
        assert_eq!(records[0]["outcome"], outcome, "{name}: {}", records[0]);
        assert_eq!(
            records[0]["runs"][0]["outcome"].as_str(),
            run_outcome,
            "{name}"
        );
        let error = records[0]["error"].as_str().unwrap_or_default();
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

/// The journal on a file system with no room left (a full tmpfs in a private mount namespace,
/// no root needed): the loop stops and says so, and the finished run survives in the pending
/// record, which the next start puts in the journal.
#[test]
fn a_full_disk_stops_the_loop_without_losing_the_finished_run() {
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
    let script = "mount -t tmpfs -o size=4k tmpfs \"$1\" && head -c 4096 /dev/zero > \"$1/filler\" && shift && exec \"$@\"";
    let out = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "bash",
            "-c",
            script,
            "_",
        ])
        .arg(&tiny)
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(Stdio::null())
        .output()
        .unwrap();
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
    let pending: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pending.json")).unwrap()).unwrap();
    let value = pending["runs"][0]["summary"]["val_bpb"].as_f64().unwrap();

    // Space again (the journal back on the ordinary disk): the run is recorded, then redone.
    std::fs::remove_file(dir.join("experiments.jsonl")).unwrap();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &["--baseline-runs", "1", "--max-experiments", "0"],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    assert_eq!(records[0]["outcome"], "interrupted");
    assert_eq!(
        records[0]["runs"][0]["summary"]["val_bpb"].as_f64(),
        Some(value)
    );
    assert_eq!(records[1]["outcome"], "keep");
    assert_eq!(records[1]["description"], "baseline");
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
    let spawn = || {
        loop_cmd(root, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // The agent is writing once the baseline is recorded and nothing is pending yet.
    let mut child = spawn();
    let start = Instant::now();
    let recorded =
        || std::fs::read_to_string(dir.join("experiments.jsonl")).is_ok_and(|t| t.ends_with('\n'));
    while !recorded() {
        assert!(child.try_wait().unwrap().is_none(), "the loop ended early");
        assert!(start.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!dir.join("pending.json").exists(), "still proposing");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(journal(root).len(), 1);
    let baseline_value = journal(root)[0]["val_bpb"].as_f64().unwrap();

    // The evaluation starts when the last step line (100%) is printed.
    let mut child = spawn();
    let log = dir.join("e0001/run1/train.log");
    wait_for(&log, &mut child, Duration::from_secs(300));
    let start = Instant::now();
    while !std::fs::read_to_string(&log).unwrap().contains("(100.0%)") {
        assert!(child.try_wait().unwrap().is_none(), "the loop ended early");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (ok, stdout, stderr) = run(&mut loop_cmd(root, &args));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    assert_eq!(records[0]["val_bpb"].as_f64(), Some(baseline_value));
    assert_eq!(records[1]["n"], 1);
    assert_eq!(records[1]["outcome"], "interrupted", "{}", records[1]);
    assert!(records[1]["commit"].is_string());
    assert_eq!(records[2]["retry_of"], 1);
    assert_ne!(records[2]["outcome"], "interrupted");
    assert!(!Path::new(&dir.join("pending.json")).exists());
}
