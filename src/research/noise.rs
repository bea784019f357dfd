//! The keep/discard rule. Two runs of the same file differ (on a time budget the step count
//! varies, and so does the result), so a candidate must beat the best by more than that spread:
//! the baseline is run several times to measure it, and a candidate that is better but within the
//! noise gets a confirmation run, whose mean must clear a margin shrunk by sqrt(runs).

use serde::{Deserialize, Serialize};

use super::record::Decision;

/// The standard deviation of the baseline's val_bpb over seeds on the cpu profile at a 60 s
/// budget (README, "The noise floor").
pub const CPU_SIGMA: f64 = 0.016;

/// The margin when the baseline ran once, which measures no spread: two of `CPU_SIGMA`.
pub const DEFAULT_MARGIN: f64 = 2.0 * CPU_SIGMA;

/// How many runs' worth of evidence (degrees of freedom) a known spread counts for beside the
/// baseline's own runs. Three runs measure a spread badly: three runs of a file of sigma 0.016
/// give a sample sigma under 0.0036 one night in twenty, and a margin that small keeps noise.
/// Two degrees of freedom weigh a known spread like three baseline runs, so one run gives the
/// known spread itself and many runs outweigh it.
const PRIOR_DF: f64 = 2.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseFloor {
    /// val_bpb of each baseline run.
    pub runs: Vec<f64>,
    /// Their standard deviation: with a known spread (`prior`), the two pooled; without one, the
    /// runs' sample standard deviation (0 with fewer than two runs).
    pub sigma: f64,
    /// The improvement a single run must show: max(2 sigma, the user's minimum), or with a
    /// single baseline run and no known spread `DEFAULT_MARGIN`.
    pub margin: f64,
    /// The known spread pooled in, if any.
    #[serde(default)]
    pub prior: Option<f64>,
}

impl NoiseFloor {
    /// The floor from the baseline's runs and, where the profile's spread was measured
    /// (`prior`: a standard deviation), that spread as `PRIOR_DF` runs' worth of evidence.
    pub fn measure(runs: &[f64], min_improvement: f64, prior: Option<f64>) -> Self {
        let mean = mean(runs);
        let squares = runs.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        let df = runs.len().saturating_sub(1) as f64;
        let sigma = match prior {
            Some(known) => ((squares + PRIOR_DF * known * known) / (df + PRIOR_DF)).sqrt(),
            None if df > 0.0 => (squares / df).sqrt(),
            None => 0.0,
        };
        let margin = if prior.is_none() && runs.len() < 2 {
            DEFAULT_MARGIN
        } else {
            2.0 * sigma
        };
        NoiseFloor {
            runs: runs.to_vec(),
            sigma,
            margin: margin.max(min_improvement),
            prior,
        }
    }

    /// The improvement the mean of `runs` runs must show.
    pub fn needed(&self, runs: usize) -> f64 {
        self.margin / (runs.max(1) as f64).sqrt()
    }

    /// Judges a candidate's finished runs against the best val_bpb.
    pub fn judge(&self, best: f64, runs: &[f64], max_runs: usize) -> Judgement {
        let improvement = best - mean(runs);
        if improvement > self.needed(runs.len()) {
            Judgement::Keep
        } else if improvement > 0.0 && runs.len() < max_runs {
            Judgement::Confirm
        } else {
            Judgement::Discard
        }
    }

    /// What the rule saw for `runs` against `best_before`, for the record.
    pub fn decision(&self, best_before: f64, runs: &[f64]) -> Decision {
        let candidate = mean(runs);
        Decision {
            best_before,
            candidate,
            improvement: best_before - candidate,
            margin: self.margin,
            noise_sigma: self.sigma,
            noise_prior: self.prior,
            baseline_runs: self.runs.clone(),
            reference_runs: Vec::new(),
            rule: self.rule(),
        }
    }

    /// The improvement the mean of `runs` runs must show over the mean of `reference` runs of the
    /// best file: two standard deviations of the difference of two means, each run's spread the
    /// baseline's.
    pub fn needed_paired(&self, runs: usize, reference: usize) -> f64 {
        let (runs, reference) = (runs.max(1) as f64, reference.max(1) as f64);
        self.margin * (1.0 / runs + 1.0 / reference).sqrt()
    }

    /// Judges a candidate's runs against the best file's latest runs (`reference`, made beside
    /// it): on a machine whose speed drifts over the night, both sides drift together.
    pub fn judge_paired(&self, reference: &[f64], runs: &[f64], max_runs: usize) -> Judgement {
        let improvement = mean(reference) - mean(runs);
        if improvement > self.needed_paired(runs.len(), reference.len()) {
            Judgement::Keep
        } else if improvement > 0.0 && runs.len() < max_runs {
            Judgement::Confirm
        } else {
            Judgement::Discard
        }
    }

    /// What the paired rule saw, for the record.
    pub fn decision_paired(&self, reference: &[f64], runs: &[f64]) -> Decision {
        Decision {
            reference_runs: reference.to_vec(),
            rule: format!(
                "keep when mean(the best file's latest {} runs) - mean(runs) > {:.6} x sqrt(1/runs + 1/{}) = {:.6} (2 x baseline sigma {:.6} for a difference of two means); better but within that: one more run",
                reference.len(),
                self.margin,
                reference.len(),
                self.needed_paired(runs.len(), reference.len()),
                self.sigma
            ),
            ..self.decision(mean(reference), runs)
        }
    }

    fn rule(&self) -> String {
        format!(
            "keep when best - mean(runs) > max(2 x baseline sigma, minimum) / sqrt(runs) = {:.6} / sqrt(runs) \
             (sigma {:.6} over {} baseline runs{}); better but within that: one more run",
            self.margin,
            self.sigma,
            self.runs.len(),
            pooling(self.prior)
        )
    }
}

/// What a floor pooled with the baseline's runs (`prior`, the profile's known spread), as words to
/// follow "over N runs"; empty when nothing was.
pub fn pooling(prior: Option<f64>) -> String {
    match prior {
        Some(known) => format!(", pooled with the profile's known {known:.6} as {PRIOR_DF} runs"),
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Keep,
    Discard,
    /// Better, but within the noise: run it again.
    Confirm,
}

pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_twice_the_baseline_spread() {
        let floor = NoiseFloor::measure(&[1.80, 1.82, 1.81], 0.0001, None);
        assert!((floor.sigma - 0.01).abs() < 1e-9, "{}", floor.sigma);
        assert!((floor.margin - 0.02).abs() < 1e-9);
        // A single baseline run says nothing about the spread: the measured default applies.
        let single = NoiseFloor::measure(&[1.8], 0.0001, None);
        assert_eq!((single.sigma, single.margin), (0.0, DEFAULT_MARGIN));
    }

    #[test]
    fn a_known_spread_is_pooled_with_the_baseline_runs() {
        // Three runs that agree by chance (sample sigma 0.0034, as a night on the EPYC measured):
        // pooled with 0.016 as two runs, sigma = sqrt((2 x 0.0034^2 + 2 x 0.016^2) / 4).
        let runs = [2.0576, 2.0641, 2.0625];
        let sample = NoiseFloor::measure(&runs, 0.0001, None);
        assert!((sample.sigma - 0.003_395).abs() < 1e-5, "{}", sample.sigma);
        let pooled = NoiseFloor::measure(&runs, 0.0001, Some(CPU_SIGMA));
        assert!((pooled.sigma - 0.011_567).abs() < 1e-5, "{}", pooled.sigma);
        assert!((pooled.margin - 2.0 * pooled.sigma).abs() < 1e-12);
        // One run: the known spread itself, the same margin as the default.
        let single = NoiseFloor::measure(&[1.8], 0.0001, Some(CPU_SIGMA));
        assert!((single.sigma - CPU_SIGMA).abs() < 1e-12);
        assert!((single.margin - DEFAULT_MARGIN).abs() < 1e-12);
        // Many runs outweigh it: fifty runs of spread 0.004 give a floor near 0.004 (0.0051).
        let many: Vec<f64> = (0..50).map(|i| 2.0 + 0.008 * (i % 2) as f64).collect();
        let own = NoiseFloor::measure(&many, 0.0, None).sigma;
        let pooled = NoiseFloor::measure(&many, 0.0, Some(CPU_SIGMA)).sigma;
        assert!(pooled > own && pooled < own * 1.3, "{own} {pooled}");
        // The rule says what it pooled, and the record keeps it for the report.
        let decision = NoiseFloor::measure(&runs, 0.0, Some(CPU_SIGMA)).decision(2.06, &[2.0]);
        assert!(decision
            .rule
            .contains("pooled with the profile's known 0.016000 as 2 runs"));
        assert_eq!(decision.noise_prior, Some(CPU_SIGMA));
        assert_eq!(
            pooling(decision.noise_prior),
            ", pooled with the profile's known 0.016000 as 2 runs"
        );
        assert_eq!(pooling(sample.prior), "");
    }

    #[test]
    fn only_improvements_beyond_the_noise_are_kept() {
        let floor = NoiseFloor::measure(&[1.80, 1.82, 1.81], 0.0, None);
        let best = 1.81;
        assert_eq!(floor.judge(best, &[1.78], 2), Judgement::Keep);
        assert_eq!(floor.judge(best, &[1.80], 2), Judgement::Confirm);
        assert_eq!(floor.judge(best, &[1.80], 1), Judgement::Discard);
        assert_eq!(floor.judge(best, &[1.82], 2), Judgement::Discard);
        // Two runs whose mean clears 0.02 / sqrt(2) = 0.0141.
        assert_eq!(floor.judge(best, &[1.80, 1.79], 2), Judgement::Keep);
        // A lucky first run that the confirmation does not back.
        assert_eq!(floor.judge(best, &[1.80, 1.815], 2), Judgement::Discard);
    }

    #[test]
    fn paired_judging_counts_the_spread_of_both_sides() {
        let floor = NoiseFloor::measure(&[1.80, 1.82, 1.81], 0.0, None);
        // margin 0.02; two runs against three of the best: 0.02 x sqrt(1/2 + 1/3) = 0.018257.
        assert!((floor.needed_paired(2, 3) - 0.018_257_418).abs() < 1e-8);
        // The machine sped up: the best's latest runs are 0.03 better than its recorded 1.81, and
        // a candidate 0.025 better than the recorded value is no better than the best now.
        let reference = [1.78, 1.78, 1.78];
        assert_eq!(
            floor.judge_paired(&reference, &[1.785], 2),
            Judgement::Discard
        );
        assert_eq!(
            floor.judge(1.81, &[1.785], 2),
            Judgement::Keep,
            "the stale rule keeps it"
        );
        assert_eq!(
            floor.judge_paired(&reference, &[1.77], 2),
            Judgement::Confirm
        );
        assert_eq!(
            floor.judge_paired(&reference, &[1.76, 1.755], 2),
            Judgement::Keep
        );
        assert_eq!(
            floor.judge_paired(&reference, &[1.77, 1.775], 2),
            Judgement::Discard
        );
        let d = floor.decision_paired(&reference, &[1.76, 1.755]);
        assert_eq!(d.reference_runs, reference);
        assert!((d.best_before - 1.78).abs() < 1e-12 && (d.improvement - 0.0225).abs() < 1e-12);
        assert!(d.rule.contains("= 0.018257"), "{}", d.rule);
    }
}
