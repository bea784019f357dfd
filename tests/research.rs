//! The research loop end to end through the real binary: the default small model proposing edits
//! in-process, real builds, real candle training on the CPU with a few-second budget, real git.

mod browser;
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use autoresearch::research::changes::Change;
use autoresearch::research::controller::Move;
use autoresearch::research::journal::Journal;
use autoresearch::research::record::{CommitId, DraftOutcome, Outcome, Record, RecordKind, RunEnd};
use autoresearch::scheduler::policy::Plan;
use autoresearch::units::Bytes;
use browser::Browser;
use common::research::{
    journal, loop_cmd, prepared, processes_with, repo, run_dir, spawn_loop, tsv, wait_for_line, TAG,
};
use common::{autoresearch, baseline, run};

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
    // What a watcher reads: the run as a whole, and that the loop has ended.
    let live = autoresearch::research::live::read(&run_dir(root)).expect("live.json");
    assert_eq!(live.phase, autoresearch::research::live::Phase::Ended);
    assert_eq!(
        (live.run.profile.as_str(), live.run.tag.as_str()),
        ("cpu", TAG)
    );

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
        .filter(|r| r.outcome != Outcome::Interrupted);
    assert_eq!(experiments.count(), 3);

    // The baseline ran twice and measured the noise the rule uses.
    let base = &records[0];
    assert_eq!(base.kind, RecordKind::Baseline);
    assert_eq!(base.description, "baseline");
    assert_eq!(base.outcome, Outcome::Keep);
    assert_eq!(base.runs.len(), 2);
    assert_eq!(base.decision.as_ref().unwrap().baseline_runs.len(), 2);
    assert!(records[1..]
        .iter()
        .all(|r| r.kind == RecordKind::Experiment));

    // Every tsv row is a journal record with a commit, and agrees with it.
    let with_commit: Vec<&Record> = records.iter().filter(|r| r.commit.is_some()).collect();
    assert_eq!(rows.len() - 1, with_commit.len());
    for (row, record) in rows[1..].iter().zip(&with_commit) {
        let status = row[3].as_str();
        assert_eq!(status, record.outcome.tsv_status(), "{row:?}");
        assert_eq!(row[0], record.commit.unwrap().short());
        if record.outcome.is_judged() {
            let value = record.val_bpb.unwrap();
            assert_eq!(row[1], format!("{value:.6}"));
            // The recorded value is the harness's, read from result.json.
            let run = &record.runs[0];
            let result: harness::summary::Summary = serde_json::from_str(
                &std::fs::read_to_string(run.log.with_file_name("result.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(
                Some(result.val_bpb),
                run.summary.as_ref().map(|s| s.val_bpb)
            );
            if record.outcome == Outcome::Discard {
                let d = record.decision.as_ref().unwrap();
                // Paired judging (the default) against the best file's latest runs, one of
                // them made beside this candidate when its first run looked better.
                let own = record.finished_values().len() as f64;
                let needed = match d.reference_runs.len() {
                    0 => d.margin / own.sqrt(),
                    reference => d.margin * (1.0 / own + 1.0 / reference as f64).sqrt(),
                };
                assert!(d.improvement <= needed, "{d:?}");
            }
        } else {
            assert_eq!((status, row[1].as_str()), ("crash", "0.000000"));
        }
    }

    // The scheduler's RAM path: the agent was unloaded for each training run, its memory went
    // back, and it was loaded again afterwards.
    let trained: Vec<&Record> = records.iter().filter(|r| !r.runs.is_empty()).collect();
    assert!(trained.len() >= 2);
    for record in &trained {
        let s = record.schedule.as_ref().unwrap();
        assert_eq!(s.decision.plan, Plan::Evict, "{s:?}");
        assert!(s.move_seconds.unwrap() >= 0.0);
        assert!(s.reload_seconds.unwrap() > 0.0);
        assert_eq!(s.memory_returned, Some(true), "{s:?}");
        assert!(s.kept_after_unload.unwrap() <= Bytes::mib(64), "{s:?}");
        assert!(s.after_move.unwrap().own_rss < s.before.own_rss, "{s:?}");
    }
    assert!(trained[1..].iter().all(|r| r
        .schedule
        .as_ref()
        .unwrap()
        .decision
        .reason
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
        .filter(|r| r.outcome == Outcome::Keep)
        .map(|r| r.commit.unwrap().to_string())
        .collect();
    assert_eq!(on_branch, kept);
    for record in &with_commit {
        let reference = git
            .find_reference(&format!("refs/autoresearch/{TAG}/{:04}", record.n))
            .unwrap();
        assert_eq!(reference.target(), record.commit.map(|c| c.0));
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
        assert!(stdout.contains(&format!("e{:04}", record.n)), "{stdout}");
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
    assert!(records.iter().all(|r| r.draft.is_none()));
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
    let plan = |r: &Record| r.schedule.as_ref().map(|s| s.decision.plan);
    assert_eq!(plan(&records[0]), Some(Plan::Evict));
    let mut drafts = 0;
    for pair in records.windows(2) {
        let (before, record) = (&pair[0], &pair[1]);
        let resident = plan(before) == Some(Plan::Resident);
        // A draft exists exactly when the experiment before it trained with the agent loaded.
        assert_eq!(record.draft.is_some(), resident, "{before:?}\n{record:?}");
        let Some(draft) = &record.draft else { continue };
        drafts += 1;
        eprintln!("e{}: draft {draft:?}", record.n);
        assert_eq!(draft.during, before.n);
        assert!(
            draft.seconds > 0.0 && (0.0..=draft.seconds).contains(&draft.waited_seconds),
            "{draft:?}"
        );
        assert!(draft.replies >= 1, "{draft:?}");
        match draft.outcome {
            // The drafted reply was the experiment's first proposal and it was valid.
            DraftOutcome::Used => {
                assert!(record.rejections.is_empty());
                assert!(record.commit.is_some());
            }
            // It no longer applied (or was already tried), or it applied and failed: the
            // rejection or the compiler's error is recorded like any proposal's.
            DraftOutcome::Stale | DraftOutcome::Failed => assert!(record.proposals >= 1),
            DraftOutcome::NothingApplied => {}
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
    let args = ["--baseline-runs", "1", "--action", "set"];

    // Ctrl-C during the first experiment's training: recorded as interrupted, exit cleanly.
    let (mut child, mut stdout) =
        spawn_loop(root, &[&args[..], &["--max-experiments", "2"]].concat());
    wait_for_line(&mut stdout, "e0001 run 1: training");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    let records = journal(root);
    assert_eq!(records.len(), 2);
    let baseline_value = records[0].val_bpb.unwrap();
    assert_eq!(records[1].outcome, Outcome::Interrupted);
    assert!(records[1].commit.is_some());
    // With the baseline's peak known and plenty of memory, the agent stayed loaded.
    let schedule = records[1].schedule.as_ref().unwrap();
    assert_eq!(schedule.decision.plan, Plan::Resident, "{schedule:?}");
    assert!(!dir.join("pending.json").exists());

    // kill -9 during the retry's training: the training program dies with the loop.
    let (mut child, mut stdout) =
        spawn_loop(root, &[&args[..], &["--max-experiments", "1"]].concat());
    wait_for_line(&mut stdout, "e0002 run 1: training");
    child.kill().unwrap();
    child.wait().unwrap();
    // The training program's environment names its run folder; it dies with the loop.
    let trainer = format!("AUTORESEARCH_RUN_DIR={}", dir.join("e0002").display());
    for pid in processes_with(&trainer) {
        assert!(
            common::wait_exit(pid.parse().unwrap(), Duration::from_secs(5)),
            "the training program {pid} outlived the killed loop"
        );
    }
    assert!(dir.join("pending.json").exists());
    // A crash in the middle of a journal write leaves a torn last line.
    let mut text = std::fs::read_to_string(dir.join("experiments.jsonl")).unwrap();
    text.push_str("{\"n\":9,\"outcome\":\"kee");
    std::fs::write(dir.join("experiments.jsonl"), text).unwrap();

    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[&args[..], &["--max-experiments", "1"]].concat(),
    ));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("cut short by a crash"), "{stdout}");
    let records = journal(root);
    let outcomes: Vec<Outcome> = records.iter().map(|r| r.outcome).collect();
    assert_eq!(
        &outcomes[..3],
        [Outcome::Keep, Outcome::Interrupted, Outcome::Interrupted],
        "{outcomes:?}"
    );
    assert_eq!(records[0].val_bpb.unwrap(), baseline_value);
    assert_eq!(records[2].retry_of, Some(1));
    assert_ne!(records[2].commit, records[1].commit);
    // The retry was not retried again; a fresh experiment followed.
    assert_eq!(records.len(), 4, "{outcomes:?}");
    assert!(records[3].retry_of.is_none());
    assert_ne!(records[3].outcome, Outcome::Interrupted);
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
            .filter(|r| r.commit.is_some() && r.outcome != Outcome::Interrupted)
            .count()
    );
}

#[test]
fn a_second_loop_on_the_same_tag_is_refused_and_the_first_is_watched_in_a_browser() {
    let guard = repo(&baseline());
    let root = guard.path();
    let watched = ["--dashboard", "--listen", "127.0.0.1:0"];
    let (mut first, mut stdout) =
        spawn_loop(root, &[&["--baseline-runs", "1"][..], &watched].concat());
    let url = line_starting(&mut stdout, "dashboard: ");
    wait_for_line(&mut stdout, "e0000 run 1: training");
    let (ok, _, stderr) = run(&mut loop_cmd(root, &["--baseline-runs", "1"]));
    // The first loop's page follows it live: the baseline training, then its record and the
    // agent at work on the next experiment.
    let mut browser = Browser::launch(1280, 1000, false);
    browser.open(&url);
    let minutes = Duration::from_secs(180);
    browser.wait_for(
        "document.getElementById('status').textContent.startsWith('live: e0000')",
        minutes,
        || {},
    );
    browser.wait_for(
        "document.querySelectorAll('#experiments tbody tr').length === 1",
        minutes,
        || {},
    );
    browser.wait_for(
        "document.getElementById('status').textContent.startsWith('live: e0001')",
        minutes,
        || {},
    );
    browser
        .screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard/loop.png"));
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
    let value = records[0].val_bpb.unwrap();
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
        stderr.contains("the baseline training run failed (timeout:"),
        "{stderr}"
    );
    assert!(start.elapsed() < Duration::from_secs(240));
    let records = journal(root);
    assert_eq!(records[0].outcome, Outcome::Timeout);
    assert_eq!(records[0].runs[0].outcome, RunEnd::TimedOut);
}

/// The search controller above the real default model: every experiment records the move it
/// was asked for and why, the first is a hyperparameter move whose values come from the sampler,
/// every run keeps its loss curve, and report replays early stopping on those curves.
#[test]
fn the_controller_chooses_each_move_and_the_sampler_gives_the_values() {
    let guard = repo(&baseline());
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[
            "--max-experiments",
            "3",
            "--baseline-runs",
            "1",
            "--proposals",
            "4",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    let experiments: Vec<&Record> = records
        .iter()
        .filter(|r| r.kind == RecordKind::Experiment)
        .collect();
    assert!(experiments.len() >= 3);
    for r in &experiments {
        let choice = r
            .choice
            .as_ref()
            .expect("every experiment has the controller's choice");
        assert!(!choice.reason.is_empty());
        assert!(
            stdout.contains(&format!("e{:04}: {}: {}", r.n, choice.kind, choice.reason)),
            "{stdout}"
        );
        assert!(r.constants.is_some() == r.commit.is_some(), "{r:?}");
    }
    let first = experiments[0];
    assert_eq!(first.choice.as_ref().unwrap().kind, Move::Tune);
    if first.commit.is_some() {
        // A TUNE reply: the file differs from the baseline in the constants' values only.
        assert!(!first.changes.is_empty());
        assert!(
            first
                .changes
                .iter()
                .all(|c| matches!(c, Change::Set { .. })),
            "{:?}",
            first.changes
        );
        assert_eq!(first.skeleton_sha256, records[0].skeleton_sha256);
    }
    for r in records.iter().filter(|r| !r.runs.is_empty()) {
        assert!(
            r.runs.iter().all(|run| run.curve.len() >= 2),
            "e{:04} has no curve",
            r.n
        );
    }
    let (ok, stdout, stderr) = run(autoresearch(&["report", "--tag", TAG, "--repo"]).arg(root));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("early stopping replayed"), "{stdout}");
}

/// `confirm` on a run with a keep: the kept commit and the baseline run in turn (ABBA), each pair
/// on a seed of its own, and the improvement goes into the journal with its 95 % interval;
/// `report` shows it.
#[test]
fn confirm_runs_the_best_and_the_baseline_in_turn_and_records_the_interval() {
    let guard = repo(&baseline());
    let root = guard.path();
    // The run so far, written directly: the baseline and one kept change on the run's branch.
    let git = git2::Repository::open(root).unwrap();
    let start = git.head().unwrap().peel_to_commit().unwrap();
    // A wider model (width 4 x 96 = 384, three heads of 128 instead of two): its runs report
    // more parameters, so each run shows which file it was.
    let better = baseline().replace(
        "const ASPECT_RATIO: usize = 64;",
        "const ASPECT_RATIO: usize = 96;",
    );
    assert_ne!(better, baseline());
    // The start commit's tree with the better file in it.
    let blob = git.blob(better.as_bytes()).unwrap();
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert("train/src/train.rs", blob, git2::FileMode::Blob);
    let tree = git
        .find_tree(update.create_updated(&git, &start.tree().unwrap()).unwrap())
        .unwrap();
    let me = git2::Signature::now("test", "test@localhost").unwrap();
    let kept = git
        .commit(
            Some(&format!("refs/heads/autoresearch/{TAG}")),
            &me,
            &me,
            "ASPECT_RATIO 96",
            &tree,
            &[&start],
        )
        .unwrap();
    let (base, kept) = (CommitId(start.id()), CommitId(kept));
    let record = |n: usize, kind, parent, commit, val_bpb| {
        let mut r = Record::new(n, kind, parent, "2026-12-02T00:00:00Z".into());
        r.commit = Some(commit);
        r.outcome = Outcome::Keep;
        r.val_bpb = Some(val_bpb);
        r.budget_seconds = Some(3.0);
        r.description = format!("record {n}");
        r
    };
    std::fs::create_dir_all(run_dir(root)).unwrap();
    let (mut written, _) = Journal::open(&run_dir(root)).unwrap();
    written
        .append(record(0, RecordKind::Baseline, base, base, 2.0))
        .unwrap();
    written
        .append(record(1, RecordKind::Experiment, base, kept, 1.9))
        .unwrap();
    drop(written);

    let (ok, stdout, stderr) = run(autoresearch(&["confirm", "--tag", TAG, "--runs", "2"])
        .arg("--repo")
        .arg(root)
        .arg("--data-dir")
        .arg(prepared()));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("confirm e0001 against the baseline, 2 runs each with 3s per run"),
        "{stdout}"
    );
    for (run, name) in [(1, "baseline"), (2, "best"), (3, "best"), (4, "baseline")] {
        assert!(
            stdout.contains(&format!("e0002 run {run}: the {name} val_bpb ")),
            "{stdout}"
        );
    }
    let records = journal(root);
    let confirmation = &records[2];
    assert_eq!(confirmation.kind, RecordKind::Confirmation);
    assert!(matches!(
        confirmation.outcome,
        Outcome::Confirmed | Outcome::NotConfirmed
    ));
    let runs_of = |commit| {
        confirmation
            .runs
            .iter()
            .filter(|r| r.commit == Some(commit) && r.summary.is_some())
            .count()
    };
    assert_eq!((runs_of(base), runs_of(kept)), (2, 2));
    // Each file ran as itself (both are built before the runs: the second build must not
    // replace the first's program).
    let params_of = |commit| {
        let mut sizes: Vec<u64> = confirmation
            .runs
            .iter()
            .filter(|r| r.commit == Some(commit))
            .map(|r| (r.summary.as_ref().unwrap().num_params_m * 1e6) as u64)
            .collect();
        sizes.dedup();
        sizes
    };
    let (base_params, kept_params) = (params_of(base), params_of(kept));
    assert_eq!((base_params.len(), kept_params.len()), (1, 1));
    assert!(
        kept_params[0] > base_params[0],
        "the best file is wider: {kept_params:?} vs {base_params:?}"
    );
    // Each pair drew its own initialisation: the two pairs of one file differ.
    let bpb = |i: usize| confirmation.runs[i].summary.as_ref().unwrap().val_bpb;
    assert_ne!(bpb(0), bpb(3));
    let interval = confirmation
        .interval
        .expect("an interval from two runs each");
    assert!(interval.low <= interval.improvement && interval.improvement <= interval.high);
    assert_eq!(
        interval.excludes_zero(),
        confirmation.outcome == Outcome::Confirmed
    );

    let (ok, report, stderr) = run(autoresearch(&["report", "--tag", TAG, "--repo"]).arg(root));
    assert!(ok, "{stderr}");
    assert!(
        report.contains("confirm e0001 against the baseline, 2 runs each: improvement "),
        "{report}"
    );
}

/// The rest of the first line of the loop's output that starts with `prefix`.
fn line_starting(
    stdout: &mut std::io::BufReader<std::process::ChildStdout>,
    prefix: &str,
) -> String {
    use std::io::BufRead;
    loop {
        let mut line = String::new();
        let read = stdout.read_line(&mut line).unwrap();
        assert!(read > 0, "the loop ended before a line starting {prefix:?}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}
