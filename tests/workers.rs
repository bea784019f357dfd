//! Several candidates at once on this machine (`--workers 2`, the local executor): the agent
//! proposes a round of distinct candidates from the best file, they train side by side, each on
//! its own share of the CPUs, and the round is settled by the parallel keep rule.

mod common;

use autoresearch::executor::ExecutorKind;
use autoresearch::research::record::{Outcome, Record, RunEnd};
use common::research::{journal, loop_cmd, repo, tsv};
use common::{baseline, run};

#[test]
fn two_local_workers_train_a_round_side_by_side_on_their_own_cpus() {
    let guard = repo(&baseline());
    let root = guard.path();
    let (ok, stdout, stderr) = run(&mut loop_cmd(
        root,
        &[
            "--workers",
            "2",
            "--max-experiments",
            "2",
            "--baseline-runs",
            "1",
            "--action",
            "set",
            "--controller",
            "off",
            "--proposals",
            "6",
        ],
    ));
    assert!(ok, "{stdout}\n{stderr}");
    let records = journal(root);
    let base = &records[0];
    assert_eq!(base.outcome, Outcome::Keep);
    let round: Vec<&Record> = records[1..].iter().collect();
    assert_eq!(round.len(), 2, "one round of two: {records:#?}");
    // Both made on the baseline, distinct, each run once.
    assert!(round.iter().all(|r| r.parent == base.commit.unwrap()));
    assert_ne!(round[0].file_sha256, round[1].file_sha256);
    let trained: Vec<&Record> = round
        .iter()
        .copied()
        .filter(|r| !r.runs.is_empty())
        .collect();
    assert_eq!(trained.len(), 2, "both candidates trained: {round:#?}");
    let cpus = std::thread::available_parallelism().unwrap().get();
    let mut lanes = Vec::new();
    for record in &trained {
        assert_eq!(record.runs.len(), 1);
        let run = &record.runs[0];
        let placed = run
            .placed
            .as_ref()
            .expect("a worker's run says which worker");
        assert_eq!(placed.executor, ExecutorKind::Local);
        lanes.push(placed.worker.unwrap());
        if run.outcome == RunEnd::Finished {
            // Each worker saw only its half of the machine.
            let device = &run.summary.as_ref().unwrap().device;
            assert!(
                device.ends_with(&format!("({} cores)", cpus / 2)),
                "{device}"
            );
        }
        // A result or a failure of the file: never interrupted.
        assert!(
            matches!(
                record.outcome,
                Outcome::Keep
                    | Outcome::Discard
                    | Outcome::Requeued
                    | Outcome::Superseded
                    | Outcome::Crash
                    | Outcome::Timeout
                    | Outcome::StoppedEarly
            ),
            "e{:04} {}: {:?}",
            record.n,
            record.outcome,
            record.error
        );
    }
    lanes.sort();
    assert_eq!(lanes, [0, 1]);
    // At most one of a round is kept; results.tsv keeps the reference's format.
    assert!(round.iter().filter(|r| r.outcome == Outcome::Keep).count() <= 1);
    let rows = tsv(root);
    assert_eq!(
        rows[0].join("\t"),
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription"
    );
    assert_eq!(rows.len(), 4);
    assert!(rows[1..]
        .iter()
        .all(|r| ["keep", "discard", "crash"].contains(&r[3].as_str())));
}
