//! What the page shows, built from a run folder's files: the journal (the truth), the record of
//! the experiment in flight (pending.json) and the loop's live state (live.json). Everything
//! derived is derived here, once, so the page's script only draws.

use std::path::Path;

use serde::Serialize;

use crate::research::confirmation;
use crate::research::controller::Choice;
use crate::research::history::History;
use crate::research::journal;
use crate::research::live::{self, LiveState};
use crate::research::pending;
use crate::research::record::{Outcome, Record, RecordKind, RunRecord};
use crate::research::ResearchError;
use crate::scheduler::policy::Plan;

/// The whole page but the experiments' details.
#[derive(Debug, Serialize)]
pub struct Overview<'a> {
    pub tag: &'a str,
    pub header: Header,
    pub rows: Vec<Row<'a>>,
    pub memory: Vec<MemoryPoint>,
    /// The experiment in flight, as far as it got.
    pub in_flight: Option<InFlight>,
    /// The current best's training loss, which the run in flight is drawn against.
    pub best_curve: &'a [[f32; 2]],
    pub live: Option<LiveView>,
}

#[derive(Debug, Serialize)]
pub struct Header {
    pub model: Option<String>,
    pub device: Option<String>,
    pub profile: Option<String>,
    pub budget_seconds: Option<f64>,
    pub started: Option<String>,
    /// From the first record's start to now while the loop runs, else to the last record's end.
    pub elapsed_seconds: f64,
    pub experiments: usize,
    pub kept: usize,
    pub keep_rate: f64,
    pub baseline: Option<f64>,
    pub best_n: Option<usize>,
    pub best: Option<f64>,
    /// baseline - best (positive is better), and as a share of the baseline.
    pub improvement: Option<f64>,
    pub improvement_percent: Option<f64>,
    /// What a single run must beat the best by (the baseline runs' noise floor).
    pub margin: Option<f64>,
    /// The latest confirmation, in words, and whether it confirmed.
    pub confirmation: Option<String>,
    pub confirmed: Option<bool>,
}

/// One line of the table.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub n: usize,
    pub kind: RecordKind,
    pub outcome: Outcome,
    pub val_bpb: Option<f64>,
    /// The best val_bpb it was judged against, and its difference from it (negative is better).
    pub best_before: Option<f64>,
    pub delta: Option<f64>,
    pub choice: Option<&'a Choice>,
    pub description: &'a str,
    pub idea: Option<&'a str>,
    pub runs: usize,
    pub agent_seconds: f64,
    pub build_seconds: f64,
    pub training_seconds: f64,
    pub total_seconds: f64,
}

/// The device's memory during one experiment's runs, in MiB.
#[derive(Debug, Serialize)]
pub struct MemoryPoint {
    pub n: usize,
    pub device: String,
    pub trainer_mib: Option<f64>,
    pub agent_mib: f64,
    pub capacity_mib: f64,
    /// Where the agent was: beside the trainer, partly offloaded, or evicted.
    pub plan: Plan,
    pub move_seconds: Option<f64>,
    pub reload_seconds: Option<f64>,
}

/// The experiment in flight, from its pending record.
#[derive(Debug, Serialize)]
pub struct InFlight {
    pub n: usize,
    pub description: String,
    pub idea: Option<String>,
    pub choice: Option<Choice>,
    pub diff: Option<String>,
    /// The curves of its own runs that have ended (not the best file's beside it).
    pub finished_runs: Vec<Vec<[f32; 2]>>,
}

#[derive(Debug, Serialize)]
pub struct LiveView {
    #[serde(flatten)]
    pub state: LiveState,
    /// The loop process is still there.
    pub alive: bool,
}

impl From<LiveState> for LiveView {
    fn from(state: LiveState) -> Self {
        LiveView {
            alive: state.writer_alive(),
            state,
        }
    }
}

/// One experiment opened: its record whole, and the curve of the best it was judged against.
#[derive(Debug, Serialize)]
pub struct Detail<'a> {
    pub record: &'a Record,
    pub best_n: Option<usize>,
    pub best_curve: &'a [[f32; 2]],
}

/// A run folder's files, read once for one answer.
pub struct Folder {
    pub tag: String,
    pub records: Vec<Record>,
    pub pending: Option<Record>,
    pub live: Option<LiveState>,
}

impl Folder {
    /// Reads `dir`. A journal not written yet (the baseline still running) is no records; a torn
    /// last line (a write in progress) is left out until it is whole.
    pub fn read(tag: &str, dir: &Path) -> Result<Folder, ResearchError> {
        let records = match journal::read(dir) {
            Ok(records) => records,
            Err(ResearchError::NoJournal(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        // A pending record that is unreadable is only waiting for the loop to set it aside.
        let pending =
            pending::peek(dir).filter(|p| !records.iter().any(|r| r.n == p.n && r.kind == p.kind));
        Ok(Folder {
            tag: tag.to_string(),
            records,
            pending,
            live: live::read(dir),
        })
    }

    pub fn overview(&self) -> Overview<'_> {
        let history = History::new(&self.records);
        let live = self.live.clone().map(LiveView::from);
        Overview {
            tag: &self.tag,
            header: header(&history, live.as_ref()),
            rows: self.records.iter().map(row).collect(),
            memory: self.records.iter().filter_map(memory_point).collect(),
            in_flight: self.pending.as_ref().map(in_flight),
            best_curve: history.last_kept().map_or(&[], first_curve),
            live,
        }
    }

    /// Experiment `n`'s detail; None when the journal has no such record.
    /// Everything a report file holds: the overview and every experiment opened.
    pub fn inline(&self) -> super::page::Inline<'_> {
        super::page::Inline {
            overview: self.overview(),
            details: self
                .records
                .iter()
                .filter_map(|r| Some((r.n, self.detail(r.n)?)))
                .collect(),
            written: crate::research::now(),
        }
    }

    pub fn detail(&self, n: usize) -> Option<Detail<'_>> {
        let record = self.records.iter().find(|r| r.n == n)?;
        let best = best_before(&self.records, record);
        Some(Detail {
            record,
            best_n: best.map(|b| b.n),
            best_curve: best.map_or(&[], first_curve),
        })
    }
}

fn header(history: &History, live: Option<&LiveView>) -> Header {
    let records = history.records();
    let baseline_record = history.baseline();
    let baseline = baseline_record.and_then(|r| r.val_bpb);
    let best_record = history.last_kept();
    let best = best_record.and_then(|r| r.val_bpb);
    let improvement = baseline.zip(best).map(|(b, v)| b - v);
    let first_summary = records
        .iter()
        .flat_map(|r| &r.runs)
        .find_map(|r| r.summary.as_ref());
    let started = records.first().map(|r| r.started.clone());
    let end = match live {
        Some(l) if l.alive => Some(jiff::Timestamp::now()),
        _ => records.last().and_then(|r| r.finished.parse().ok()),
    };
    let elapsed_seconds = started
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .zip(end)
        .map_or(0.0, |(s, e)| e.duration_since(s).as_secs_f64().max(0.0));
    let confirmation = history.confirmations().last();
    Header {
        model: live.map(|l| l.state.run.model.clone()),
        // The trainer's own word for its device; the loop's (the memory it plans) before a run.
        device: first_summary
            .map(|s| s.device.clone())
            .or_else(|| live.map(|l| l.state.run.device.clone())),
        profile: live
            .map(|l| l.state.run.profile.clone())
            .or_else(|| first_summary.map(|s| s.profile.clone())),
        budget_seconds: live
            .map(|l| l.state.run.budget_seconds)
            .or_else(|| baseline_record.and_then(|r| r.budget_seconds)),
        started: started.or_else(|| live.map(|l| l.state.run.started.clone())),
        elapsed_seconds,
        experiments: history.experiments_done(),
        kept: history.kept(),
        keep_rate: history.keep_rate(),
        baseline,
        best_n: best_record.map(|r| r.n),
        best,
        improvement,
        improvement_percent: improvement.zip(baseline).map(|(i, b)| 100.0 * i / b),
        margin: baseline_record
            .and_then(|r| r.decision.as_ref())
            .map(|d| d.margin),
        confirmation: confirmation.map(confirmation::describe),
        confirmed: confirmation.map(|r| r.outcome == Outcome::Confirmed),
    }
}

fn row(r: &Record) -> Row<'_> {
    let best_before = r
        .decision
        .as_ref()
        .filter(|_| !r.is_baseline())
        .map(|d| d.best_before);
    Row {
        n: r.n,
        kind: r.kind,
        outcome: r.outcome,
        val_bpb: r.val_bpb,
        best_before,
        delta: r.val_bpb.zip(best_before).map(|(v, b)| v - b),
        choice: r.choice.as_ref(),
        description: &r.description,
        idea: r.idea.as_deref(),
        runs: r.runs.len(),
        agent_seconds: r.timing.agent_seconds,
        build_seconds: r.timing.build_seconds,
        training_seconds: r.timing.training_seconds,
        total_seconds: r.timing.total_seconds,
    }
}

fn memory_point(r: &Record) -> Option<MemoryPoint> {
    let s = r.schedule.as_ref()?;
    Some(MemoryPoint {
        n: r.n,
        device: s.device.clone(),
        trainer_mib: r.trainer_peak.map(|b| b.as_mib()),
        agent_mib: s.decision.agent_total.as_mib(),
        capacity_mib: s.decision.capacity.as_mib(),
        plan: s.decision.plan,
        move_seconds: s.move_seconds,
        reload_seconds: s.reload_seconds,
    })
}

fn in_flight(r: &Record) -> InFlight {
    InFlight {
        n: r.n,
        description: r.description.clone(),
        idea: r.idea.clone(),
        choice: r.choice.clone(),
        diff: r.diff.clone(),
        finished_runs: r
            .runs
            .iter()
            .filter(|run| run.commit.is_none() || run.commit == r.commit)
            .map(|run| run.curve.clone())
            .collect(),
    }
}

/// The kept record that was the best when `record` was judged: the last keep before it.
fn best_before<'a>(records: &'a [Record], record: &Record) -> Option<&'a Record> {
    if record.is_baseline() {
        return None;
    }
    records
        .iter()
        .rfind(|r| r.n < record.n && r.outcome == Outcome::Keep)
}

fn first_curve(record: &Record) -> &[[f32; 2]] {
    record
        .runs
        .iter()
        .map(|r: &RunRecord| r.curve.as_slice())
        .find(|c| !c.is_empty())
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::record::tests::record;

    fn kept(n: usize, value: f64, best_before: f64) -> Record {
        let mut r = record(n, Outcome::Keep, Some(value));
        r.decision = Some(crate::research::record::Decision {
            best_before,
            candidate: value,
            improvement: best_before - value,
            margin: 0.03,
            noise_sigma: 0.015,
            noise_prior: None,
            baseline_runs: vec![],
            reference_runs: vec![],
            rule: String::new(),
        });
        r
    }

    fn folder(records: Vec<Record>) -> Folder {
        Folder {
            tag: "t".into(),
            records,
            pending: None,
            live: None,
        }
    }

    #[test]
    fn the_header_and_rows_say_what_the_journal_says() {
        let mut baseline = kept(0, 2.0, 2.0);
        baseline.kind = RecordKind::Baseline;
        baseline.runs = vec![];
        let mut discard = record(2, Outcome::Discard, Some(1.95));
        discard.decision = kept(2, 1.95, 1.9).decision;
        let f = folder(vec![
            baseline,
            kept(1, 1.9, 2.0),
            discard,
            record(3, Outcome::Crash, None),
        ]);
        let o = f.overview();
        let h = &o.header;
        assert_eq!((h.experiments, h.kept), (3, 1));
        assert_eq!(
            (h.baseline, h.best, h.best_n),
            (Some(2.0), Some(1.9), Some(1))
        );
        assert!((h.improvement.unwrap() - 0.1).abs() < 1e-12);
        assert!((h.improvement_percent.unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(h.margin, Some(0.03));
        assert_eq!(h.confirmation, None);
        let deltas: Vec<Option<f64>> = o.rows.iter().map(|r| r.delta).collect();
        assert_eq!(deltas.len(), 4);
        assert_eq!(deltas[0], None, "the baseline is not judged against itself");
        assert!((deltas[1].unwrap() + 0.1).abs() < 1e-12);
        assert!((deltas[2].unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(deltas[3], None);
    }

    #[test]
    fn an_experiment_is_drawn_against_the_best_of_its_time() {
        let mut baseline = kept(0, 2.0, 2.0);
        baseline.kind = RecordKind::Baseline;
        let f = folder(vec![
            baseline,
            kept(1, 1.9, 2.0),
            record(2, Outcome::Discard, Some(1.95)),
            kept(3, 1.8, 1.9),
        ]);
        let best_of = |n| f.detail(n).unwrap().best_n;
        assert_eq!(best_of(0), None);
        assert_eq!(best_of(1), Some(0));
        assert_eq!(best_of(2), Some(1));
        assert_eq!(best_of(3), Some(1));
        assert!(f.detail(9).is_none());
    }

    #[test]
    fn a_folder_without_a_journal_yet_is_empty_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = Folder::read("t", dir.path()).unwrap();
        assert!(f.records.is_empty() && f.pending.is_none() && f.live.is_none());
        assert_eq!(f.overview().header.experiments, 0);
    }

    #[test]
    fn a_record_being_written_is_left_out_until_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&record(0, Outcome::Keep, Some(2.0))).unwrap();
        let half = &line[..line.len() / 2];
        std::fs::write(
            dir.path().join(journal::JOURNAL_FILE),
            format!("{line}\n{half}"),
        )
        .unwrap();
        assert_eq!(Folder::read("t", dir.path()).unwrap().records.len(), 1);
    }
}
