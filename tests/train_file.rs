//! The training file's edit contract, for real: the values a SET edit can write give a program
//! that builds and trains. Each variant sets several constants at once (every depth from 1 to
//! 12, each paired with a window pattern and a value of another constant that used to break the
//! shapes), with one-row steps and a one-row evaluation so that each runs in seconds. And a
//! change of shape constants that builds the same model is refused before it trains.

mod common;

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use autoresearch::agent::edit::{apply, constants, Edit, Proposal, Rejection};
use autoresearch::agent::engine::Engine;
use autoresearch::agent::inert::ShapeCheck;
use autoresearch::agent::ledger::Ledger;
use autoresearch::agent::prompt::Action;
use autoresearch::agent::propose::{Agent, DraftReply, Settings, Verdict};
use autoresearch::confine::Confinement;
use autoresearch::research::stop::Stop;
use autoresearch::trainer::build::build_source;
use autoresearch::trainer::run::{run, Outcome, RunSpec};
use common::{baseline, prepare_once, scratch};

/// A SET edit of each of `sets`.
fn edit(sets: &[(&str, &str)]) -> Proposal {
    Proposal {
        idea: "plausible values".into(),
        edits: sets
            .iter()
            .map(|(name, value)| Edit::Set {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
    }
}

/// `sets` applied to the baseline as a SET edit would.
fn variant(sets: &[(&str, &str)]) -> String {
    apply(&baseline(), &edit(sets)).unwrap_or_else(|e| panic!("{sets:?}: {e}"))
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
            describe: false,
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

/// The value of constant `name` in `source`.
fn value_of(source: &str, name: &str) -> String {
    constants(source)
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.value)
        .unwrap()
}

/// The harness's describe mode builds each file's model without training it: a change of shape
/// constants that builds the baseline's model again is refused with the model named, one that
/// changes the model goes on to its run, and beside a real change it is taken out.
#[test]
fn shape_changes_that_build_the_same_model_are_taken_out_before_training() {
    let data = prepare_once("prepared-cpu-describe", &["--eval-tokens", "256"]);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    let engine =
        Engine::load(&model, 0).expect("the default model (scripts/fetch-default-model.sh)");
    let mut agent = Agent {
        engine: &engine,
        program: autoresearch::program::load(None).unwrap(),
        settings: Settings {
            context: 2048,
            max_tokens: 64,
            temperature: 0.8,
            max_repairs: 0,
            slot: "test-inert".into(),
            confinement: Confinement::Required,
        },
        ledger: Ledger::default(),
        tuner: None,
        shapes: Some(ShapeCheck::new(&data, Stop::new())),
    };
    let source = baseline();
    let mut adopt = |sets: &[(&str, &str)]| {
        let lines: Vec<String> = sets.iter().map(|(n, v)| format!("SET {n} = {v}")).collect();
        let reply = DraftReply {
            action: Action::Set,
            reply: format!("IDEA: another shape\n{}\n", lines.join("\n")),
            reply_tokens: 8,
            generate_seconds: 0.0,
        };
        agent
            .adopt(&source, &reply, 1, &mut |_| ControlFlow::Continue(()))
            .unwrap()
    };
    let same_model = |model: &str| {
        assert!(
            model.starts_with("model: depth 4, width 256, 2 heads of 128 | 1 x 16 rows"),
            "{model}"
        )
    };
    let alone = [
        // round(256 / 129) = 2 heads of 128, as before.
        ("HEAD_DIM", "129"),
        // The CPU profile builds DEPTH_CPU blocks.
        ("DEPTH_GPU", "6"),
        // A step of 4,096 tokens holds 16 rows of 256: more rows per pass are clamped to 16.
        ("DEVICE_ROWS_CPU", "58"),
    ];
    for (name, value) in alone {
        match adopt(&[(name, value)]).verdict {
            Verdict::Rejected(Rejection::Inert { changes, model }) => {
                assert_eq!(
                    changes,
                    format!("{name} {} -> {value}", value_of(&source, name))
                );
                same_model(&model);
            }
            other => panic!("{name} = {value}: {other:?}"),
        }
    }
    // Four heads of 64: a new model.
    assert!(matches!(
        adopt(&[("HEAD_DIM", "64")]).verdict,
        Verdict::Valid(_)
    ));
    // Beside a real change, the inert one is taken out and the rest is what trains...
    let lr = [("MATRIX_LR", "0.05")];
    let only_lr = apply(&source, &edit(&lr)).unwrap();
    let mixed = adopt(&[("HEAD_DIM", "130"), lr[0]]);
    match mixed.verdict {
        Verdict::Valid(text) => assert_eq!(text, only_lr),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        mixed.idea.as_deref(),
        Some("another shape (HEAD_DIM 128 -> 130 taken out: the same model)")
    );
    // ...once: that rest is no new experiment a second time.
    match adopt(&[("HEAD_DIM", "131"), lr[0]]).verdict {
        Verdict::Rejected(Rejection::InertRest {
            changes,
            model,
            rest,
        }) => {
            assert_eq!(changes, "HEAD_DIM 128 -> 131");
            same_model(&model);
            assert_eq!(*rest, Rejection::AlreadyTried);
        }
        other => panic!("{other:?}"),
    }
}
