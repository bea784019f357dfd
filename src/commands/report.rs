//! `report`: a run's experiments as a table (best first or in order), its keep rate, best result
//! and noise floor, where the time went, and progress.png.

use anyhow::{bail, Context, Result};

use crate::cli::{ReportArgs, ReportOrder};
use crate::dashboard::page;
use crate::dashboard::view::Folder;
use crate::research::confirmation;
use crate::research::early_stop::{self, Rule};
use crate::research::history::History;
use crate::research::journal;
use crate::research::locate::RunFolder;
use crate::research::noise::{mean, pooling};
use crate::research::plot;
use crate::research::record::{DraftOutcome, Record};
use crate::scheduler::owner::Schedule;
use crate::scheduler::policy::Plan;
use crate::units::Bytes;

pub fn run(args: &ReportArgs) -> Result<()> {
    let RunFolder { tag, dir } = args.run.locate()?;
    let records = journal::read(&dir)?;
    if records.is_empty() {
        bail!("the journal in {} has no experiments yet", dir.display());
    }
    let history = History::new(&records);
    print!("{}", table(&history, args.order));
    print!("{}", summary(&history));
    let png = args.png.clone().unwrap_or_else(|| dir.join("progress.png"));
    let title = format!(
        "autoresearch {tag}: {} experiments after the baseline, {} kept",
        history.experiments_done(),
        history.kept()
    );
    plot::draw(&records, &title, &png).with_context(|| format!("cannot draw {}", png.display()))?;
    println!("chart: {}", png.display());
    if let Some(path) = &args.html {
        let folder = Folder::read(&tag, &dir)?;
        let page = page::self_contained(&tag, &folder.inline());
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "page: {} (opens in a browser, no server needed)",
            path.display()
        );
    }
    Ok(())
}

fn table(history: &History, order: ReportOrder) -> String {
    let mut rows: Vec<&Record> = history.records().iter().collect();
    if let ReportOrder::Best = order {
        rows.sort_by(|a, b| {
            let key = |r: &Record| match r.val_bpb {
                Some(v) if r.outcome.is_judged() => v,
                _ => f64::INFINITY,
            };
            key(a).total_cmp(&key(b)).then(a.n.cmp(&b.n))
        });
    }
    let baseline = history.baseline().and_then(|r| r.val_bpb);
    let mut out = format!(
        "{:<6} {:<13} {:>9} {:>10} {:>6} {:>4} {:<7} {:<8} description\n",
        "exp", "status", "val_bpb", "vs base", "mem_gb", "runs", "commit", "move"
    );
    for r in rows {
        let (value, delta) = match r.val_bpb {
            Some(v) => (
                format!("{v:.6}"),
                baseline.map_or(String::new(), |b| format!("{:+.6}", v - b)),
            ),
            None => ("-".into(), String::new()),
        };
        out.push_str(&format!(
            "e{:04}  {:<13} {value:>9} {delta:>10} {:>6.1} {:>4} {:<7} {:<8} {}\n",
            r.n,
            r.outcome.name(),
            r.trainer_peak.unwrap_or_default().as_gib(),
            r.runs.len(),
            r.commit.map_or("-".into(), |c| c.short()),
            r.choice.as_ref().map_or("-", |c| c.kind.name()),
            r.description
        ));
    }
    out
}

fn summary(history: &History) -> String {
    let mut out = format!(
        "\n{} experiments after the baseline, {} kept ({:.0}%)\n",
        history.experiments_done(),
        history.kept(),
        100.0 * history.keep_rate()
    );
    let best = history.last_kept();
    let base = history.baseline().and_then(|r| r.val_bpb);
    if let (Some(record), Some(value), Some(base)) = (best, best.and_then(|r| r.val_bpb), base) {
        out.push_str(&format!(
            "best val_bpb {value:.6} (e{:04}, commit {}), {:.6} better than the baseline's {base:.6}\n",
            record.n,
            record.commit.map_or("-".into(), |c| c.short()),
            base - value
        ));
    }
    if let Some(d) = history.baseline().and_then(|r| r.decision.as_ref()) {
        out.push_str(&format!(
            "noise floor: sigma {:.6} over {} baseline runs{}; a single run must improve by {:.6}\n",
            d.noise_sigma,
            d.baseline_runs.len(),
            pooling(d.noise_prior),
            d.margin
        ));
    }
    for confirmation in history.confirmations() {
        out.push_str(&format!("{}\n", confirmation::describe(confirmation)));
    }
    if let Some(t) = history.mean_timing() {
        out.push_str(&format!(
            "per experiment (mean): agent {:.1}s, build {:.1}s, training runs {:.1}s (evaluation {:.1}s of it), total {:.1}s\n",
            t.agent_seconds, t.build_seconds, t.training_seconds, t.eval_seconds, t.total_seconds,
        ));
    }
    let drafts = history.drafts().count();
    if drafts > 0 {
        let saved: f64 = history.drafts().map(|d| d.saved_seconds()).sum();
        let waited: f64 = history.drafts().map(|d| d.waited_seconds).sum();
        out.push_str(&format!(
            "think while training: {drafts} drafts, {} used, {} stale; {saved:.1}s of agent time ran beside training ({:.1}s per draft), {waited:.1}s waited for after runs\n",
            history.drafts_with(DraftOutcome::Used),
            history.drafts_with(DraftOutcome::Stale),
            saved / drafts as f64,
        ));
    }
    out.push_str(&early_stopping(history.records()));
    out.push_str(&scheduling(history.records()));
    out
}

/// What early stopping (the default rule) would have done on this run, replayed on its curves.
fn early_stopping(records: &[Record]) -> String {
    let rule = Rule::default();
    let replay = early_stop::replay(records, rule);
    if replay.judged == 0 {
        return String::new();
    }
    let kept = if replay.kept_stopped.is_empty() {
        "none".to_string()
    } else {
        let names: Vec<String> = replay
            .kept_stopped
            .iter()
            .map(|n| format!("e{n:04}"))
            .collect();
        names.join(", ")
    };
    format!(
        "early stopping replayed (from {:.0}% of the budget, margin max({} x the baseline's spread, {}), held over {:.0}% of the budget): {} of {} trained experiments stopped, {:.0}s of {:.0}s of training saved ({:.0}%); kept experiments it would have stopped: {kept}\n",
        100.0 * rule.from_progress,
        rule.spread_factor,
        rule.min_margin,
        100.0 * rule.hold,
        replay.stopped.len(),
        replay.judged,
        replay.saved_seconds,
        replay.training_seconds,
        100.0 * replay.saved_seconds / replay.training_seconds.max(1e-9),
    )
}

/// Where the agent went during the runs, what moving it cost, and what memory an unload left.
fn scheduling(records: &[Record]) -> String {
    let schedules: Vec<&Schedule> = records.iter().filter_map(|r| r.schedule.as_ref()).collect();
    let Some(first) = schedules.first() else {
        return String::new();
    };
    let count = |f: fn(&Plan) -> bool| schedules.iter().filter(|s| f(&s.decision.plan)).count();
    let mut out = format!(
        "{}: the agent stayed for {} experiments, was unloaded for {}, partly offloaded for {}",
        first.device,
        count(|p| *p == Plan::Resident),
        count(|p| *p == Plan::Evict),
        count(|p| matches!(p, Plan::PartialOffload { .. })),
    );
    let moves: Vec<f64> = schedules.iter().filter_map(|s| s.move_seconds).collect();
    let reloads: Vec<f64> = schedules.iter().filter_map(|s| s.reload_seconds).collect();
    if !moves.is_empty() {
        out.push_str(&format!(
            "; moving it took {:.2}s, loading it back {:.2}s (mean)",
            mean(&moves),
            mean(&reloads)
        ));
    }
    let kept: Vec<Bytes> = schedules
        .iter()
        .filter_map(|s| s.kept_after_unload)
        .collect();
    if let (Some(least), Some(most)) = (kept.iter().min(), kept.iter().max()) {
        let returned = schedules
            .iter()
            .filter(|s| s.memory_returned == Some(true))
            .count();
        out.push_str(&format!(
            "; after an unload {}-{} MiB stayed above the pre-load level (back to it in {returned} of {})",
            least.whole_mib(),
            most.whole_mib(),
            kept.len()
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::record::tests::record;
    use crate::research::record::{DraftRecord, Outcome};

    #[test]
    fn the_table_puts_the_best_first_and_failures_last() {
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Crash, None),
            record(2, Outcome::Keep, Some(1.8)),
            record(3, Outcome::Discard, Some(1.85)),
        ];
        let text = table(&History::new(&records), ReportOrder::Best);
        let order: Vec<&str> = text.lines().skip(1).map(|l| &l[..5]).collect();
        assert_eq!(order, ["e0002", "e0003", "e0000", "e0001"]);
        assert!(text.contains("-0.100000"), "{text}");
        let text = summary(&History::new(&records));
        assert!(
            text.contains("3 experiments after the baseline, 1 kept (33%)"),
            "{text}"
        );
        assert!(text.contains("best val_bpb 1.800000 (e0002"), "{text}");
        assert!(!text.contains("think while training"), "{text}");

        let mut drafted = records.clone();
        drafted[2].draft = Some(DraftRecord {
            during: 1,
            seconds: 30.0,
            waited_seconds: 5.0,
            replies: 2,
            outcome: DraftOutcome::Used,
        });
        let text = summary(&History::new(&drafted));
        assert!(
            text.contains("think while training: 1 drafts, 1 used, 0 stale; 25.0s of agent time ran beside training"),
            "{text}"
        );
    }

    #[test]
    fn the_report_says_where_the_agent_went_and_what_an_unload_left() {
        let reading = |free| crate::scheduler::memory::Reading {
            total: Bytes::mib(1000),
            free,
            own_rss: Bytes::ZERO,
        };
        let schedule = |plan, kept: Option<Bytes>| Schedule {
            device: "NVIDIA H200".into(),
            decision: crate::scheduler::policy::Decision {
                plan,
                reason: String::new(),
                trainer_need: None,
                agent_total: Bytes::ZERO,
                capacity: Bytes::ZERO,
            },
            before_load: reading(Bytes::mib(900)),
            before: reading(Bytes::mib(700)),
            after_move: None,
            after_reload: None,
            move_seconds: kept.map(|_| 0.02),
            reload_seconds: kept.map(|_| 0.5),
            memory_returned: kept.map(|k| k <= Bytes::mib(64)),
            kept_after_unload: kept,
        };
        let mut records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Discard, Some(1.95)),
            record(2, Outcome::Keep, Some(1.8)),
        ];
        assert!(!summary(&History::new(&records)).contains("the agent stayed"));
        records[0].schedule = Some(schedule(Plan::Evict, Some(Bytes::mib(592))));
        records[1].schedule = Some(schedule(Plan::Evict, Some(Bytes::mib(600))));
        records[2].schedule = Some(schedule(Plan::Resident, None));
        let text = summary(&History::new(&records));
        assert!(
            text.contains("NVIDIA H200: the agent stayed for 1 experiments, was unloaded for 2, partly offloaded for 0; moving it took 0.02s, loading it back 0.50s (mean); after an unload 592-600 MiB stayed above the pre-load level (back to it in 0 of 2)"),
            "{text}"
        );
    }

    #[test]
    fn the_chart_is_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.png");
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Discard, Some(1.95)),
            record(2, Outcome::Keep, Some(1.8)),
        ];
        plot::draw(&records, "test", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 5_000, "{} bytes", bytes.len());
    }
}
