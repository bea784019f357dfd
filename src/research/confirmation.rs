//! Confirmation: is the best file really better than the baseline, or was its keep the noise's
//! doing? The two run alternately, several times each, and the improvement gets a 95 % interval
//! (Welch's, for two samples whose spreads may differ). Confirmed when the interval excludes zero.

use serde::{Deserialize, Serialize};

use super::noise::mean;
use super::record::Record;

/// The improvement of the best file over the baseline (baseline − best val_bpb, positive is
/// better) with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub improvement: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Welch's interval from the two samples; None with fewer than two runs of either.
    pub fn welch(baseline: &[f64], best: &[f64]) -> Option<Interval> {
        let (n1, n2) = (baseline.len() as f64, best.len() as f64);
        if n1 < 2.0 || n2 < 2.0 {
            return None;
        }
        let (v1, v2) = (variance(baseline) / n1, variance(best) / n2);
        let se = (v1 + v2).sqrt();
        let improvement = mean(baseline) - mean(best);
        // Welch-Satterthwaite degrees of freedom; two identical samples have none to speak of.
        let df = if se > 0.0 {
            (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0))
        } else {
            n1 + n2 - 2.0
        };
        let half = t_975(df) * se;
        Some(Interval {
            improvement,
            low: improvement - half,
            high: improvement + half,
        })
    }

    /// The improvement is real at 95 %.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0
    }
}

/// The confirmation in one line, as `report` prints it too.
pub fn describe(record: &Record) -> String {
    let runs = record.runs.iter().filter(|r| r.summary.is_some()).count();
    match record.interval {
        Some(i) => format!(
            "{}: improvement {:.6} over the baseline, 95% interval [{:.6}, {:.6}], {} runs: {}",
            record.description,
            i.improvement,
            i.low,
            i.high,
            runs,
            if i.excludes_zero() {
                "confirmed (the interval excludes zero)"
            } else {
                "not confirmed (the interval includes zero)"
            }
        ),
        None => format!(
            "{}: {runs} runs finished, too few for an interval ({})",
            record.description, record.outcome
        ),
    }
}

/// Sample variance.
fn variance(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0)
}

/// The 97.5th percentile of Student's t with `df` degrees of freedom (a two-sided 95 % interval),
/// from the table for whole df, interpolated in 1/df, and beyond 30 the Cornish-Fisher expansion around
/// the normal's quantile (within 0.0001 of the exact value there).
fn t_975(df: f64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    if df > 30.0 {
        let z: f64 = 1.959_964;
        let (z3, z5, z7) = (z.powi(3), z.powi(5), z.powi(7));
        return z
            + (z3 + z) / (4.0 * df)
            + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * df.powi(2))
            + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * df.powi(3));
    }
    // Linear in 1/df between whole df, where the quantile is close to linear (linear in df
    // overshoots between 1 and 2, where it falls steeply).
    let df = df.max(1.0);
    let lo = df.floor() as usize;
    let at = |k: usize| TABLE[k.clamp(1, 30) - 1];
    if lo >= 30 {
        return at(30);
    }
    let frac = (1.0 / lo as f64 - 1.0 / df) / (1.0 / lo as f64 - 1.0 / (lo + 1) as f64);
    at(lo) + frac * (at(lo + 1) - at(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_welchs() {
        // Means 1.80 and 1.70, spreads 0.01: improvement 0.1, se 0.00816, df 4, t 2.776.
        let i = Interval::welch(&[1.79, 1.80, 1.81], &[1.69, 1.70, 1.71]).unwrap();
        assert!((i.improvement - 0.1).abs() < 1e-12);
        assert!((i.high - i.improvement - 2.776 * (2.0 * 0.0001 / 3.0f64).sqrt()).abs() < 1e-6);
        assert!(i.excludes_zero());
        // Within the noise: the interval straddles zero.
        let i = Interval::welch(&[1.79, 1.80, 1.81], &[1.78, 1.795, 1.81]).unwrap();
        assert!(!i.excludes_zero(), "{i:?}");
        // One run of either says nothing about the spread.
        assert_eq!(Interval::welch(&[1.8], &[1.7, 1.71]), None);
        // Between whole df, linear in 1/df: 2.5 is 60 % of the way from 1/2 to 1/3. The exact
        // quantiles at 1.5 and 2.5 are 6.15 and 3.50; linear in df gave 9.50 at 1.5.
        assert!((t_975(2.5) - (4.303 + 0.6 * (3.182 - 4.303))).abs() < 1e-9);
        assert!((t_975(1.5) - 6.15).abs() < 1.0, "{}", t_975(1.5));
        // Beyond the table: Student's quantiles for 30, 60 and 120 degrees of freedom.
        for (df, t) in [(30.0, 2.042), (30.5, 2.041), (60.0, 2.000), (120.0, 1.980)] {
            assert!((t_975(df) - t).abs() < 6e-4, "{df}: {}", t_975(df));
        }
    }
}
