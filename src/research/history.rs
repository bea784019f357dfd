//! Every question asked of a run's records, answered in one place: for the loop, `report`, the
//! chart and the prompt. The records are the journal's, in order.

use super::noise::mean;
use super::record::{CommitId, DraftOutcome, DraftRecord, Outcome, Record, RecordKind, Timing};
use crate::agent::ledger::Tried;

/// The best result so far: the commit the next candidate is made on, and the value to beat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Best {
    pub commit: CommitId,
    pub val_bpb: f64,
}

/// A read-only view of a run's records.
#[derive(Clone, Copy)]
pub struct History<'a> {
    records: &'a [Record],
}

impl<'a> History<'a> {
    pub fn new(records: &'a [Record]) -> Self {
        History { records }
    }

    pub fn records(&self) -> &'a [Record] {
        self.records
    }

    /// The baseline that finished (an interrupted one may come before it).
    pub fn baseline(&self) -> Option<&'a Record> {
        self.records
            .iter()
            .find(|r| r.is_baseline() && r.outcome == Outcome::Keep)
    }

    /// The latest kept record: the best, since only improvements are kept.
    pub fn last_kept(&self) -> Option<&'a Record> {
        self.records
            .iter()
            .rev()
            .find(|r| r.outcome == Outcome::Keep)
    }

    /// The best commit and its value; None before the baseline has finished.
    pub fn best(&self) -> Option<Best> {
        let record = self.last_kept()?;
        Some(Best {
            commit: record.commit?,
            val_bpb: record.val_bpb?,
        })
    }

    /// val_bpb of every finished run of `commit`'s file at `budget_seconds` per run, oldest
    /// first: its own record's runs and those made of it beside later candidates. Confirmations
    /// are left out: they run on seeds of their own, at a budget of their own.
    pub fn runs_of(&self, commit: CommitId, budget_seconds: f64) -> Vec<f64> {
        self.records
            .iter()
            .filter(|r| r.kind != RecordKind::Confirmation)
            .filter(|r| r.budget_seconds == Some(budget_seconds))
            .flat_map(|r| r.values_of(commit))
            .collect()
    }

    /// The experiments after the baseline that ran to an end (interrupted ones were re-run or
    /// left unfinished).
    pub fn experiments(&self) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(|r| r.kind == RecordKind::Experiment && r.outcome != Outcome::Interrupted)
    }

    /// The confirmations run, oldest first.
    pub fn confirmations(&self) -> impl Iterator<Item = &'a Record> + 'a {
        self.records
            .iter()
            .filter(|r| r.kind == RecordKind::Confirmation)
    }

    pub fn experiments_done(&self) -> usize {
        self.experiments().count()
    }

    pub fn kept(&self) -> usize {
        self.experiments()
            .filter(|r| r.outcome == Outcome::Keep)
            .count()
    }

    /// Kept experiments / experiments, 0 before the first.
    pub fn keep_rate(&self) -> f64 {
        self.kept() as f64 / self.experiments_done().max(1) as f64
    }

    /// The number the next record gets.
    pub fn next_n(&self) -> usize {
        self.records.iter().map(|r| r.n + 1).max().unwrap_or(0)
    }

    /// The last `count` records after the baseline, oldest first.
    pub fn recent(&self, count: usize) -> impl Iterator<Item = &'a Record> + 'a {
        let start = self.records.len().saturating_sub(count);
        self.records[start..]
            .iter()
            .filter(|r| r.kind == RecordKind::Experiment)
    }

    /// The kept experiments, oldest first: the changes that made the best file.
    pub fn lineage(&self) -> impl Iterator<Item = &'a Record> + 'a {
        self.experiments().filter(|r| r.outcome == Outcome::Keep)
    }

    /// The failures at the end of the history, newest first.
    pub fn failure_streak(&self) -> Vec<&'a Record> {
        self.records
            .iter()
            .rev()
            .filter(|r| r.kind == RecordKind::Experiment)
            .take_while(|r| r.outcome.is_failure())
            .collect()
    }

    /// The last record, when it is an experiment cut short by a stop or a crash that has a
    /// commit to run again and was not itself a re-run or re-run already: it runs once more.
    pub fn to_retry(&self) -> Option<&'a Record> {
        // The last experiment, not the last record: a confirmation may have run since.
        let last = self
            .records
            .iter()
            .rev()
            .find(|r| r.kind == RecordKind::Experiment)?;
        let retried = self.records.iter().any(|r| r.retry_of == Some(last.n));
        let retry = last.outcome == Outcome::Interrupted
            && last.retry_of.is_none()
            && last.commit.is_some()
            && !retried;
        retry.then_some(last)
    }

    /// With several workers: the experiments made on `best` that a stop or a crash cut short, not
    /// re-runs themselves and not re-run yet, oldest first: the next round runs them again.
    pub fn to_retry_on(&self, best: CommitId) -> Vec<&'a Record> {
        self.records
            .iter()
            .filter(|r| {
                r.kind == RecordKind::Experiment
                    && r.outcome == Outcome::Interrupted
                    && r.parent == best
                    && r.retry_of.is_none()
                    && r.commit.is_some()
                    && !self.records.iter().any(|later| later.retry_of == Some(r.n))
            })
            .collect()
    }

    /// Candidates beaten within their round whose change was queued again on top of the
    /// winner, and has not run there yet, oldest first.
    pub fn to_requeue(&self) -> Vec<&'a Record> {
        self.experiments()
            .filter(|r| {
                r.outcome == Outcome::Requeued
                    && !self
                        .records
                        .iter()
                        .any(|later| later.requeue_of == Some(r.n))
            })
            .collect()
    }

    /// The trainer's peak in the latest record that has one: what the next run is planned with.
    pub fn last_trainer_peak(&self) -> Option<crate::units::Bytes> {
        self.records.iter().rev().find_map(|r| r.trainer_peak)
    }

    /// Every training file tried, as the ledger takes it.
    pub fn tried_files(&self) -> impl Iterator<Item = Tried> + 'a {
        self.records.iter().filter_map(Record::tried)
    }

    /// Mean seconds per experiment by part; None before the first experiment.
    pub fn mean_timing(&self) -> Option<Timing> {
        let experiments: Vec<&Record> = self.experiments().collect();
        if experiments.is_empty() {
            return None;
        }
        let per = |f: fn(&Timing) -> f64| {
            mean(&experiments.iter().map(|r| f(&r.timing)).collect::<Vec<_>>())
        };
        Some(Timing {
            agent_seconds: per(|t| t.agent_seconds),
            build_seconds: per(|t| t.build_seconds),
            training_seconds: per(|t| t.training_seconds),
            eval_seconds: per(|t| t.eval_seconds),
            total_seconds: per(|t| t.total_seconds),
        })
    }

    pub fn drafts(&self) -> impl Iterator<Item = &'a DraftRecord> + 'a {
        self.records.iter().filter_map(|r| r.draft.as_ref())
    }

    pub fn drafts_with(&self, outcome: DraftOutcome) -> usize {
        self.drafts().filter(|d| d.outcome == outcome).count()
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::{commit, record};
    use super::*;

    #[test]
    fn the_best_is_the_last_kept_and_the_baseline_the_finished_one() {
        let mut interrupted_baseline = record(0, Outcome::Interrupted, None);
        interrupted_baseline.description = "baseline".into();
        let records = vec![
            interrupted_baseline,
            record(0, Outcome::Keep, Some(1.9)),
            record(2, Outcome::Crash, None),
            record(3, Outcome::Keep, Some(1.8)),
            record(4, Outcome::Discard, Some(1.85)),
            record(5, Outcome::Interrupted, None),
        ];
        let h = History::new(&records);
        assert_eq!(h.baseline().unwrap().val_bpb, Some(1.9));
        assert_eq!(
            h.best(),
            Some(Best {
                commit: commit(3),
                val_bpb: 1.8
            })
        );
        assert_eq!(h.experiments_done(), 3);
        assert_eq!(h.kept(), 1);
        assert!((h.keep_rate() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(h.next_n(), 6);
        assert_eq!(h.to_retry().map(|r| r.n), Some(5));
        assert_eq!(h.recent(3).map(|r| r.n).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(h.failure_streak().is_empty());
    }

    #[test]
    fn a_retry_happens_once_and_never_for_the_baseline() {
        let mut retried = record(2, Outcome::Interrupted, None);
        retried.retry_of = Some(1);
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Interrupted, None),
            retried,
        ];
        // The re-run was interrupted too: it is left as it is.
        assert!(History::new(&records).to_retry().is_none());
        let baseline_only = vec![record(0, Outcome::Interrupted, None)];
        assert!(History::new(&baseline_only).to_retry().is_none());
        let mut no_commit = record(1, Outcome::Interrupted, None);
        no_commit.commit = None;
        let stopped_while_proposing = vec![record(0, Outcome::Keep, Some(1.9)), no_commit];
        assert!(History::new(&stopped_while_proposing).to_retry().is_none());
    }

    #[test]
    fn the_failure_streak_is_counted_from_the_end() {
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Crash, None),
            record(2, Outcome::Discard, Some(2.0)),
            record(3, Outcome::CompileError, None),
            record(4, Outcome::Rejected, None),
        ];
        let streak: Vec<usize> = History::new(&records)
            .failure_streak()
            .iter()
            .map(|r| r.n)
            .collect();
        assert_eq!(streak, [4, 3]);
    }
}
