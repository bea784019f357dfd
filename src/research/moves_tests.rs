//! Every move the controller can ask for, answered by the real default model through the loop's
//! own request, context and sampler, and a repeated reply refused as a duplicate before any
//! build. The loop's choice of move is tested on scripted histories (`controller`, `loop_tests`);
//! this is the part only a real model can show: that it answers each request in the form asked.

use std::ops::ControlFlow;

use super::changes::Change;
use super::context::Context;
use super::controller::{Category, Move};
use super::history::History;
use super::record::tests::record;
use super::record::{Outcome, Record};
use super::request::tests::choice;
use super::request::Request;
use super::settings::Settings;
use super::sourcing::Ask;
use super::tuning::Values;
use crate::agent::edit::Rejection;
use crate::agent::engine::Engine;
use crate::agent::ledger::Ledger;
use crate::agent::prompt::Action;
use crate::agent::propose::{self, Agent, Attempt, DraftReply, Verdict};
use crate::confine::Confinement;

const TRAIN: &str = include_str!("../../train/src/train.rs");

fn set(name: &str, from: &str, to: &str) -> Change {
    Change::Set {
        name: name.into(),
        from: from.into(),
        to: to.into(),
    }
}

/// A night so far: the baseline, a kept learning-rate change, and two discards within the noise
/// of the best.
fn night() -> Vec<Record> {
    let mut baseline = record(0, Outcome::Keep, Some(1.80));
    baseline.description = "baseline".into();
    let mut kept = record(1, Outcome::Keep, Some(1.75));
    kept.changes = vec![set("MATRIX_LR", "0.04", "0.05")];
    let mut near = record(2, Outcome::Discard, Some(1.755));
    near.changes = vec![set("WARMDOWN_RATIO", "0.5", "0.6")];
    let mut other = record(3, Outcome::Discard, Some(1.756));
    other.changes = vec![set("EMBEDDING_LR", "0.6", "0.5")];
    vec![baseline, kept, near, other]
}

#[test]
fn the_real_model_answers_every_move_in_the_form_asked_and_a_repeat_is_refused() {
    let engine = Engine::load(&crate::cli::default_model(), 0).expect("the default model");
    let program = crate::program::load(None).unwrap();
    let records = night();
    let history = History::new(&records);
    let settings = Settings {
        controller: true,
        sampler: true,
        proposals: 2,
        ..super::loop_tests::settings()
    };
    let n = history.next_n();
    let context = Context::new(&history, settings.reset_after, TRAIN);
    let moves = [
        choice(Move::Tune, Some(Category::Schedule), vec![]),
        choice(Move::Explore, Some(Category::Architecture), vec![]),
        choice(Move::Refine, Some(Category::Optimizer), vec![1]),
        choice(Move::Combine, None, vec![2, 3]),
        choice(Move::Ablate, None, vec![]),
    ];
    // Each move's values, as the loop gives them: the sampler's, and for the combination of two
    // near-misses that set constants, the values they had.
    let tuners: Vec<Values> = moves
        .iter()
        .map(|c| Values::new(&history, n, Some(c), TRAIN))
        .collect();
    let mut agent = Agent {
        engine: &engine,
        program: program.clone(),
        settings: propose::Settings {
            context: 4096,
            max_tokens: 256,
            temperature: 0.8,
            max_repairs: 0,
            slot: "test-moves".into(),
            confinement: Confinement::Required,
        },
        ledger: Ledger::default(),
        tuner: None,
        shapes: None,
    };
    // Each valid attempt with its move's index and the seed its values were drawn with.
    let mut valid: Vec<(Attempt, usize, u32)> = Vec::new();
    for (i, choice) in moves.iter().enumerate() {
        agent.tuner = Some(&tuners[i]);
        let request = Request::new(Some(choice), &settings, n, &history, TRAIN);
        let ask = Ask {
            n,
            program: &program,
            source: TRAIN,
            context: &context,
            request: &request,
            tuner: Some(&tuners[i]),
        };
        let mut answered = 0;
        for &(action, count) in request.plan.iter().filter(|(_, count)| *count > 0) {
            let input = ask.prompt(action);
            assert_eq!(input.task, request.task.as_deref());
            let seed = 100 * i as u32;
            let (_, attempts) = agent
                .propose(TRAIN, &input, count, seed, &mut |_| {
                    ControlFlow::Continue(())
                })
                .unwrap();
            answered += attempts.len();
            for (j, a) in attempts.into_iter().enumerate() {
                let kind = choice.kind;
                assert!(a.reply.starts_with("IDEA:"), "{kind}: {}", a.reply);
                // A move that names its constants gets replies that name only those.
                if let (Some(names), Action::Set | Action::Tune) = (&request.names, action) {
                    for line in a.reply.lines().skip(1).filter(|l| !l.is_empty()) {
                        let named = line.split_whitespace().nth(1).unwrap_or("");
                        assert!(names.iter().any(|n| n == named), "{kind}: {line}");
                    }
                }
                if let (Move::Combine, Verdict::Valid(file)) = (kind, &a.verdict) {
                    // The near-misses' own values, whichever constants the reply named.
                    assert_eq!(action, Action::Tune, "{}", a.reply);
                    for (name, from, to) in [
                        ("WARMDOWN_RATIO", "0.5", "0.6"),
                        ("EMBEDDING_LR", "0.6", "0.5"),
                    ] {
                        let value = |v| format!("const {name}: f64 = {v};");
                        assert!(
                            file.contains(&value(to)) || file.contains(&value(from)),
                            "{name}"
                        );
                    }
                    assert_ne!(file, TRAIN);
                }
                if a.is_valid() {
                    // `propose` evaluates its j-th reply with this seed.
                    valid.push((a, i, seed + 1000 + j as u32));
                }
            }
        }
        assert_eq!(
            answered, 2,
            "{}: every proposal asked for comes back",
            choice.kind
        );
    }
    // The sampler gives TUNE replies their values, so at least those apply and compile.
    assert!(
        valid.iter().any(|(a, _, _)| a.action == Action::Tune),
        "{:?}",
        valid.iter().map(|(a, _, _)| &a.reply).collect::<Vec<_>>()
    );
    // The same reply again makes a file already tried: refused before a build.
    let (first, i, seed) = valid
        .iter()
        .find(|(a, _, _)| a.action != Action::Tune)
        .unwrap_or(&valid[0]);
    agent.tuner = Some(&tuners[*i]);
    let again = agent
        .adopt(
            TRAIN,
            &DraftReply {
                action: first.action,
                reply: first.reply.clone(),
                reply_tokens: 0,
                generate_seconds: 0.0,
            },
            // A TUNE reply draws the same values again with the same seed.
            *seed,
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert!(
        matches!(
            again.verdict,
            Verdict::Rejected(Rejection::AlreadyTried | Rejection::NearDuplicate { .. })
        ),
        "{:?}",
        again.verdict
    );
    assert_eq!(again.build_seconds, 0.0);
}
