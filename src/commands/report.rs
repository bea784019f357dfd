//! `report`: a run's experiments as a table (best first or in order), its keep rate, best result
//! and noise floor, where the time went, and progress.png.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{validate_tag, ReportArgs, ReportOrder};
use crate::research::git::checkout_root;
use crate::research::journal::{self, Outcome, Record, JOURNAL_FILE};
use crate::research::noise::mean;
use crate::research::plot;
use crate::research::session::{is_baseline, outcome_name};
use crate::scheduler::owner::Schedule;
use crate::scheduler::policy::Plan;
use crate::scheduler::MIB;

pub fn run(args: &ReportArgs) -> Result<()> {
    let runs = match &args.runs_dir {
        Some(dir) => dir.clone(),
        None => {
            let cwd = std::env::current_dir().context("cannot read the current folder")?;
            checkout_root(args.repo.as_deref().unwrap_or(&cwd))?.join("runs")
        }
    };
    let tag = match &args.tag {
        Some(tag) => {
            validate_tag(tag)?;
            tag.clone()
        }
        None => latest_tag(&runs)?,
    };
    let dir = runs.join(&tag);
    let records = journal::read(&dir)?;
    if records.is_empty() {
        bail!("the journal in {} has no experiments yet", dir.display());
    }
    print!("{}", table(&records, args.order));
    print!("{}", summary(&records));
    let png = args.png.clone().unwrap_or_else(|| dir.join("progress.png"));
    let (experiments, kept) = experiments_and_keeps(&records);
    let title = format!(
        "autoresearch {tag}: {} experiments after the baseline, {kept} kept",
        experiments.len()
    );
    plot::draw(&records, &title, &png).with_context(|| format!("cannot draw {}", png.display()))?;
    println!("chart: {}", png.display());
    Ok(())
}

/// The run whose journal changed last.
fn latest_tag(runs: &Path) -> Result<String> {
    let entries = std::fs::read_dir(runs).with_context(|| {
        format!(
            "no runs in {}: run `autoresearch run` first",
            runs.display()
        )
    })?;
    let latest: Option<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let modified = e
                .path()
                .join(JOURNAL_FILE)
                .metadata()
                .ok()?
                .modified()
                .ok()?;
            Some((modified, e.path()))
        })
        .max();
    match latest {
        Some((_, path)) => Ok(path.file_name().unwrap().to_string_lossy().into_owned()),
        None => bail!("no run with a journal in {}: pass --tag", runs.display()),
    }
}

fn table(records: &[Record], order: ReportOrder) -> String {
    let mut rows: Vec<&Record> = records.iter().collect();
    if let ReportOrder::Best = order {
        rows.sort_by(|a, b| {
            let key = |r: &Record| match r.outcome {
                Outcome::Keep | Outcome::Discard => r.val_bpb.unwrap_or(f64::INFINITY),
                _ => f64::INFINITY,
            };
            key(a).total_cmp(&key(b)).then(a.n.cmp(&b.n))
        });
    }
    let baseline = baseline(records).and_then(|r| r.val_bpb);
    let mut out = format!(
        "{:<6} {:<13} {:>9} {:>10} {:>6} {:>4} {:<7}  description\n",
        "exp", "status", "val_bpb", "vs base", "mem_gb", "runs", "commit"
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
            "e{:04}  {:<13} {value:>9} {delta:>10} {:>6.1} {:>4} {:<7}  {}\n",
            r.n,
            outcome_name(r.outcome),
            r.peak_vram_mb.unwrap_or(0.0) / 1024.0,
            r.runs.len(),
            r.commit.as_deref().map_or("-", |c| &c[..c.len().min(7)]),
            r.description
        ));
    }
    out
}

/// The experiments after the baseline (interrupted ones were re-run or left unfinished), and how
/// many of them were kept.
fn experiments_and_keeps(records: &[Record]) -> (Vec<&Record>, usize) {
    let experiments: Vec<&Record> = records
        .iter()
        .filter(|r| !is_baseline(r) && r.outcome != Outcome::Interrupted)
        .collect();
    let kept = experiments
        .iter()
        .filter(|r| r.outcome == Outcome::Keep)
        .count();
    (experiments, kept)
}

/// The baseline that finished (an interrupted one may come before it).
fn baseline(records: &[Record]) -> Option<&Record> {
    records
        .iter()
        .find(|r| is_baseline(r) && r.outcome == Outcome::Keep)
}

fn summary(records: &[Record]) -> String {
    let (experiments, kept) = experiments_and_keeps(records);
    let mut out = format!(
        "\n{} experiments after the baseline, {kept} kept ({:.0}%)\n",
        experiments.len(),
        100.0 * kept as f64 / experiments.len().max(1) as f64
    );
    let best = records
        .iter()
        .filter(|r| r.outcome == Outcome::Keep)
        .filter_map(|r| Some((r.val_bpb?, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some((value, record)), Some(base)) = (best, baseline(records).and_then(|r| r.val_bpb)) {
        out.push_str(&format!(
            "best val_bpb {value:.6} (e{:04}, commit {}), {:.6} better than the baseline's {base:.6}\n",
            record.n,
            record.commit.as_deref().map_or("-", |c| &c[..c.len().min(7)]),
            base - value
        ));
    }
    if let Some(d) = baseline(records).and_then(|r| r.decision.as_ref()) {
        out.push_str(&format!(
            "noise floor: sigma {:.6} over {} baseline runs; a single run must improve by {:.6}\n",
            d.noise_sigma,
            d.baseline_runs.len(),
            d.margin
        ));
    }
    let per = |f: fn(&Record) -> f64| mean(&experiments.iter().map(|r| f(r)).collect::<Vec<_>>());
    if !experiments.is_empty() {
        out.push_str(&format!(
            "per experiment (mean): agent {:.1}s, build {:.1}s, training runs {:.1}s (evaluation {:.1}s of it), total {:.1}s\n",
            per(|r| r.timing.agent_seconds),
            per(|r| r.timing.build_seconds),
            per(|r| r.timing.training_seconds),
            per(|r| r.timing.eval_seconds),
            per(|r| r.timing.total_seconds),
        ));
    }
    let drafts: Vec<_> = records.iter().filter_map(|r| r.draft.as_ref()).collect();
    if !drafts.is_empty() {
        let used = drafts.iter().filter(|d| d.outcome == "used").count();
        let stale = drafts.iter().filter(|d| d.outcome == "stale").count();
        let saved: f64 = drafts.iter().map(|d| d.saved_seconds()).sum();
        let waited: f64 = drafts.iter().map(|d| d.waited_seconds).sum();
        out.push_str(&format!(
            "think while training: {} drafts, {used} used, {stale} stale; {saved:.1}s of agent time ran beside training ({:.1}s per draft), {waited:.1}s waited for after runs\n",
            drafts.len(),
            saved / drafts.len() as f64,
        ));
    }
    out.push_str(&scheduling(records));
    out
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
    let kept: Vec<u64> = schedules
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
            least / MIB,
            most / MIB,
            kept.len()
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::journal::tests::record;
    use crate::research::journal::DraftRecord;

    #[test]
    fn the_table_puts_the_best_first_and_failures_last() {
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Crash, None),
            record(2, Outcome::Keep, Some(1.8)),
            record(3, Outcome::Discard, Some(1.85)),
        ];
        let text = table(&records, ReportOrder::Best);
        let order: Vec<&str> = text.lines().skip(1).map(|l| &l[..5]).collect();
        assert_eq!(order, ["e0002", "e0003", "e0000", "e0001"]);
        assert!(text.contains("-0.100000"), "{text}");
        let text = summary(&records);
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
            outcome: "used".into(),
        });
        let text = summary(&drafted);
        assert!(
            text.contains("think while training: 1 drafts, 1 used, 0 stale; 25.0s of agent time ran beside training"),
            "{text}"
        );
    }

    #[test]
    fn the_report_says_where_the_agent_went_and_what_an_unload_left() {
        let reading = |free| crate::scheduler::memory::Reading {
            total: 1000 * MIB,
            free,
            own_rss: 0,
        };
        let schedule = |plan, kept: Option<u64>| Schedule {
            device: "NVIDIA H200".into(),
            decision: crate::scheduler::policy::Decision {
                plan,
                reason: String::new(),
                trainer_need: None,
                agent_total: 0,
                capacity: 0,
            },
            before_load: reading(900 * MIB),
            before: reading(700 * MIB),
            after_move: None,
            after_reload: None,
            move_seconds: kept.map(|_| 0.02),
            reload_seconds: kept.map(|_| 0.5),
            memory_returned: kept.map(|k| k <= 64 * MIB),
            kept_after_unload: kept,
        };
        let mut records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Discard, Some(1.95)),
            record(2, Outcome::Keep, Some(1.8)),
        ];
        assert!(!summary(&records).contains("the agent stayed"));
        records[0].schedule = Some(schedule(Plan::Evict, Some(592 * MIB)));
        records[1].schedule = Some(schedule(Plan::Evict, Some(600 * MIB)));
        records[2].schedule = Some(schedule(Plan::Resident, None));
        let text = summary(&records);
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
