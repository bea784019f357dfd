//! The sampler behind TUNE replies: the agent names constants, and their values come from a
//! tree-structured Parzen estimator fitted to every past result of those constants (the values
//! each experiment's file had, and its val_bpb; a run without a result counts as bad), inside a
//! range derived from each constant's type and its value in the baseline file (so that the range
//! stays put while the best file moves; a constant the baseline lacks takes the current value).

use super::history::History;
use super::record::Outcome;
use super::sampler::{parse, render, space_for, Space, Tpe, Trial};
use crate::agent::edit::{constants, Rejection};
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

impl Tuner for SamplerTuner {
    fn values(
        &self,
        source: &str,
        names: &[String],
        seed: u32,
    ) -> Result<Vec<(String, String)>, Rejection> {
        let all = constants(source);
        let mut spaces: Vec<(String, String, Space)> = Vec::new();
        let mut current = Vec::new();
        for name in names {
            let c = all
                .iter()
                .find(|c| &c.name == name)
                .ok_or_else(|| Rejection::NoSuchConstant(name.clone()))?;
            let centre = self.baseline.get(name).unwrap_or(&c.value);
            let space = space_for(name, &c.ty, centre)
                .or_else(|| space_for(name, &c.ty, &c.value))
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
