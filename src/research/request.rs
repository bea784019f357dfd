//! What an experiment asks of the agent: the reply formats and how many of each, the task in
//! words, and the constants a reply may name. It follows the controller's choice, or, with the
//! controller off, the fixed action plan (`--action`).

use super::changes::Change;
use super::context::Context;
use super::controller::{brought_code, Category, Choice, Controller, Move};
use super::history::History;
use super::record::{Outcome, Record};
use super::sampler::tunable;
use super::settings::{ActionChoice, Settings};
use super::sourcing::{Ask, DraftAsk};
use super::tuning::{set_values, SamplerTuner, Values};
use crate::agent::edit::{constants, Constant};
use crate::agent::prompt::Action;
use crate::agent::propose::Tuner;

/// Everything an experiment asks of the agent, owned: the controller's choice, what the agent
/// is shown, the request, and where TUNE replies get their values.
pub struct Asking {
    pub choice: Option<Choice>,
    pub context: Context,
    pub request: Request,
    pub tuner: Option<Values>,
}

impl Asking {
    /// For experiment `n`, made on `best_file`.
    pub fn new(history: &History, settings: &Settings, n: usize, best_file: &str) -> Self {
        let choice = settings
            .controller
            .then(|| Controller::default().choose(history, margin(history)));
        Asking {
            context: Context::new(history, settings.reset_after, best_file),
            request: Request::new(choice.as_ref(), settings, n, history, best_file),
            tuner: settings
                .sampler
                .then(|| Values::new(history, n, choice.as_ref(), best_file)),
            choice,
        }
    }

    /// For a draft of the experiment after `running`, written beside its runs: the move is
    /// chosen as if `running` were discarded (the usual case; a draft written for another move
    /// is not used), and the agent sees it running.
    pub fn beside(
        running: &Record,
        history: &History,
        settings: &Settings,
        best_file: &str,
    ) -> Self {
        let mut assumed = history.records().to_vec();
        if !running.is_baseline() {
            assumed.push(Record {
                outcome: Outcome::Discard,
                ..running.clone()
            });
        }
        let mut asking = Asking::new(&History::new(&assumed), settings, running.n + 1, best_file);
        let context = Context::new(history, settings.reset_after, best_file);
        asking.context = if running.is_baseline() {
            context
        } else {
            context.with_running(running)
        };
        asking
    }

    pub fn ask<'a>(&'a self, n: usize, program: &'a str, source: &'a str) -> Ask<'a> {
        Ask {
            n,
            program,
            source,
            context: &self.context,
            request: &self.request,
            tuner: self.tuner.as_ref().map(|t| t as &dyn Tuner),
        }
    }

    /// The draft's ask, owned, for its thread.
    pub fn draft(self, during: usize, program: String, source: String, seed: u32) -> DraftAsk {
        DraftAsk {
            during,
            choice: self.choice,
            program,
            source,
            context: self.context,
            request: self.request,
            seed,
        }
    }
}

/// The records `choice` builds on: the kept one a refinement takes further, the near-misses a
/// combination joins.
pub fn builds_on<'h>(choice: &Choice, history: &'h History) -> Vec<&'h Record> {
    choice
        .builds_on
        .iter()
        .filter_map(|&n| history.records().iter().find(|r| r.n == n))
        .collect()
}

/// The improvement a single run must show: the noise floor the baseline measured.
fn margin(history: &History) -> f64 {
    history
        .baseline()
        .and_then(|b| b.decision.as_ref())
        .map_or(0.0, |d| d.margin)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The reply formats to ask for in turn, with how many proposals each.
    pub plan: Vec<(Action, usize)>,
    /// The controller's task, in words.
    pub task: Option<String>,
    /// The constants a SET or TUNE reply may name (None: any).
    pub names: Option<Vec<String>>,
}

impl Request {
    /// The request of experiment `n`, made on `best_file`.
    pub fn new(
        choice: Option<&Choice>,
        settings: &Settings,
        n: usize,
        history: &History,
        best_file: &str,
    ) -> Request {
        let proposals = settings.proposals;
        let Some(choice) = choice else {
            return Request {
                plan: plan(settings.action, n, proposals),
                task: None,
                names: None,
            };
        };
        // With the sampler off, the agent writes the values of a numeric move itself.
        let numeric = if settings.sampler {
            Action::Tune
        } else {
            Action::Set
        };
        let values = if settings.sampler {
            "name one to three of its constants; their values are chosen from every result so far"
        } else {
            "set one to three of its constants to new values"
        };
        let half = |first: Action, second: Action| {
            vec![(first, proposals - proposals / 2), (second, proposals / 2)]
        };
        // A new idea or an ablation is code first, then numbers. A model that has not yet written
        // code that applied gets one try at it: each failed try costs it most of a minute.
        let code_first = |fallback: Action| {
            let code = if history.experiments().any(brought_code) {
                proposals - proposals / 2
            } else {
                1
            };
            vec![
                (Action::Replace, code),
                (fallback, proposals.saturating_sub(code)),
            ]
        };
        let category = choice.category.unwrap_or(Category::Optimizer);
        let in_category = || {
            constants_in(best_file, category, settings.gpu, |c| {
                numeric != Action::Tune || tunable(c)
            })
        };
        match choice.kind {
            Move::Tune => Request {
                plan: vec![(numeric, proposals)],
                task: Some(format!("Tune {}: {values}.", category.words())),
                names: Some(in_category()),
            },
            // The numbers a failed idea falls back to are a move of its category, with the
            // sampler's values where it is on.
            Move::Explore => Request {
                plan: code_first(numeric),
                task: Some(format!("A new idea about {}.", category.words())),
                names: Some(in_category()),
            },
            // An ablation's settings are the agent's own: a feature's off value, a window
            // pattern of full windows.
            Move::Ablate => Request {
                plan: code_first(Action::Set),
                task: Some(
                    "An ablation: remove or switch off one part of the best file (a line of code, \
                     or a feature constant set to its off value, such as a soft-cap or warm-down \
                     of 0) to see whether it earns its place."
                        .into(),
                ),
                names: Some(settings_of(best_file, settings.gpu)),
            },
            Move::Refine | Move::Combine => {
                let builds_on = builds_on(choice, history);
                let described: Vec<String> = builds_on
                    .iter()
                    .map(|r| {
                        let changes: Vec<String> =
                            r.changes.iter().map(Change::to_string).collect();
                        if changes.is_empty() {
                            // A record from before changes were recorded: its idea says it.
                            format!("e{:04} ({})", r.n, r.description)
                        } else {
                            format!("e{:04} ({}: {})", r.n, r.description, changes.join(", "))
                        }
                    })
                    .collect();
                let set_names: Option<Vec<String>> = set_values(&builds_on)
                    .map(|values| values.into_iter().map(|(name, _)| name).collect());
                // Constants the sampler cannot tune (a string, a None) are set by the agent.
                let file = constants(best_file);
                let all_tunable = set_names.as_ref().is_some_and(|names| {
                    names
                        .iter()
                        .all(|n| file.iter().any(|c| &c.name == n && tunable(c)))
                });
                let refine_with = if all_tunable { numeric } else { Action::Set };
                // With the sampler, a kept setting goes on as far again
                // (`SamplerTuner::steps_beyond`).
                let further = if refine_with == Action::Tune
                    && builds_on.first().is_some_and(|kept| {
                        SamplerTuner::new(history, n)
                            .steps_beyond(kept, best_file)
                            .is_some()
                    }) {
                    "name the same constants; each moves on as far again in the same direction"
                        .to_string()
                } else {
                    format!("the same constants; {values}")
                };
                let (plan, task) = match (choice.kind, &set_names) {
                    (Move::Refine, Some(_)) => (
                        vec![(refine_with, proposals)],
                        format!(
                            "{} was kept. Take it further: {further}.",
                            described.join(" and ")
                        ),
                    ),
                    (Move::Refine, None) => (
                        half(Action::Replace, Action::Set),
                        format!(
                            "{} was kept. Take the same idea further.",
                            described.join(" and ")
                        ),
                    ),
                    // With the sampler, the values are the recorded ones: the agent names them.
                    (_, Some(_)) if settings.sampler => (
                        vec![(Action::Tune, proposals)],
                        format!(
                            "{} each came within the noise of the best. Make both changes together: \
                             name every constant of both; each takes the value it had there.",
                            described.join(" and ")
                        ),
                    ),
                    (_, Some(_)) => (
                        vec![(Action::Set, proposals)],
                        format!(
                            "{} each came within the noise of the best. Make both changes together: \
                             set each constant to the value it had there.",
                            described.join(" and ")
                        ),
                    ),
                    (_, None) => (
                        half(Action::Replace, Action::Set),
                        format!(
                            "{} each came within the noise of the best. Make both changes together.",
                            described.join(" and ")
                        ),
                    ),
                };
                Request {
                    plan,
                    task: Some(task),
                    names: set_names.map(dedup),
                }
            }
        }
    }
}

/// The numeric constants of `file` that `keep` keeps in `category` (all of them when it has
/// none), without those of the other device.
fn constants_in(
    file: &str,
    category: Category,
    gpu: bool,
    keep: impl Fn(&Constant) -> bool,
) -> Vec<String> {
    let numeric: Vec<String> = here(file, gpu)
        .into_iter()
        .filter(|c| !c.ty.contains("str") && c.ty != "bool" && keep(c))
        .map(|c| c.name)
        .collect();
    let in_category: Vec<String> = numeric
        .iter()
        .filter(|name| Category::of_constant(name) == Some(category))
        .cloned()
        .collect();
    if in_category.is_empty() {
        numeric
            .into_iter()
            .filter(|name| Category::of_constant(name).is_some())
            .collect()
    } else {
        in_category
    }
}

/// The names of `file`'s constants that are a direction of research here: not the seed (no
/// category), not the other device's.
fn settings_of(file: &str, gpu: bool) -> Vec<String> {
    here(file, gpu)
        .into_iter()
        .map(|c| c.name)
        .filter(|name| Category::of_constant(name).is_some())
        .collect()
}

/// The constants of `file` without those of the other device (`_GPU` on the CPU, `_CPU` on a
/// GPU), which change nothing here.
fn here(file: &str, gpu: bool) -> Vec<Constant> {
    let other_device = if gpu { "_CPU" } else { "_GPU" };
    constants(file)
        .into_iter()
        .filter(|c| !c.name.ends_with(other_device))
        .collect()
}

fn dedup(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Which actions an experiment asks for, and how many proposals of each, with the controller
/// off. Mixed alternates the first action between experiments and falls back to the narrow SET,
/// which weak models get right.
pub fn plan(choice: ActionChoice, n: usize, proposals: usize) -> Vec<(Action, usize)> {
    match choice {
        ActionChoice::Replace => vec![(Action::Replace, proposals)],
        ActionChoice::Set => vec![(Action::Set, proposals)],
        ActionChoice::Mixed if n % 2 == 1 => vec![
            (Action::Replace, proposals / 2),
            (Action::Set, proposals - proposals / 2),
        ],
        ActionChoice::Mixed => vec![(Action::Set, proposals)],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::record::tests::record;
    use super::super::record::Outcome;
    use super::*;

    const TRAIN: &str = include_str!("../../train/src/train.rs");

    fn settings(sampler: bool) -> Settings {
        Settings {
            sampler,
            proposals: 4,
            action: ActionChoice::Mixed,
            ..super::super::loop_tests::settings()
        }
    }

    /// A choice of move with no reason given.
    pub(crate) fn choice(kind: Move, category: Option<Category>, builds_on: Vec<usize>) -> Choice {
        Choice {
            kind,
            category,
            builds_on,
            reason: String::new(),
        }
    }

    #[test]
    fn a_tune_move_names_its_category_and_leaves_the_values_to_the_sampler() {
        let tune = choice(Move::Tune, Some(Category::Schedule), vec![]);
        let records = vec![record(0, Outcome::Keep, Some(1.8))];
        let h = History::new(&records);
        let r = Request::new(Some(&tune), &settings(true), 1, &h, TRAIN);
        assert_eq!(r.plan, [(Action::Tune, 4)]);
        assert_eq!(
            r.names.unwrap(),
            [
                "MUON_MOMENTUM_RAMP",
                "WARMUP_RATIO",
                "WARMDOWN_RATIO",
                "FINAL_LR_FRAC"
            ]
        );
        assert!(r
            .task
            .unwrap()
            .contains("their values are chosen from every result so far"));
        // Without the sampler the agent writes the values.
        let r = Request::new(Some(&tune), &settings(false), 1, &h, TRAIN);
        assert_eq!(r.plan, [(Action::Set, 4)]);
        // The depth of this device, not the other's.
        let width = choice(Move::Tune, Some(Category::WidthDepth), vec![]);
        let names = |sampler| {
            Request::new(Some(&width), &settings(sampler), 1, &h, TRAIN)
                .names
                .unwrap()
        };
        assert_eq!(names(true), ["DEPTH_CPU", "ASPECT_RATIO", "HEAD_DIM"]);
        assert_eq!(names(false), ["DEPTH_CPU", "ASPECT_RATIO", "HEAD_DIM"]);
    }

    #[test]
    fn refinements_and_combinations_show_what_they_build_on() {
        let mut kept = record(1, Outcome::Keep, Some(1.7));
        kept.changes = vec![Change::Set {
            name: "MATRIX_LR".into(),
            from: "0.04".into(),
            to: "0.06".into(),
        }];
        let mut near = record(2, Outcome::Discard, Some(1.71));
        near.changes = vec![Change::Code {
            line: "let x = 1;".into(),
        }];
        let records = vec![record(0, Outcome::Keep, Some(1.8)), kept, near];
        let h = History::new(&records);
        let refine = choice(Move::Refine, Some(Category::Optimizer), vec![1]);
        let r = Request::new(Some(&refine), &settings(true), 3, &h, TRAIN);
        assert_eq!(r.plan, [(Action::Tune, 4)]);
        assert_eq!(r.names.unwrap(), ["MATRIX_LR"]);
        assert_eq!(
            r.task.unwrap(),
            "e0001 (idea 1\twith a tab: MATRIX_LR 0.04 -> 0.06) was kept. Take it further: name the \
             same constants; each moves on as far again in the same direction."
        );
        let combine = choice(Move::Combine, None, vec![1, 2]);
        let r = Request::new(Some(&combine), &settings(true), 3, &h, TRAIN);
        // A code change among them: the combination is written in code.
        assert_eq!(r.plan, [(Action::Replace, 2), (Action::Set, 2)]);
        assert!(r.names.is_none());
        assert!(r.task.unwrap().contains("code: let x = 1;"));
        // Settings alone: the agent names them, and they take their recorded values.
        let combine = choice(Move::Combine, None, vec![0, 1]);
        let r = Request::new(Some(&combine), &settings(true), 3, &h, TRAIN);
        assert_eq!(r.plan, [(Action::Tune, 4)]);
        assert_eq!(r.names.unwrap(), ["MATRIX_LR"]);
        assert!(r
            .task
            .unwrap()
            .ends_with("each takes the value it had there."));
        let r = Request::new(Some(&combine), &settings(false), 3, &h, TRAIN);
        assert_eq!(r.plan, [(Action::Set, 4)]);
    }

    #[test]
    fn code_moves_fall_back_to_numbers_of_their_category_after_one_try_until_code_applies() {
        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        let explore = choice(Move::Explore, Some(Category::Schedule), vec![]);
        let ablate = choice(Move::Ablate, Some(Category::Architecture), vec![]);
        let request = |records: &[Record], c: &Choice, sampler: bool| {
            Request::new(
                Some(c),
                &settings(sampler),
                1,
                &History::new(records),
                TRAIN,
            )
        };
        let r = request(&records, &explore, true);
        assert_eq!(r.plan, [(Action::Replace, 1), (Action::Tune, 3)]);
        assert_eq!(
            r.names.unwrap(),
            [
                "MUON_MOMENTUM_RAMP",
                "WARMUP_RATIO",
                "WARMDOWN_RATIO",
                "FINAL_LR_FRAC"
            ]
        );
        assert_eq!(
            request(&records, &explore, false).plan,
            [(Action::Replace, 1), (Action::Set, 3)]
        );
        // An ablation's settings are the agent's, any constant of this device but the seed.
        let r = request(&records, &ablate, true);
        assert_eq!(r.plan, [(Action::Replace, 1), (Action::Set, 3)]);
        let names = r.names.unwrap();
        assert!(names.contains(&"SOFTCAP".to_string()), "{names:?}");
        assert!(names.contains(&"WINDOW_PATTERN".to_string()), "{names:?}");
        assert!(names.contains(&"DEVICE_ROWS_CPU".to_string()), "{names:?}");
        assert!(!names.contains(&"DEVICE_ROWS_GPU".to_string()), "{names:?}");
        assert!(!names.contains(&"SEED".to_string()), "{names:?}");
        // Once the agent's code has applied, code moves get half the tries.
        let mut coded = record(1, Outcome::Discard, Some(1.81));
        coded.action = Some(Action::Replace);
        records.push(coded);
        assert_eq!(
            request(&records, &explore, true).plan,
            [(Action::Replace, 2), (Action::Tune, 2)]
        );
    }

    #[test]
    fn without_the_controller_the_fixed_plan_applies() {
        let records = vec![record(0, Outcome::Keep, Some(1.8))];
        let r = Request::new(None, &settings(true), 1, &History::new(&records), TRAIN);
        assert_eq!(r.plan, [(Action::Replace, 2), (Action::Set, 2)]);
        assert_eq!(plan(ActionChoice::Mixed, 2, 4), vec![(Action::Set, 4)]);
        assert_eq!(
            plan(ActionChoice::Replace, 2, 3),
            vec![(Action::Replace, 3)]
        );
    }
}
