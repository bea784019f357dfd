//! The sampler behind TUNE replies: the agent names constants, and their values come from a
//! tree-structured Parzen estimator fitted to every past result of those constants on the same
//! code (the files that changed one of them, and the baseline and keeps: the values each file had,
//! and its val_bpb; a run without a result counts as bad; a file with other code is another
//! function of the values, so it is left out), inside a
//! range derived from each constant's type and its value in the baseline file (so that the range
//! stays put while the best file moves; a constant the baseline lacks takes the current value),
//! widened to hold the current value.

use super::changes::{set_names, Change};
use super::controller::{Choice, Move};
use super::history::History;
use super::record::{Outcome, Record};
use super::request::builds_on;
use super::sampler::{parse, render, space_for, step_beyond, Space, Tpe, Trial};
use crate::agent::edit::{constants, Constant, Rejection};
use crate::agent::ledger::{skeleton_sha256, Constants};
use crate::agent::propose::Tuner;

/// One past result as the sampler sees it.
struct Tried {
    /// The file's code (its skeleton's hash).
    skeleton: String,
    constants: Constants,
    /// The constants it changed from its parent's file.
    changed: Vec<String>,
    /// A file the loop stood on (the baseline, a keep): a result of all its values.
    reference: bool,
    loss: f64,
}

/// What the sampler learns from: each tried file, and how it did.
pub struct SamplerTuner {
    trials: Vec<Tried>,
    /// The baseline file's constants: the centres of the ranges.
    baseline: Constants,
    /// Mixed into every seed, so experiments draw differently.
    n: usize,
}

impl SamplerTuner {
    pub fn new(history: &History, n: usize) -> Self {
        let trials = history
            .records()
            .iter()
            .filter_map(|r| {
                let loss = match (r.outcome, r.val_bpb) {
                    (Outcome::Keep | Outcome::Discard, Some(v)) => v,
                    (Outcome::Crash | Outcome::Timeout | Outcome::StoppedEarly, _) => f64::INFINITY,
                    _ => return None,
                };
                Some(Tried {
                    skeleton: r.skeleton_sha256.clone()?,
                    constants: r.constants.clone()?,
                    changed: set_names(&r.changes),
                    reference: r.is_baseline() || r.outcome == Outcome::Keep,
                    loss,
                })
            })
            .collect();
        let baseline = history
            .baseline()
            .and_then(|b| b.constants.clone())
            .unwrap_or_default();
        SamplerTuner {
            trials,
            baseline,
            n,
        }
    }
}

impl SamplerTuner {
    /// Where `c`'s values are drawn: around its value in the baseline file (so that the range
    /// stays put while the best file moves), else around its value now.
    fn space(&self, c: &Constant) -> Option<Space> {
        let centre = self.baseline.get(&c.name).unwrap_or(&c.value);
        space_for(&c.name, &c.ty, centre).or_else(|| space_for(&c.name, &c.ty, &c.value))
    }

    /// A kept change of settings taken on as far again: each constant it set moves from its value in
    /// `best_file` by the same step (a ratio on a log scale, a difference on a linear one), inside its
    /// range. A kept direction is the likeliest to pay again (a smaller model that trained more steps
    /// in the budget, say), where the sampler's draw for a refinement landed anywhere in the range.
    /// None when the change set code or a constant the sampler cannot scale, or no value would move
    /// (the end of a range).
    pub fn steps_beyond(&self, kept: &Record, best_file: &str) -> Option<Vec<(String, String)>> {
        let file = constants(best_file);
        let mut moved = false;
        let mut steps: Vec<(String, String)> = Vec::new();
        for change in &kept.changes {
            let Change::Set { name, from, to } = change else {
                return None;
            };
            if steps.iter().any(|(n, _)| n == name) {
                continue;
            }
            let c = file.iter().find(|c| &c.name == name)?;
            let space = self.space(c)?;
            let now = parse(&space, &c.ty, &c.value)?;
            let space = space.holding(now);
            let (from, to) = (parse(&space, &c.ty, from)?, parse(&space, &c.ty, to)?);
            let next = step_beyond(&space, from, to, now)?;
            let text = render(&space, &c.ty, next);
            moved |= parse(&space, &c.ty, &text) != Some(now);
            steps.push((name.clone(), text));
        }
        (moved && !steps.is_empty()).then_some(steps)
    }
}

impl Tuner for SamplerTuner {
    fn can_tune(&self, constant: &Constant) -> bool {
        self.space(constant).is_some()
    }

    fn values(
        &self,
        source: &str,
        names: &[String],
        seed: u32,
    ) -> Result<Vec<(String, String)>, Rejection> {
        let all = constants(source);
        let mut spaces: Vec<(String, String, Space)> = Vec::new();
        let mut current = Vec::new();
        // A name given twice is one dimension: its value is drawn once.
        let mut seen = std::collections::HashSet::new();
        for name in names.iter().filter(|n| seen.insert(n.as_str())) {
            let c = all
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| Rejection::NoSuchConstant(name.clone()))?;
            let space = self
                .space(c)
                .ok_or_else(|| Rejection::CannotTune(name.clone()))?;
            let value = parse(&space, &c.ty, &c.value)
                .ok_or_else(|| Rejection::CannotTune(name.clone()))?;
            current.push(value);
            // A kept value outside the baseline's range stays reachable from both sides.
            spaces.push((name.clone(), c.ty.clone(), space.holding(value)));
        }
        // The results of these constants: files on this code that changed one of them, and the
        // files the loop stood on. A file that changed only other constants says how those did,
        // not these: counted here at these constants' unchanged values, every bad change of
        // another constant would mark the current values bad and push the draws far away.
        let skeleton = skeleton_sha256(source);
        let trials: Vec<Trial> = self
            .trials
            .iter()
            .filter(|t| t.skeleton == skeleton)
            .filter(|t| t.reference || t.changed.iter().any(|c| seen.contains(c.as_str())))
            .filter_map(|t| {
                let values = spaces
                    .iter()
                    .map(|(name, ty, space)| parse(space, ty, t.constants.get(name)?))
                    .collect::<Option<Vec<f64>>>()?;
                Some(Trial {
                    values,
                    loss: t.loss,
                })
            })
            .collect();
        let only: Vec<Space> = spaces.iter().map(|(_, _, s)| *s).collect();
        let seed = (self.n as u64) << 32 | seed as u64;
        let values = Tpe::default().suggest(&only, &current, &trials, seed);
        Ok(spaces
            .iter()
            .zip(values)
            .map(|((name, ty, space), x)| (name.clone(), render(space, ty, x)))
            .collect())
    }
}

/// Where an experiment's TUNE replies get their values.
pub enum Values {
    /// From the sampler.
    Sampler(SamplerTuner),
    /// Values the move itself fixes, so the agent names the constants and writes no number (a
    /// small model's own numbers for it were seldom either near-miss's): a combination of
    /// near-misses that only set constants takes the values they had.
    Given(Vec<(String, String)>),
    /// A refinement of a kept setting: the next step in its direction, or the sampler's draw
    /// when that file was tried already (a step that ends at its range's end, a value tried
    /// before, another worker's candidate in the same round).
    Stepped {
        steps: Vec<(String, String)>,
        sampler: SamplerTuner,
    },
}

impl Values {
    /// For experiment `n`, the controller's `choice`, made on `best_file`.
    pub fn new(history: &History, n: usize, choice: Option<&Choice>, best_file: &str) -> Values {
        let builds_on = choice.map(|c| builds_on(c, history)).unwrap_or_default();
        let sampler = SamplerTuner::new(history, n);
        match choice.map(|c| c.kind) {
            Some(Move::Combine) => match set_values(&builds_on) {
                Some(values) => Values::Given(values),
                None => Values::Sampler(sampler),
            },
            Some(Move::Refine) => match builds_on
                .first()
                .and_then(|kept| sampler.steps_beyond(kept, best_file))
            {
                Some(steps) => Values::Stepped { steps, sampler },
                None => Values::Sampler(sampler),
            },
            _ => Values::Sampler(sampler),
        }
    }
}

/// `(name, value)` of every constant `records` set, when setting constants is all they did.
pub fn set_values(records: &[&Record]) -> Option<Vec<(String, String)>> {
    records
        .iter()
        .flat_map(|r| &r.changes)
        .map(|c| c.set().map(|(name, to)| (name.to_string(), to.to_string())))
        .collect::<Option<Vec<_>>>()
        .filter(|values| !values.is_empty())
}

impl Tuner for Values {
    fn can_tune(&self, constant: &Constant) -> bool {
        match self {
            Values::Sampler(sampler) => sampler.can_tune(constant),
            Values::Given(values) | Values::Stepped { steps: values, .. } => {
                values.iter().any(|(name, _)| *name == constant.name)
            }
        }
    }

    fn instead(&self) -> Option<&dyn Tuner> {
        match self {
            Values::Stepped { sampler, .. } => Some(sampler),
            _ => None,
        }
    }

    fn values(
        &self,
        source: &str,
        names: &[String],
        seed: u32,
    ) -> Result<Vec<(String, String)>, Rejection> {
        match self {
            Values::Sampler(sampler) => sampler.values(source, names, seed),
            Values::Given(values) | Values::Stepped { steps: values, .. } => {
                let mut seen = std::collections::HashSet::new();
                names
                    .iter()
                    .filter(|n| seen.insert(n.as_str()))
                    .map(|name| {
                        values
                            .iter()
                            .find(|(n, _)| n == name)
                            .cloned()
                            .ok_or_else(|| Rejection::CannotTune(name.clone()))
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::controller::Category;
    use super::super::record::tests::record;
    use super::super::request::tests::choice;
    use super::*;
    use crate::agent::ledger::constants_of;

    const TRAIN: &str = include_str!("../../train/src/train.rs");

    fn tuner() -> SamplerTuner {
        let mut baseline = record(0, Outcome::Keep, Some(1.8));
        baseline.constants = Some(constants_of(TRAIN));
        SamplerTuner::new(&History::new(&[baseline]), 1)
    }

    fn constant(name: &str) -> Constant {
        constants(TRAIN)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[test]
    fn the_sampler_says_which_constants_it_can_tune() {
        let tuner = tuner();
        assert!(tuner.can_tune(&constant("MATRIX_LR")));
        assert!(tuner.can_tune(&constant("TOKENS_PER_STEP_CPU")));
        assert!(tuner.can_tune(&constant("DEPTH_CPU")));
        // The seed is noise, a string no number.
        for name in ["SEED", "WINDOW_PATTERN"] {
            assert!(!tuner.can_tune(&constant(name)), "{name}");
            assert_eq!(
                tuner.values(TRAIN, &[name.into()], 1),
                Err(Rejection::CannotTune(name.into()))
            );
        }
        assert_eq!(
            tuner.values(TRAIN, &["NOPE".into()], 1),
            Err(Rejection::NoSuchConstant("NOPE".into()))
        );
    }

    #[test]
    fn a_name_given_twice_gets_one_value_in_its_range() {
        let values = tuner()
            .values(TRAIN, &["MATRIX_LR".into(), "MATRIX_LR".into()], 3)
            .unwrap();
        assert_eq!(values.len(), 1);
        let x: f64 = values[0].1.parse().unwrap();
        // Around the baseline's 0.04, by at most a factor of ten.
        assert!((0.004..=0.4).contains(&x), "{x}");
    }

    /// Six discards of this file with `name` at other values (low ones did well), on `code`.
    fn tried(code: &str, name: &str) -> Vec<Record> {
        let from = constant(name).value;
        [0.1, 0.2, 0.5, 2.0, 4.0, 8.0]
            .into_iter()
            .enumerate()
            .map(|(i, factor)| {
                let to = format!("{:?}", from.parse::<f64>().unwrap() * factor);
                let file = TRAIN.replace(
                    &format!("const {name}: f64 = {from};"),
                    &format!("const {name}: f64 = {to};"),
                );
                let mut r = record(i + 1, Outcome::Discard, Some(1.7 + 0.1 * factor));
                r.constants = Some(constants_of(&file));
                r.skeleton_sha256 = Some(skeleton_sha256(code));
                r.changes = vec![Change::Set {
                    name: name.into(),
                    from: from.clone(),
                    to,
                }];
                r
            })
            .collect()
    }

    /// MATRIX_LR's value drawn with seed 5 after the baseline and `others`.
    fn draw(others: Vec<Record>) -> Vec<(String, String)> {
        let mut baseline = record(0, Outcome::Keep, Some(1.8));
        baseline.constants = Some(constants_of(TRAIN));
        baseline.skeleton_sha256 = Some(skeleton_sha256(TRAIN));
        let records: Vec<Record> = [baseline].into_iter().chain(others).collect();
        SamplerTuner::new(&History::new(&records), 1)
            .values(TRAIN, &["MATRIX_LR".into()], 5)
            .unwrap()
    }

    #[test]
    fn only_results_of_the_constants_on_the_same_code_teach_the_sampler() {
        let alone = draw(vec![]);
        // Results of this code at other rates do.
        assert_ne!(draw(tried(TRAIN, "MATRIX_LR")), alone);
        // Results of other code at these rates say nothing about the rates here.
        let other = format!("{TRAIN}\nfn another() {{}}\n");
        assert_eq!(draw(tried(&other, "MATRIX_LR")), alone);
        // Nor do results of another constant, made at this rate.
        assert_eq!(draw(tried(TRAIN, "EMBEDDING_LR")), alone);
    }

    #[test]
    fn a_kept_value_beyond_the_baselines_range_widens_it() {
        let beyond = TRAIN.replace(
            "const MATRIX_LR: f64 = 0.04;",
            "const MATRIX_LR: f64 = 2.0;",
        );
        assert_ne!(beyond, TRAIN);
        let highest = (0..40)
            .map(|seed| {
                tuner()
                    .values(&beyond, &["MATRIX_LR".into()], seed)
                    .unwrap()[0]
                    .1
                    .parse::<f64>()
                    .unwrap()
            })
            .fold(0.0, f64::max);
        // The baseline's range ends at 0.4; draws around 2.0 go past it.
        assert!(highest > 0.4 && highest <= 2.0, "{highest}");
    }

    #[test]
    fn a_combination_of_settings_takes_their_recorded_values() {
        let set = |n: usize, name: &str, to: &str| {
            let mut r = record(n, Outcome::Discard, Some(1.81));
            r.changes = vec![Change::Set {
                name: name.into(),
                from: constant(name).value,
                to: to.into(),
            }];
            r
        };
        let (a, b) = (
            set(1, "WARMDOWN_RATIO", "0.6"),
            set(2, "EMBEDDING_LR", "0.5"),
        );
        let records = vec![record(0, Outcome::Keep, Some(1.8)), a.clone(), b.clone()];
        let history = History::new(&records);
        let combine = choice(Move::Combine, None, vec![1, 2]);
        let values = Values::new(&history, 3, Some(&combine), TRAIN);
        assert!(values.can_tune(&constant("EMBEDDING_LR")));
        assert!(!values.can_tune(&constant("MATRIX_LR")));
        let names = ["EMBEDDING_LR", "WARMDOWN_RATIO", "EMBEDDING_LR"].map(String::from);
        assert_eq!(
            values.values(TRAIN, &names, 7),
            Ok(vec![
                ("EMBEDDING_LR".into(), "0.5".into()),
                ("WARMDOWN_RATIO".into(), "0.6".into())
            ])
        );
        assert_eq!(
            values.values(TRAIN, &["MATRIX_LR".into()], 7),
            Err(Rejection::CannotTune("MATRIX_LR".into()))
        );
        // A code change among them: nothing to take, the sampler gives the values.
        let mut code = b.clone();
        code.changes.push(Change::Code {
            line: "let x = 1;".into(),
        });
        let with_code = vec![records[0].clone(), a, code];
        assert!(matches!(
            Values::new(&History::new(&with_code), 3, Some(&combine), TRAIN),
            Values::Sampler(_)
        ));
        assert!(matches!(
            Values::new(&history, 3, None, TRAIN),
            Values::Sampler(_)
        ));
    }

    /// The baseline (this file) and a keep that made `changes`, giving `best`.
    fn kept(changes: &[(&str, &str)]) -> (Vec<Record>, String) {
        let mut baseline = record(0, Outcome::Keep, Some(1.8));
        baseline.constants = Some(constants_of(TRAIN));
        let mut best = TRAIN.to_string();
        let mut keep = record(1, Outcome::Keep, Some(1.7));
        for (name, to) in changes {
            let from = constant(name).value;
            let line = |v: &str| format!("{name}: {} = {v};", constant(name).ty);
            best = best.replace(&line(&from), &line(to));
            keep.changes.push(Change::Set {
                name: name.to_string(),
                from,
                to: to.to_string(),
            });
        }
        assert_ne!(best, TRAIN);
        (vec![baseline, keep], best)
    }

    #[test]
    fn a_refinement_takes_a_kept_setting_as_far_again() {
        let refine = choice(Move::Refine, Some(Category::WidthDepth), vec![1]);
        let steps = |changes: &[(&str, &str)]| {
            let (records, best) = kept(changes);
            let history = History::new(&records);
            let values = Values::new(&history, 2, Some(&refine), &best);
            match values {
                Values::Stepped { steps, .. } => Some(steps),
                _ => None,
            }
        };
        let pairs = |pairs: &[(&str, &str)]| -> Option<Vec<(String, String)>> {
            Some(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )
        };
        // By ratios on a log scale: 64 -> 48 goes on to 36, 128 -> 101 to 80.
        assert_eq!(
            steps(&[("ASPECT_RATIO", "48"), ("HEAD_DIM", "101")]),
            pairs(&[("ASPECT_RATIO", "36"), ("HEAD_DIM", "80")])
        );
        assert_eq!(
            steps(&[("MATRIX_LR", "0.05")]),
            pairs(&[("MATRIX_LR", "0.0625")])
        );
        // By differences on a linear one.
        assert_eq!(
            steps(&[("WARMDOWN_RATIO", "0.6")]),
            pairs(&[("WARMDOWN_RATIO", "0.7")])
        );
        // At the end of its range nothing moves: the sampler gives the values.
        assert_eq!(steps(&[("TOKENS_PER_STEP_CPU", "1")]), None);
        // Nor is a change of code taken further by numbers.
        let (mut records, best) = kept(&[("MATRIX_LR", "0.05")]);
        records[1].changes.push(Change::Code {
            line: "let x = 1;".into(),
        });
        let sampler = SamplerTuner::new(&History::new(&records), 2);
        assert_eq!(sampler.steps_beyond(&records[1], &best), None);
    }
}
