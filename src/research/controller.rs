//! The search controller: a deterministic policy above the agent. Before each experiment it picks
//! the kind of move the agent is asked for (a new idea in code, a refinement of the last keep, a
//! combination of two near-misses, an ablation, or a hyperparameter move whose values the sampler
//! chooses) from the recent keep, failure and near-miss rates, keeps any one category of change
//! under a quota, and switches strategy after a plateau. The agent writes the move; the
//! controller never writes code. Its choice and the reason go into the experiment's record.

use serde::{Deserialize, Serialize};

use super::changes::set_names;
use super::history::History;
use super::record::{Outcome, Record};
use crate::agent::prompt::Action;

/// The kind of move an experiment makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    /// A new idea, in code.
    Explore,
    /// The last kept change, taken further.
    Refine,
    /// Two near-misses together.
    Combine,
    /// A part of the best file removed or switched off, to see whether it earns its place.
    Ablate,
    /// Constants the agent names, with values from the sampler.
    Tune,
}

impl Move {
    /// Moves the agent writes in code first (it falls back to numbers when the code fails).
    pub fn is_code(self) -> bool {
        matches!(self, Move::Explore | Move::Ablate)
    }
}

named!(Move {
    Explore => "explore",
    Refine => "refine",
    Combine => "combine",
    Ablate => "ablate",
    Tune => "tune",
});

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Optimizer,
    Schedule,
    Batch,
    WidthDepth,
    Architecture,
    Initialisation,
    Regularisation,
}

named!(Category {
    Optimizer => "optimizer",
    Schedule => "schedule",
    Batch => "batch",
    WidthDepth => "width_depth",
    Architecture => "architecture",
    Initialisation => "initialisation",
    Regularisation => "regularisation",
});

impl Category {
    /// In words, for the prompt.
    pub fn words(self) -> &'static str {
        match self {
            Category::Optimizer => "the optimizer (learning rates, betas, momentum)",
            Category::Schedule => "the learning-rate schedule (warm-up, warm-down)",
            Category::Batch => "the batch (tokens per step, rows per forward pass)",
            Category::WidthDepth => "the model's width and depth",
            Category::Architecture => "the architecture (attention, windows, soft-cap, embeddings)",
            Category::Initialisation => "the initialisation of the parameters",
            Category::Regularisation => "regularisation (weight decay)",
        }
    }

    /// The category of a hyperparameter constant, by its name; None for the seed, which is no
    /// direction of research (a lucky seed is noise).
    pub fn of_constant(name: &str) -> Option<Category> {
        Some(match name {
            "SEED" => return None,
            "WARMUP_RATIO" | "WARMDOWN_RATIO" | "FINAL_LR_FRAC" | "MUON_MOMENTUM_RAMP" => {
                Category::Schedule
            }
            "ASPECT_RATIO" | "HEAD_DIM" => Category::WidthDepth,
            n if n.starts_with("DEPTH") => Category::WidthDepth,
            "WEIGHT_DECAY" => Category::Regularisation,
            n if n.starts_with("TOKENS_PER_STEP") || n.starts_with("DEVICE_ROWS") => {
                Category::Batch
            }
            n if n.ends_with("_LR")
                || n.starts_with("ADAM_")
                || n.starts_with("MUON_")
                || n == "NEWTON_SCHULZ_STEPS" =>
            {
                Category::Optimizer
            }
            n if n.ends_with("_RATIO") || n.ends_with("_FRAC") => Category::Schedule,
            _ => Category::Architecture,
        })
    }

    /// The category of a code change, from the words of its idea.
    fn of_idea(idea: &str) -> Category {
        let idea = idea.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| idea.contains(w));
        // Schedules before regularisation ("learning-rate decay" is a schedule), and whole
        // words for initialisation ("normal" is in "normalization", an architecture change).
        if has(&[
            "warmup",
            "warm-up",
            "warmdown",
            "warm-down",
            "schedule",
            "cooldown",
            "lr decay",
            "rate decay",
        ]) {
            Category::Schedule
        } else if has(&[
            "init",
            " std",
            "uniform",
            "normal distribution",
            "xavier",
            "kaiming",
            "orthogonal",
        ]) {
            Category::Initialisation
        } else if has(&["weight decay", "dropout", "regulari"]) {
            Category::Regularisation
        } else if has(&[
            "learning rate",
            " lr",
            "momentum",
            "adam",
            "muon",
            "optimi",
            "beta",
        ]) {
            Category::Optimizer
        } else if has(&["batch", "rows", "tokens per step"]) {
            Category::Batch
        } else if has(&[
            "depth", "width", "layer", "head", "aspect", "deeper", "wider",
        ]) {
            Category::WidthDepth
        } else {
            Category::Architecture
        }
    }

    /// What a past experiment was about: the controller's category when it had one, else the
    /// first changed constant's, else its idea's.
    pub fn of_record(record: &Record) -> Category {
        if let Some(c) = record.choice.as_ref().and_then(|c| c.category) {
            return c;
        }
        record
            .changes
            .iter()
            .find_map(|c| c.set().and_then(|(name, _)| Category::of_constant(name)))
            .unwrap_or_else(|| Category::of_idea(record.idea.as_deref().unwrap_or("")))
    }
}

/// The controller's choice for one experiment, as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(rename = "move")]
    pub kind: Move,
    pub category: Option<Category>,
    /// Experiments the move builds on: the kept one a refinement takes further, the two
    /// near-misses a combination joins.
    pub builds_on: Vec<usize>,
    pub reason: String,
}

/// The controller's settings.
#[derive(Debug, Clone)]
pub struct Controller {
    /// Recent experiments the rates are measured over.
    pub window: usize,
    /// Experiments without a keep after which the strategy changes.
    pub plateau: usize,
    /// The largest share of the recent experiments one category may take.
    pub quota: f64,
    /// Failures (crash, timeout, compile error, no usable proposal) among the recent
    /// experiments from which only safe numeric moves are asked for.
    pub failure_rate: f64,
    /// Code moves (new ideas, ablations) in a row that brought no code edit that applied, after
    /// which code moves pause for a window, and a window more for every `code_tries` further
    /// failures (a small model may never write code that applies; it can name constants, and
    /// each failed code move costs it a minute).
    pub code_tries: usize,
}

impl Default for Controller {
    fn default() -> Self {
        Controller {
            window: 10,
            plateau: 6,
            quota: 0.4,
            failure_rate: 0.5,
            code_tries: 2,
        }
    }
}

/// Categories a numeric move can change, and categories code can.
const TUNABLE: [Category; 6] = [
    Category::Optimizer,
    Category::Schedule,
    Category::Batch,
    Category::WidthDepth,
    Category::Regularisation,
    Category::Architecture,
];
const IN_CODE: [Category; 5] = [
    Category::Architecture,
    Category::Initialisation,
    Category::Optimizer,
    Category::Regularisation,
    Category::Schedule,
];

impl Controller {
    /// The move for the next experiment. `margin` is the improvement a single run needs (the
    /// noise floor): a discard within it of the best is a near-miss.
    pub fn choose(&self, history: &History, margin: f64) -> Choice {
        let newest_first: Vec<&Record> = history
            .experiments()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let since_keep = newest_first
            .iter()
            .take_while(|r| r.outcome != Outcome::Keep)
            .count();
        let recent = &newest_first[..newest_first.len().min(self.window)];
        let choice = |kind, categories: &[Category], builds_on, reason: String| Choice {
            kind,
            category: (!categories.is_empty()).then(|| self.category(recent, categories)),
            builds_on,
            reason,
        };
        if recent.is_empty() {
            return choice(
                Move::Tune,
                &TUNABLE,
                vec![],
                "the first experiment: a hyperparameter move, the surest kind".into(),
            );
        }
        // A fresh keep is taken further once (the refinement is then the newest experiment),
        // unless its category has had its share of the recent experiments already.
        if let Some(kept) = recent.first().filter(|r| r.outcome == Outcome::Keep) {
            let category = Category::of_record(kept);
            if self.count(recent, category) < self.cap() {
                return Choice {
                    kind: Move::Refine,
                    category: Some(category),
                    builds_on: vec![kept.n],
                    reason: format!("e{:04} was kept: take its change further", kept.n),
                };
            }
        }
        let failed = recent.iter().filter(|r| r.outcome.is_failure()).count();
        if failed as f64 >= self.failure_rate * recent.len() as f64 {
            return choice(
                Move::Tune,
                &TUNABLE,
                vec![],
                format!(
                    "{failed} of the last {} experiments failed: a safe numeric move",
                    recent.len()
                ),
            );
        }
        if let Some(pair) = self.near_misses(recent, history.last_kept(), margin) {
            return Choice {
                kind: Move::Combine,
                category: None,
                builds_on: pair.to_vec(),
                reason: format!(
                    "e{:04} and e{:04} came within the noise of the best: try them together",
                    pair[0], pair[1]
                ),
            };
        }
        // The strategy by plateau phase: mostly numbers while they pay, then mostly new code,
        // then ablations beside both. Numeric moves never stop: they are what a small
        // model gets right.
        let phase = since_keep / self.plateau.max(1);
        let turn = history.next_n();
        let (kind, why) = match (phase.min(2), turn % 3) {
            (0, 0) => (Move::Explore, "a new idea now and then"),
            (0, _) => (Move::Tune, "hyperparameter moves while they pay"),
            (1, t) if t % 2 == 0 => (Move::Explore, "a plateau: new ideas in code"),
            (1, _) => (Move::Tune, "a plateau: new ideas in code, and numbers"),
            (_, 0) => (
                Move::Ablate,
                "a long plateau: find what the best file does not need",
            ),
            (_, 1) => (
                Move::Explore,
                "a long plateau: new ideas, ablations, numbers",
            ),
            _ => (Move::Tune, "a long plateau: new ideas, ablations, numbers"),
        };
        let (kind, why) = if kind.is_code() && self.code_is_paused(&newest_first) {
            (
                Move::Tune,
                "the last code moves brought no code that applied: numbers until the pause passes",
            )
        } else {
            (kind, why)
        };
        let categories: &[Category] = match kind {
            Move::Tune => &TUNABLE,
            _ => &IN_CODE,
        };
        choice(
            kind,
            categories,
            vec![],
            format!("{since_keep} experiments since the last keep: {why}"),
        )
    }

    /// Whether code moves are paused: the latest `code_tries` or more code moves in a row ended
    /// without a code edit that applied (the agent fell back to numbers or wrote nothing usable),
    /// and the newest of them is fewer experiments ago than a window per `code_tries` of them.
    /// After the pause one more is tried; each failure makes the next pause longer. Code that
    /// applied in any move ends the streak; a retried or requeued experiment is no new try.
    fn code_is_paused(&self, newest_first: &[&Record]) -> bool {
        let code: Vec<(usize, &Record)> = newest_first
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, r)| r.retry_of.is_none() && r.requeue_of.is_none())
            .filter(|(_, r)| brought_code(r) || r.choice.as_ref().is_some_and(|c| c.kind.is_code()))
            .collect();
        let failed = code.iter().take_while(|(_, r)| !brought_code(r)).count();
        let tries = self.code_tries.max(1);
        failed >= tries && code[0].0 < self.window * failed / tries
    }

    /// The category least tried among `allowed` in `recent`. With three or more allowed, the
    /// least tried is always under the quota, so only a refinement can reach it.
    fn category(&self, recent: &[&Record], allowed: &[Category]) -> Category {
        allowed
            .iter()
            .copied()
            .min_by_key(|&c| self.count(recent, c))
            .unwrap_or(allowed[0])
    }

    /// How many of `recent` were about `category`.
    fn count(&self, recent: &[&Record], category: Category) -> usize {
        recent
            .iter()
            .filter(|r| Category::of_record(r) == category)
            .count()
    }

    /// The most experiments of one category the window may hold.
    fn cap(&self) -> usize {
        (self.quota * self.window as f64).ceil() as usize
    }

    /// The two most recent discards within the noise of the best that were made on the best file
    /// (an older discard was measured against a file that is gone), that no combination used
    /// yet, and that set different constants (two values of one constant cannot both be had).
    fn near_misses(
        &self,
        recent: &[&Record],
        best: Option<&Record>,
        margin: f64,
    ) -> Option<[usize; 2]> {
        let best = best?.commit?;
        let combined: Vec<usize> = recent
            .iter()
            .filter_map(|r| r.choice.as_ref())
            .filter(|c| c.kind == Move::Combine)
            .flat_map(|c| c.builds_on.iter().copied())
            .collect();
        let misses: Vec<&Record> = recent
            .iter()
            .copied()
            .filter(|r| r.outcome == Outcome::Discard && r.parent == best)
            .filter(|r| !combined.contains(&r.n))
            .filter(|r| r.decision.as_ref().is_some_and(|d| d.improvement > -margin))
            .collect();
        let (newer, older) = misses.iter().enumerate().find_map(|(i, a)| {
            let names = set_names(&a.changes);
            misses[i + 1..]
                .iter()
                .find(|b| set_names(&b.changes).iter().all(|n| !names.contains(n)))
                .map(|b| (a.n, b.n))
        })?;
        Some([older, newer])
    }
}

/// Whether an experiment's agent wrote a code edit that applied (and did not then fail).
pub fn brought_code(record: &Record) -> bool {
    record.action == Some(Action::Replace) && !record.outcome.is_failure()
}

#[cfg(test)]
mod tests {
    use super::super::changes::Change;
    use super::super::record::tests::{commit, record};
    use super::super::record::Decision;
    use super::*;

    /// An experiment with an outcome, the improvement the keep rule saw, and a SET change.
    fn experiment(n: usize, outcome: Outcome, improvement: f64, constant: &str) -> Record {
        let mut r = record(n, outcome, Some(1.8 - improvement));
        r.decision = Some(Decision {
            best_before: 1.8,
            candidate: 1.8 - improvement,
            improvement,
            margin: 0.01,
            noise_sigma: 0.005,
            noise_prior: None,
            baseline_runs: vec![],
            reference_runs: vec![],
            rule: String::new(),
        });
        r.changes = vec![Change::Set {
            name: constant.into(),
            from: "1".into(),
            to: "2".into(),
        }];
        r
    }

    fn choose(records: &[Record]) -> Choice {
        Controller::default().choose(&History::new(records), 0.01)
    }

    #[test]
    fn a_keep_is_refined_once_then_the_plan_goes_on() {
        let mut records = vec![
            record(0, Outcome::Keep, Some(1.8)),
            experiment(1, Outcome::Keep, 0.05, "MATRIX_LR"),
        ];
        let refine = choose(&records);
        assert_eq!(
            (refine.kind, refine.builds_on.as_slice()),
            (Move::Refine, &[1][..])
        );
        assert_eq!(refine.category, Some(Category::Optimizer));
        let mut refined = experiment(2, Outcome::Discard, -0.05, "MATRIX_LR");
        refined.choice = Some(refine);
        records.push(refined);
        assert_ne!(choose(&records).kind, Move::Refine);
    }

    #[test]
    fn failures_ask_for_safe_moves_and_near_misses_are_combined() {
        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        for n in 1..=4 {
            records.push(experiment(n, Outcome::Crash, 0.0, "DEPTH"));
        }
        let safe = choose(&records);
        assert_eq!(safe.kind, Move::Tune);
        assert!(
            safe.reason
                .starts_with("4 of the last 4 experiments failed"),
            "{}",
            safe.reason
        );
        // The crashes were all width/depth: the quota sends the move elsewhere.
        assert_ne!(safe.category, Some(Category::WidthDepth));

        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        records.push(experiment(1, Outcome::Discard, -0.005, "MATRIX_LR"));
        records.push(experiment(2, Outcome::Discard, -0.2, "WARMDOWN_RATIO"));
        records.push(experiment(3, Outcome::Discard, -0.002, "EMBEDDING_LR"));
        let combine = choose(&records);
        assert_eq!(
            (combine.kind, combine.builds_on.as_slice()),
            (Move::Combine, &[1, 3][..])
        );
        let mut combined = experiment(4, Outcome::Discard, -0.02, "MATRIX_LR");
        combined.choice = Some(combine);
        records.push(combined);
        assert_ne!(
            choose(&records).kind,
            Move::Combine,
            "each pair is combined once"
        );

        // Two values of one constant are no pair; a discard made on a file that has since been
        // beaten is measured against a best that is gone.
        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        records.push(experiment(1, Outcome::Discard, -0.005, "EMBEDDING_LR"));
        records.push(experiment(2, Outcome::Discard, -0.005, "MATRIX_LR"));
        records.push(experiment(3, Outcome::Discard, -0.002, "MATRIX_LR"));
        assert_eq!(choose(&records).builds_on, [1, 3]);
        records.push(experiment(4, Outcome::Keep, 0.05, "SOFTCAP"));
        records.push(experiment(5, Outcome::Discard, -0.5, "SOFTCAP"));
        records[5].parent = commit(4);
        assert_ne!(choose(&records).kind, Move::Combine);
    }

    #[test]
    fn new_ideas_pause_when_the_agents_code_never_applies() {
        let explored = |n: usize, action: Action| {
            let mut r = experiment(n, Outcome::Discard, -0.5, "SOFTCAP");
            r.choice = Some(Choice {
                kind: Move::Explore,
                category: Some(Category::Architecture),
                builds_on: vec![],
                reason: String::new(),
            });
            r.action = Some(action);
            r
        };
        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        for n in 1..=3 {
            // Each fell back to SET: no code edit applied.
            records.push(explored(n, Action::Set));
        }
        records.push(experiment(4, Outcome::Discard, -0.5, "SOFTCAP"));
        records.push(experiment(5, Outcome::Discard, -0.5, "SOFTCAP"));
        // Experiment 6 is a new idea's turn.
        let next = choose(&records);
        assert_eq!(next.kind, Move::Tune, "{next:?}");
        assert!(
            next.reason.contains("no code that applied"),
            "{}",
            next.reason
        );
        // One of them was code: new ideas go on.
        records[2] = explored(2, Action::Replace);
        assert_eq!(choose(&records).kind, Move::Explore);
    }

    #[test]
    fn code_moves_pause_longer_the_more_they_fail() {
        let controller = Controller::default();
        let coded = |n: usize, kind: Move| {
            let mut r = experiment(n, Outcome::Discard, -0.5, "SOFTCAP");
            r.choice = Some(Choice {
                kind,
                category: Some(Category::Architecture),
                builds_on: vec![],
                reason: String::new(),
            });
            r.action = Some(Action::Set);
            r
        };
        let paused = |records: &[Record]| {
            let newest_first: Vec<&Record> = records.iter().rev().collect();
            controller.code_is_paused(&newest_first)
        };
        let numbers = |records: &mut Vec<Record>, to: usize| {
            for n in records.len() + 1..=to {
                records.push(experiment(n, Outcome::Discard, -0.5, "SOFTCAP"));
            }
        };
        // An idea and an ablation, neither with code that applied: a window's pause.
        let mut records = vec![coded(1, Move::Explore), coded(2, Move::Ablate)];
        assert!(paused(&records));
        numbers(&mut records, 11);
        assert!(
            paused(&records),
            "nine experiments after the second failure"
        );
        numbers(&mut records, 12);
        assert!(!paused(&records), "ten after it");
        // A third failure in a row: a window and a half.
        records.push(coded(13, Move::Explore));
        numbers(&mut records, 27);
        assert!(paused(&records), "fourteen after the third failure");
        numbers(&mut records, 28);
        assert!(!paused(&records), "fifteen after it");
        // A code edit that applied ends the streak.
        let mut applied = coded(29, Move::Explore);
        applied.action = Some(Action::Replace);
        records.push(applied);
        assert!(!paused(&records));
    }

    #[test]
    fn a_category_past_its_quota_is_not_refined() {
        let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
        for n in 1..=3 {
            records.push(experiment(n, Outcome::Discard, -0.5, "MATRIX_LR"));
        }
        records.push(experiment(4, Outcome::Keep, 0.05, "ADAM_BETA1"));
        // Four optimizer experiments of the last ten: the quota of 40 % is reached.
        let next = choose(&records);
        assert_ne!(next.kind, Move::Refine, "{next:?}");
        assert_ne!(next.category, Some(Category::Optimizer));
        records.remove(1);
        assert_eq!(choose(&records).kind, Move::Refine);
    }

    #[test]
    fn a_plateau_moves_from_numbers_to_code_to_ablations() {
        let kinds = |since_keep: usize| -> Vec<Move> {
            let mut records = vec![record(0, Outcome::Keep, Some(1.8))];
            for n in 1..=since_keep {
                // Far from the best: no near-misses.
                records.push(experiment(n, Outcome::Discard, -0.5, "SOFTCAP"));
            }
            (0..3)
                .map(|i| {
                    let mut more = records.clone();
                    for k in 0..i {
                        more.push(experiment(
                            since_keep + 1 + k,
                            Outcome::Discard,
                            -0.5,
                            "SOFTCAP",
                        ));
                    }
                    // The same phase, other turns.
                    choose(&more).kind
                })
                .collect()
        };
        // Phase 0 (fewer than 6 since the last keep): mostly Tune, Explore every third turn.
        let early = kinds(1);
        assert!(
            early.contains(&Move::Tune) && early.contains(&Move::Explore),
            "{early:?}"
        );
        // Phase 1: new code beside numbers; phase 2: ablations beside both.
        let plateau = kinds(7);
        assert!(
            plateau.contains(&Move::Explore) && plateau.contains(&Move::Tune),
            "{plateau:?}"
        );
        assert!(!plateau.contains(&Move::Ablate), "{plateau:?}");
        let long = kinds(13);
        assert!(
            long.contains(&Move::Ablate) && long.contains(&Move::Tune),
            "{long:?}"
        );
    }

    #[test]
    fn categories_of_constants_and_ideas() {
        assert_eq!(
            Category::of_constant("MATRIX_LR"),
            Some(Category::Optimizer)
        );
        assert_eq!(
            Category::of_constant("TOKENS_PER_STEP_CPU"),
            Some(Category::Batch)
        );
        assert_eq!(
            Category::of_constant("WARMDOWN_RATIO"),
            Some(Category::Schedule)
        );
        assert_eq!(Category::of_constant("SEED"), None);
        assert_eq!(
            Category::of_idea("a smaller init std"),
            Category::Initialisation
        );
        assert_eq!(Category::of_idea("go deeper"), Category::WidthDepth);
        assert_eq!(
            Category::of_idea("RMS normalization before the MLP"),
            Category::Architecture
        );
        assert_eq!(
            Category::of_idea("faster learning-rate decay at the end"),
            Category::Schedule
        );
        assert_eq!(
            Category::of_idea("more weight decay on the matrices"),
            Category::Regularisation
        );
        for m in Move::ALL {
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        for c in Category::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
    }
}
