//! The sampler behind TUNE replies: the agent names constants, and their values come from a
//! tree-structured Parzen estimator fitted to every past result of those constants (the values
//! each experiment's file had, and its val_bpb; a run without a result counts as bad), inside a
//! range derived from each constant's type and its value in the baseline file (so that the range
//! stays put while the best file moves; a constant the baseline lacks takes the current value).

use super::history::History;
use super::record::Outcome;
use super::sampler::{parse, render, space_for, Space, Tpe, Trial};
use crate::agent::edit::{constants, Constant, Rejection};
use crate::agent::ledger::Constants;
use crate::agent::propose::Tuner;

/// What the sampler learns from: each tried file's constants and how it did.
pub struct SamplerTuner {
    trials: Vec<(Constants, f64)>,
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
                Some((r.constants.clone()?, loss))
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
            spaces.push((name.clone(), c.ty.clone(), space));
        }
        let trials: Vec<Trial> = self
            .trials
            .iter()
            .filter_map(|(constants, loss)| {
                let values = spaces
                    .iter()
                    .map(|(name, ty, space)| parse(space, ty, constants.get(name)?))
                    .collect::<Option<Vec<f64>>>()?;
                Some(Trial {
                    values,
                    loss: *loss,
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

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
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
        // The seed is noise, a None has no value to scale, a string no number.
        for name in ["SEED", "DEPTH", "WINDOW_PATTERN"] {
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
}
