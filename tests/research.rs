//! The research loop end to end through the real binary: the default small model proposing edits
//! in-process, real builds, real candle training on the CPU with a few-second budget, real git.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::research::{journal, loop_cmd, processes_with, repo, run_dir, tsv, wait_for, TAG};
use common::{autoresearch, baseline, run};
use serde_json::Value;

#[test]
fn the_loop_runs_records_and_keeps_only_what_helps() {
    let guard = repo(&baseline());
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[
            "--max-experiments",
            "3",
            "--baseline-runs",
            "2",
            "--action",
            "set",
            "--proposals",
            "6",
            // Less than the trainer alone needs: the agent leaves memory for every run.
            "--vram-budget",
            "1024",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("reached --max-experiments"), "{stdout}");

    let records = journal(root);
    let rows = tsv(root);
    assert_eq!(
        rows[0].join("\t"),
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    );
    assert!(rows.len() > 3, "a header and at least 3 rows:\n{rows:?}");
    let experiments = records
        .iter()
        .skip(1)
        .filter(|r| r["outcome"] != "interrupted");
    assert_eq!(experiments.count(), 3);

    // The baseline ran twice and measured the noise the rule uses.
    let base = &records[0];
    assert_eq!(base["description"], "baseline");
    assert_eq!(base["outcome"], "keep");
    assert_eq!(base["runs"].as_array().unwrap().len(), 2);
    assert_eq!(
        base["decision"]["baseline_runs"].as_array().unwrap().len(),
        2
    );

    // Every tsv row is a journal record with a commit, and agrees with it.
    let with_commit: Vec<&Value> = records.iter().filter(|r| r["commit"].is_string()).collect();
    assert_eq!(rows.len() - 1, with_commit.len());
    for (row, record) in rows[1..].iter().zip(&with_commit) {
        let status = row[3].as_str();
        assert!(["keep", "discard", "crash"].contains(&status), "{row:?}");
        assert!(record["commit"].as_str().unwrap().starts_with(&row[0]));
        match record["outcome"].as_str().unwrap() {
            "keep" | "discard" => {
                assert_eq!(status, record["outcome"].as_str().unwrap());
                let value = record["val_bpb"].as_f64().unwrap();
                assert_eq!(row[1], format!("{value:.6}"));
                // The recorded value is the harness's, read from result.json.
                let run = &record["runs"][0];
                let result: Value = serde_json::from_str(
                    &std::fs::read_to_string(
                        Path::new(run["log"].as_str().unwrap()).with_file_name("result.json"),
                    )
                    .unwrap(),
                )
                .unwrap();
                assert_eq!(result["val_bpb"], run["summary"]["val_bpb"]);
                if status == "discard" {
                    let d = &record["decision"];
                    let needed = d["margin"].as_f64().unwrap()
                        / (record["runs"].as_array().unwrap().len() as f64).sqrt();
                    assert!(d["improvement"].as_f64().unwrap() <= needed, "{d}");
                }
            }
            _ => assert_eq!((status, row[1].as_str()), ("crash", "0.000000")),
        }
    }

    // The scheduler's RAM path: the agent was unloaded for each training run, its memory went
    // back, and it was loaded again afterwards.
    let trained: Vec<&Value> = records
        .iter()
        .filter(|r| !r["runs"].as_array().unwrap().is_empty())
        .collect();
    assert!(trained.len() >= 2);
    for record in &trained {
        let s = &record["schedule"];
        assert_eq!(s["decision"]["plan"]["plan"], "evict", "{s}");
        assert!(s["move_seconds"].as_f64().unwrap() >= 0.0);
        assert!(s["reload_seconds"].as_f64().unwrap() > 0.0);
        assert_eq!(s["memory_returned"], true, "{s}");
        assert!(s["kept_after_unload"].as_u64().unwrap() <= 64 << 20, "{s}");
        let rss = |key: &str| s[key]["own_rss"].as_u64().unwrap();
        assert!(rss("after_move") < rss("before"), "{s}");
    }
    assert!(trained[1..]
        .iter()
        .all(|r| r["schedule"]["decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("the trainer alone needs")));

    // The branch holds exactly the kept commits; every experiment's commit is still reachable.
    let git = git2::Repository::open(root).unwrap();
    let tip = git
        .find_reference(&format!("refs/heads/autoresearch/{TAG}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut on_branch = Vec::new();
    let mut commit = tip;
    while commit.parent_count() > 0 {
        on_branch.push(commit.id().to_string());
        commit = commit.parent(0).unwrap();
    }
    on_branch.reverse();
    let kept: Vec<String> = records
        .iter()
        .skip(1)
        .filter(|r| r["outcome"] == "keep")
        .map(|r| r["commit"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on_branch, kept);
    for record in &with_commit {
        let n = record["n"].as_u64().unwrap();
        let reference = git
            .find_reference(&format!("refs/autoresearch/{TAG}/{n:04}"))
            .unwrap();
        assert_eq!(
            reference.target().unwrap().to_string(),
            record["commit"].as_str().unwrap()
        );
    }
    // The user's checkout is untouched.
    assert_eq!(
        std::fs::read_to_string(root.join("train/src/train.rs")).unwrap(),
        baseline()
    );
    assert_eq!(
        git.head().unwrap().peel_to_commit().unwrap().parent_count(),
        0
    );

    // The report reads the journal: a table with every experiment and a PNG.
    let (ok, stdout, stderr) = run(autoresearch(&["report", "--tag", TAG, "--repo"]).arg(root));
    assert!(ok, "{stderr}");
    for record in &records {
        let n = record["n"].as_u64().unwrap();
        assert!(stdout.contains(&format!("e{n:04}")), "{stdout}");
    }
    assert!(
        stdout.contains("experiments after the baseline"),
        "{stdout}"
    );
    assert!(
        stdout.contains("host RAM: the agent stayed for 0 experiments, was unloaded for"),
        "{stdout}"
    );
    let png = std::fs::read(run_dir(root).join("progress.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // The agent was evicted for every run, so it wrote nothing ahead.
    assert!(records.iter().all(|r| r["draft"].is_null()));
}

/// Think while training: with the agent resident, the next proposal is written during each
/// experiment's runs, then checked against the file that won before it is used.
#[test]
fn the_agent_drafts_the_next_proposal_while_training() {
    let guard = repo(&baseline());
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[
            "--max-experiments",
            "3",
            "--baseline-runs",
            "1",
            "--action",
            "set",
            "--proposals",
            "6",
            "--think-while-training",
            "always",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    // The baseline's first run has the device to itself (the trainer's peak is not known yet);
    // the agent stays loaded beside every later run.
    assert_eq!(records[0]["schedule"]["decision"]["plan"]["plan"], "evict");
    let mut drafts = 0;
    for pair in records.windows(2) {
        let (before, record) = (&pair[0], &pair[1]);
        let resident = before["schedule"]["decision"]["plan"]["plan"] == "resident";
        let draft = &record["draft"];
        // A draft exists exactly when the experiment before it trained with the agent loaded.
        assert_eq!(!draft.is_null(), resident, "{before}\n{record}");
        if draft.is_null() {
            continue;
        }
        drafts += 1;
        eprintln!("e{}: draft {draft}", record["n"]);
        assert_eq!(draft["during"], before["n"]);
        let (seconds, waited) = (
            draft["seconds"].as_f64().unwrap(),
            draft["waited_seconds"].as_f64().unwrap(),
        );
        assert!(
            seconds > 0.0 && (0.0..=seconds).contains(&waited),
            "{draft}"
        );
        assert!(draft["replies"].as_u64().unwrap() >= 1, "{draft}");
        match draft["outcome"].as_str().unwrap() {
            // The drafted reply was the experiment's first proposal and it was valid.
            "used" => {
                assert!(record["rejections"].as_array().unwrap().is_empty());
                assert!(record["commit"].is_string());
            }
            // It no longer applied (or was already tried), or it applied and failed: the
            // rejection or the compiler's error is recorded like any proposal's.
            "stale" | "failed" => assert!(record["proposals"].as_u64().unwrap() >= 1),
            "none" => {}
            other => panic!("unknown draft outcome {other}"),
        }
    }
    assert!(
        drafts >= 1,
        "no experiment trained after the first: {records:?}"
    );
    let (ok, stdout, stderr) = run(autoresearch(&["report", "--tag", TAG, "--repo"]).arg(root));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("think while training: "), "{stdout}");
}

#[test]
fn a_stopped_or_killed_loop_resumes_without_losing_results() {
    let guard = repo(&baseline());
    let root = guard.path();
    let dir = run_dir(root);
    let first_run = |child: &mut Child| {
        wait_for(
            &dir.join("e0001/run1/train.log"),
            child,
            Duration::from_secs(600),
        );
    };

    // Ctrl-C during the first experiment's training: recorded as interrupted, exit cleanly.
    let mut child = loop_cmd(
        root,
        &[
            "--max-experiments",
            "2",
            "--baseline-runs",
            "1",
            "--action",
            "set",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    first_run(&mut child);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped"), "{stdout}");
    let records = journal(root);
    assert_eq!(records.len(), 2);
    let baseline_value = records[0]["val_bpb"].as_f64().unwrap();
    assert_eq!(records[1]["outcome"], "interrupted");
    assert!(records[1]["commit"].is_string());
    // With the baseline's peak known and plenty of memory, the agent stayed loaded.
    let schedule = &records[1]["schedule"];
    assert_eq!(
        schedule["decision"]["plan"]["plan"], "resident",
        "{schedule}"
    );
    assert!(!dir.join("pending.json").exists());

    // kill -9 during the retry's training: the training program dies with the loop.
    let mut child = loop_cmd(
        root,
        &[
            "--max-experiments",
            "1",
            "--baseline-runs",
            "1",
            "--action",
            "set",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for(
        &dir.join("e0002/run1/train.log"),
        &mut child,
        Duration::from_secs(300),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The training program's environment names its run folder.
    let trainer = format!("AUTORESEARCH_RUN_DIR={}", dir.join("e0002").display());
    let start = Instant::now();
    while !processes_with(&trainer).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the training program outlived the killed loop: {:?}",
            processes_with(&trainer)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(dir.join("pending.json").exists());
    // A crash in the middle of a journal write leaves a torn last line.
    let mut text = std::fs::read_to_string(dir.join("experiments.jsonl")).unwrap();
    text.push_str("{\"n\":9,\"outcome\":\"kee");
    std::fs::write(dir.join("experiments.jsonl"), text).unwrap();

    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[
            "--max-experiments",
            "1",
            "--baseline-runs",
            "1",
            "--action",
            "set",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("cut short by a crash"), "{stdout}");
    let records = journal(root);
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        &outcomes[..3],
        ["keep", "interrupted", "interrupted"],
        "{outcomes:?}"
    );
    assert_eq!(records[0]["val_bpb"].as_f64().unwrap(), baseline_value);
    assert_eq!(records[2]["retry_of"], 1);
    assert_ne!(records[2]["commit"], records[1]["commit"]);
    // The retry was not retried again; a fresh experiment followed.
    assert_eq!(records.len(), 4, "{outcomes:?}");
    assert!(records[3]["retry_of"].is_null());
    assert_ne!(records[3]["outcome"], "interrupted");
    let torn: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(torn.len(), 1);
    assert!(!dir.join("pending.json").exists());
    let rows = tsv(root);
    assert_eq!(
        rows.len(),
        1 + records
            .iter()
            .filter(|r| r["commit"].is_string() && r["outcome"] != "interrupted")
            .count()
    );
}

#[test]
fn a_second_loop_on_the_same_tag_is_refused() {
    let guard = repo(&baseline());
    let root = guard.path();
    let mut first = loop_cmd(root, &["--baseline-runs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &run_dir(root).join("e0000/run1/train.log"),
        &mut first,
        Duration::from_secs(300),
    );
    let (ok, _, stderr) = run(&mut loop_cmd(root, &["--baseline-runs", "1"]));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!ok);
    assert!(
        stderr.contains("already being run by another autoresearch (pid"),
        "{stderr}"
    );
}

#[test]
fn a_fake_summary_line_does_not_change_the_recorded_result() {
    let source = baseline().replacen(
        "fn train(h: &mut Harness) -> harness::Result<Trained> {",
        "fn train(h: &mut Harness) -> harness::Result<Trained> {\n    println!(\"---\\nval_bpb:          0.000001\");",
        1,
    );
    assert!(source.contains("0.000001"));
    let guard = repo(&source);
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &["--max-experiments", "0", "--baseline-runs", "1"],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    let value = records[0]["val_bpb"].as_f64().unwrap();
    assert!(value > 0.5, "the printed 0.000001 was taken: {value}");
    let log = std::fs::read_to_string(run_dir(root).join("e0000/run1/train.log")).unwrap();
    assert!(log.contains("val_bpb:          0.000001"));
}

#[test]
fn a_hanging_baseline_is_killed_and_recorded() {
    let source = baseline().replacen(
        "fn train(h: &mut Harness) -> harness::Result<Trained> {",
        "fn train(h: &mut Harness) -> harness::Result<Trained> {\n    std::thread::sleep(std::time::Duration::from_secs(3600));",
        1,
    );
    let guard = repo(&source);
    let root = guard.path();
    let start = Instant::now();
    let (ok, _, stderr) = run(&mut loop_cmd(
        root,
        &["--baseline-runs", "1", "--timeout", "8"],
    ));
    assert!(!ok);
    assert!(
        stderr.contains("the baseline training run failed (Timeout"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(240));
    let records = journal(root);
    assert_eq!(records[0]["outcome"], "timeout");
    assert_eq!(records[0]["runs"][0]["outcome"], "timed_out");
}
