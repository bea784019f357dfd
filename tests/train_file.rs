//! The training file's edit contract, for real: the values a SET edit can write give a program
//! that builds and trains. Each variant sets several constants at once (every depth from 1 to
//! 12, each paired with a window pattern and a value of another constant that used to break the
//! shapes), with one-row steps and a one-row evaluation so that each runs in seconds.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use autoresearch::agent::edit::{apply, Edit, Proposal};
use autoresearch::confine::Confinement;
use autoresearch::trainer::build::build_source;
use autoresearch::trainer::run::{run, Outcome, RunSpec};
use common::{baseline, prepare_once, scratch};

/// `sets` applied to the baseline as a SET edit would.
fn variant(sets: &[(&str, &str)]) -> String {
    let proposal = Proposal {
        idea: "plausible values".into(),
        edits: sets
            .iter()
            .map(|(name, value)| Edit::Set {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
    };
    apply(&baseline(), &proposal).unwrap_or_else(|e| panic!("{sets:?}: {e}"))
}

#[test]
fn the_plausible_values_of_the_constants_build_and_train() {
    let data = prepare_once("prepared-cpu-one-row-eval", &["--eval-tokens", "256"]);
    let cases: [&[(&str, &str)]; 12] = [
        &[
            ("DEPTH_CPU", "1"),
            ("WINDOW_PATTERN", "\"S\""),
            ("HEAD_DIM", "64"),
        ],
        &[
            ("DEPTH_CPU", "2"),
            ("WINDOW_PATTERN", "\"SL\""),
            ("ASPECT_RATIO", "32"),
        ],
        // 3 x 64 = 192 is one and a half heads of 128: two heads of 96, 192 wide.
        &[("DEPTH_CPU", "3"), ("WINDOW_PATTERN", "\"SSSL\"")],
        &[
            ("DEPTH_CPU", "4"),
            ("WINDOW_PATTERN", "\"L\""),
            ("HEAD_DIM", "96"),
        ],
        &[
            ("DEPTH_CPU", "5"),
            ("WINDOW_PATTERN", "\"SSL\""),
            ("SOFTCAP", "0.0"),
        ],
        &[
            ("DEPTH_CPU", "6"),
            ("WINDOW_PATTERN", "\"LS\""),
            ("WARMDOWN_RATIO", "0.0"),
            ("WARMUP_RATIO", "0.1"),
        ],
        // An odd head size: 7 x 64 = 448 holds round(448 / 63) = 7 heads of 64 (even: RoPE
        // rotates pairs).
        &[
            ("DEPTH_CPU", "7"),
            ("WINDOW_PATTERN", "\"s\""),
            ("HEAD_DIM", "63"),
        ],
        &[
            ("DEPTH_CPU", "8"),
            ("WINDOW_PATTERN", "\"SSSSSSSL\""),
            ("VE_GATE_CHANNELS", "1000"),
        ],
        &[
            ("DEPTH_CPU", "9"),
            ("WINDOW_PATTERN", "\"X\""),
            ("ASPECT_RATIO", "1"),
        ],
        &[
            ("DEPTH_CPU", "10"),
            ("WINDOW_PATTERN", "\"SSSL\""),
            ("DEVICE_ROWS_CPU", "0"),
        ],
        &[
            ("DEPTH_CPU", "11"),
            ("WINDOW_PATTERN", "\"SL\""),
            ("NEWTON_SCHULZ_STEPS", "0"),
            ("ROPE_BASE", "500.0"),
        ],
        &[("DEPTH_CPU", "12"), ("WINDOW_PATTERN", "\"SSSL\"")],
    ];
    let scratch = scratch();
    for (i, sets) in cases.iter().enumerate() {
        // One row per step: the shapes are under test here, not the learning.
        let one_row: &[(&str, &str)] = &[("TOKENS_PER_STEP_CPU", "256"), ("DEVICE_ROWS_CPU", "1")];
        let text = variant(&[one_row, sets].concat());
        let built = build_source(
            &text,
            Path::new("train.rs"),
            "plausible",
            Confinement::Required,
        )
        .unwrap_or_else(|e| panic!("{sets:?} does not build: {e}"));
        let run_dir = scratch.path().join(format!("variant-{i}"));
        let spec = RunSpec {
            binary: &built.binary,
            data_dir: &data,
            run_dir: &run_dir,
            seed: 0,
            budget: Some(0.01),
            timeout: Duration::from_secs(600),
            confinement: Confinement::Required,
            cpus: None,
            gpu: None,
            stop: &|| false,
        };
        let report = run(&spec, |_| ControlFlow::Continue(())).unwrap();
        match &report.outcome {
            Outcome::Finished(summary) => {
                assert!(summary.val_bpb.is_finite(), "{sets:?}: {summary:?}");
                eprintln!(
                    "{sets:?}: {} steps, val_bpb {:.3}",
                    summary.num_steps, summary.val_bpb
                );
            }
            other => panic!("{sets:?}: {other:?}\n{}", report.tail.join("\n")),
        }
    }
}
