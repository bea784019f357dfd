//! Early stopping of doomed runs. The harness prints the smoothed training loss at each step with
//! the run's progress (training time / budget); the best file's run gives a reference curve, and
//! the baseline's runs show how far two runs of one file drift apart at the same progress. A
//! run whose loss stays worse than the reference by more than that allows, over a stated span of
//! its budget past a stated progress, is stopped: the time goes to the next experiment.
//!
//! Conservative by construction: curves of different files can cross (a higher learning rate is
//! worse early and better late; the warm-down gains most at the end), so the rule waits for a
//! late progress and a margin far above the run-to-run spread. `replay` tries the rule on a
//! recorded journal: how much time it would have saved, and whether it would have stopped a run
//! that was kept.

use super::history::History;
use super::record::{Outcome, Record};

/// A run's loss by progress: `[progress, loss]`, progress rising.
pub type Curve = Vec<[f32; 2]>;

/// When a run counts as doomed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// No run is stopped before this much of its budget.
    pub from_progress: f64,
    /// The margin is this many times the baseline runs' largest spread at the same progress...
    pub spread_factor: f64,
    /// ...and at least this much (nats of training loss).
    pub min_margin: f64,
    /// The span of the budget (a fraction) over which the loss must stay past the margin: in
    /// progress, not step lines, which come ten times as often on a GPU and each say little
    /// more than the last (the loss is smoothed).
    pub hold: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            from_progress: 0.5,
            spread_factor: 4.0,
            min_margin: 0.05,
            hold: 0.2,
        }
    }
}

/// Why a run was stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub progress: f64,
    pub loss: f64,
    pub reference: f64,
    pub margin: f64,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped early at {:.0}% of the budget: training loss {:.4} against the best file's {:.4} at the same point, more than {:.4} behind",
            100.0 * self.progress,
            self.loss,
            self.reference,
            self.margin
        )
    }
}

/// The rule at work on one run.
pub struct Watch {
    rule: Rule,
    reference: Curve,
    baseline: Vec<Curve>,
    /// Where the loss went past the margin and has stayed since.
    behind_since: Option<f64>,
}

impl Watch {
    /// A watch against `reference` (the best file's run), with `baseline` (the baseline's runs)
    /// for the spread; None without a reference to compare with.
    pub fn new(rule: Rule, reference: Curve, baseline: Vec<Curve>) -> Option<Self> {
        (reference.len() >= 2).then_some(Watch {
            rule,
            reference,
            baseline,
            behind_since: None,
        })
    }

    /// A watch with the default rule against the best file's run and the baseline's runs of
    /// `history`; None without a curve to compare with.
    pub fn against_best(history: &History) -> Option<Self> {
        let reference = reference(history.last_kept()?)?;
        Watch::new(Rule::default(), reference, baseline_curves(history))
    }

    /// One step's `(progress, loss)`; Some when the run is doomed.
    pub fn see(&mut self, progress: f64, loss: f64) -> Option<Verdict> {
        if progress < self.rule.from_progress || !loss.is_finite() {
            self.behind_since = None;
            return None;
        }
        let reference = at(&self.reference, progress)?;
        let spread = self.spread(progress);
        let margin = (self.rule.spread_factor * spread).max(self.rule.min_margin);
        if loss - reference > margin {
            self.behind_since.get_or_insert(progress);
        } else {
            self.behind_since = None;
        }
        // Progress is printed rounded (and read as f32): a hair under the span is the span.
        let held = self
            .behind_since
            .is_some_and(|since| progress - since >= self.rule.hold - 1e-6);
        held.then_some(Verdict {
            progress,
            loss,
            reference,
            margin,
        })
    }

    /// The largest difference between two baseline runs' losses at `progress`.
    fn spread(&self, progress: f64) -> f64 {
        let losses: Vec<f64> = self
            .baseline
            .iter()
            .filter_map(|c| at(c, progress))
            .collect();
        let (lo, hi) = losses
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &l| {
                (lo.min(l), hi.max(l))
            });
        if losses.len() < 2 {
            0.0
        } else {
            hi - lo
        }
    }
}

/// The curve's loss at `progress`, interpolated linearly; None outside the curve.
fn at(curve: &[[f32; 2]], progress: f64) -> Option<f64> {
    let i = curve.iter().position(|p| p[0] as f64 >= progress)?;
    let [p1, l1] = curve[i].map(f64::from);
    if i == 0 {
        return (p1 - progress).abs().lt(&1e-9).then_some(l1);
    }
    let [p0, l0] = curve[i - 1].map(f64::from);
    let t = if p1 > p0 {
        (progress - p0) / (p1 - p0)
    } else {
        1.0
    };
    Some(l0 + t * (l1 - l0))
}

/// The curve the best file ran: the first run with one of the record that is best now.
pub fn reference(record: &Record) -> Option<Curve> {
    record
        .runs
        .iter()
        .find(|r| r.curve.len() >= 2)
        .map(|r| r.curve.clone())
}

/// The baseline's run curves.
pub fn baseline_curves(history: &History) -> Vec<Curve> {
    history
        .baseline()
        .map(|b| b.runs.iter().map(|r| r.curve.clone()).collect())
        .unwrap_or_default()
}

/// What the rule would have done on a recorded journal.
#[derive(Debug, Default, PartialEq)]
pub struct Replay {
    /// Trained experiments with a curve and a reference to compare with.
    pub judged: usize,
    /// Those it would have stopped, with the progress it would have stopped them at.
    pub stopped: Vec<(usize, f64)>,
    /// Kept experiments among them: must be none.
    pub kept_stopped: Vec<usize>,
    /// Training seconds the stops would have saved, and all training seconds of the judged.
    pub saved_seconds: f64,
    pub training_seconds: f64,
}

/// Replays `rule` over every trained experiment of `records`, each against the best record of
/// its time.
pub fn replay(records: &[Record], rule: Rule) -> Replay {
    let history = History::new(records);
    let baseline = baseline_curves(&history);
    let mut out = Replay::default();
    for (i, record) in records.iter().enumerate() {
        if record.outcome == Outcome::StoppedEarly {
            // Stopped for real: its time saved is the rest of its budget at the pace it went.
            let Some(run) = record.runs.last() else {
                continue;
            };
            let progress = run.curve.last().map_or(0.0, |p| f64::from(p[0]));
            if progress > 0.0 {
                let whole = run.seconds / progress;
                let earlier: f64 = record.runs.iter().rev().skip(1).map(|r| r.seconds).sum();
                out.judged += 1;
                out.training_seconds += earlier + whole;
                out.saved_seconds += whole - run.seconds;
                out.stopped.push((record.n, progress));
            }
            continue;
        }
        if record.is_baseline() || !record.outcome.is_judged() {
            continue;
        }
        let Some(best) = History::new(&records[..i]).last_kept() else {
            continue;
        };
        let (Some(reference), Some(run)) = (reference(best), record.runs.first()) else {
            continue;
        };
        // A run recorded without its curve (journals from before curves) cannot be replayed.
        if run.curve.len() < 2 {
            continue;
        }
        let Some(mut watch) = Watch::new(rule, reference, baseline.clone()) else {
            continue;
        };
        out.judged += 1;
        out.training_seconds += run.seconds;
        let stop = run
            .curve
            .iter()
            .find_map(|&[p, l]| watch.see(p as f64, l as f64));
        if let Some(verdict) = stop {
            out.stopped.push((record.n, verdict.progress));
            out.saved_seconds += run.seconds * (1.0 - verdict.progress).max(0.0);
            if record.outcome == Outcome::Keep {
                out.kept_stopped.push(record.n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::super::record::RunRecord;
    use super::*;

    /// A falling loss curve `start - drop * progress`, eleven points.
    fn falling(start: f32, drop: f32) -> Curve {
        (0..=10)
            .map(|i| {
                let p = i as f32 / 10.0;
                [p, start - drop * p]
            })
            .collect()
    }

    #[test]
    fn a_run_far_behind_the_best_late_in_its_budget_is_stopped() {
        let reference = falling(6.0, 2.0);
        let baseline = vec![falling(6.0, 2.0), falling(6.01, 2.0)];
        let mut watch = Watch::new(Rule::default(), reference.clone(), baseline.clone()).unwrap();
        // 0.3 worse from the start: nothing before half the budget, then behind from 50% to 70%.
        let doomed = falling(6.3, 2.0);
        let verdicts: Vec<Option<Verdict>> = doomed
            .iter()
            .map(|&[p, l]| watch.see(p as f64, l as f64))
            .collect();
        assert!(verdicts[..7].iter().all(Option::is_none), "{verdicts:?}");
        let v = verdicts[7].unwrap();
        assert!(
            (v.progress - 0.7).abs() < 1e-6 && (v.margin - 0.05).abs() < 1e-9,
            "{v:?}"
        );
        // Back within the margin for a point: the span starts again.
        let mut watch = Watch::new(Rule::default(), reference.clone(), baseline.clone()).unwrap();
        let mut wavering = doomed.clone();
        wavering[6][1] = reference[6][1];
        let stopped_at = wavering
            .iter()
            .find_map(|&[p, l]| watch.see(p as f64, l as f64))
            .unwrap();
        assert!((stopped_at.progress - 0.9).abs() < 1e-6, "{stopped_at:?}");

        // Within the margin (0.04 worse), or worse early and better late: never stopped.
        for curve in [falling(6.04, 2.0), falling(7.0, 3.5)] {
            let mut watch =
                Watch::new(Rule::default(), reference.clone(), baseline.clone()).unwrap();
            assert!(curve
                .iter()
                .all(|&[p, l]| watch.see(p as f64, l as f64).is_none()));
        }
        // A spread between the baseline's runs widens the margin.
        let noisy = vec![falling(6.0, 2.0), falling(6.2, 2.0)];
        let mut watch = Watch::new(Rule::default(), reference, noisy).unwrap();
        assert!(doomed
            .iter()
            .all(|&[p, l]| watch.see(p as f64, l as f64).is_none()));
    }

    fn trained(n: usize, outcome: Outcome, curve: Curve) -> Record {
        let mut r = record(n, outcome, Some(1.8));
        r.runs = vec![RunRecord {
            outcome: super::super::record::RunEnd::Finished,
            summary: None,
            seconds: 100.0,
            log: "train.log".into(),
            exit: None,
            curve,
            commit: None,
            placed: None,
        }];
        r
    }

    #[test]
    fn the_replay_counts_the_time_saved_and_the_keeps_it_would_have_lost() {
        let records = vec![
            trained(0, Outcome::Keep, falling(6.0, 2.0)),
            trained(1, Outcome::Discard, falling(6.5, 2.0)),
            // Kept, yet behind the reference late: the rule would have lost it.
            trained(2, Outcome::Keep, falling(6.2, 2.0)),
            trained(3, Outcome::Discard, falling(6.1, 2.0)),
        ];
        let replay = replay(&records, Rule::default());
        assert_eq!(replay.judged, 3);
        assert_eq!(replay.stopped.len(), 2);
        assert_eq!(replay.kept_stopped, [2]);
        assert!((replay.saved_seconds - 60.0).abs() < 1e-3, "{replay:?}");
        assert_eq!(replay.training_seconds, 300.0);

        // A run the loop stopped (early stopping was on) counts at the point it was stopped: its
        // whole run would have taken 100 s at the pace it went.
        let mut stopped = trained(4, Outcome::StoppedEarly, falling(6.5, 2.0)[..7].to_vec());
        stopped.runs[0].seconds = 60.0;
        let records = [records, vec![stopped]].concat();
        let replay = super::replay(&records, Rule::default());
        assert_eq!(replay.judged, 4);
        assert_eq!(replay.stopped.last(), Some(&(4, 0.6000000238418579)));
        assert!((replay.saved_seconds - 100.0).abs() < 1e-3, "{replay:?}");
        assert!((replay.training_seconds - 400.0).abs() < 1e-3);
    }
}
