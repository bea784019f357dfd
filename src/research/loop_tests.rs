//! The loop's control logic, driven by a scripted agent and a scripted trainer on a real git
//! repository and a real journal: keep and discard against the noise, the retry of an
//! interrupted experiment, the reset after failures, draft adoption, a stop while the agent
//! writes, and failures of the machine that end the loop without blaming the agent.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use harness::summary::Summary;

use super::controller::{Choice, Move};
use super::draft::Draft;
use super::git::tests::scratch_repo;
use super::git::Workspace;
use super::history::History;
use super::progress::Ui;
use super::record::{CommitId, DraftOutcome, Outcome, Record, RecordKind};
use super::runner::{Lane, RunEvents, Trainer};
use super::session::{Ending, Research};
use super::settings::{ActionChoice, Settings};
use super::sourcing::{Ask, Proposer};
use super::stop::Stop;
use crate::agent::edit::Rejection;
use crate::agent::ledger::Tried;
use crate::agent::prompt::Action;
use crate::agent::propose::{Attempt, DraftReply, Event, Observer, ProposeError, Verdict};
use crate::program::Protocol;
use crate::trainer::build::Built;
use crate::trainer::run::{Outcome as RunOutcome, RunReport};
use crate::trainer::TrainerError;
use crate::units::Seconds;

/// What the scripted agent does when asked for proposals.
enum Reply {
    /// A valid candidate: this text.
    Valid(&'static str),
    /// A proposal that did not apply.
    Rejected,
    /// The user presses Ctrl-C while the agent writes.
    StopWhileWriting,
}

/// What the scripted agent was asked.
#[derive(Debug, Clone)]
struct Asked {
    n: usize,
    action: Action,
    reset: bool,
    last_failure: Option<String>,
}

#[derive(Default)]
struct ScriptedAgent {
    replies: VecDeque<Reply>,
    /// Drafts handed over after an experiment's runs (a round's: several).
    drafts: VecDeque<Vec<Draft>>,
    /// Verdicts for drafted replies, by whether they still apply.
    adopt_valid: VecDeque<Option<&'static str>>,
    asked: Vec<Asked>,
    adopted: usize,
    remembered: Vec<Tried>,
    stop: Stop,
}

fn attempt(action: Action, verdict: Verdict) -> Attempt {
    Attempt {
        action,
        ..super::sourcing::tests::attempt(verdict)
    }
}

impl Proposer for ScriptedAgent {
    fn propose(
        &mut self,
        ask: &Ask,
        action: Action,
        count: usize,
        _seed: u32,
        observe: &mut Observer,
    ) -> Result<Vec<Attempt>, ProposeError> {
        self.asked.push(Asked {
            n: ask.n,
            action,
            reset: ask.context.reset,
            last_failure: ask.context.memory.last_failure.clone(),
        });
        let mut attempts = Vec::new();
        for _ in 0..count {
            let verdict = match self.replies.pop_front().expect("a scripted reply") {
                Reply::Valid(text) => Verdict::Valid(text.into()),
                Reply::Rejected => Verdict::Rejected(Rejection::NoOp),
                Reply::StopWhileWriting => {
                    self.stop.request();
                    let _ = observe(Event::Writing {
                        tokens: 3,
                        seconds: 0.1,
                    });
                    return Ok(attempts);
                }
            };
            attempts.push(attempt(action, verdict));
            if observe(Event::Finished(attempts.last().unwrap())).is_break() {
                break;
            }
        }
        Ok(attempts)
    }

    fn adopt(
        &mut self,
        _ask: &Ask,
        reply: &DraftReply,
        _seed: u32,
        _observe: &mut Observer,
    ) -> Result<Attempt, ProposeError> {
        self.adopted += 1;
        let verdict = match self.adopt_valid.pop_front().expect("a scripted adoption") {
            Some(text) => Verdict::Valid(text.into()),
            None => Verdict::Rejected(Rejection::NotFound("const A".into())),
        };
        Ok(attempt(reply.action, verdict))
    }

    fn remember(&mut self, tried: Tried) {
        self.remembered.push(tried);
    }

    fn finish_drafts(&mut self) -> anyhow::Result<Vec<Draft>> {
        Ok(self.drafts.pop_front().unwrap_or_default())
    }
}

/// What a scripted training run does.
enum Run {
    Finished(f64),
    /// A run whose training loss trails the others' by a whole nat all along, and would finish
    /// with this val_bpb if let.
    Behind(f64),
    Crashed,
    /// Ctrl-C during the run.
    Interrupted,
}

/// What a scripted build does.
enum Build {
    Ok,
    Compile,
    DiskFull,
}

#[derive(Default)]
struct ScriptedTrainer {
    builds: VecDeque<Build>,
    /// Taken in turn by runs one at a time.
    runs: Mutex<VecDeque<Run>>,
    /// Runs side by side take theirs by run folder (`e0001/run1`), whatever order their lanes
    /// start in.
    by_dir: Mutex<Vec<(&'static str, Run)>>,
    stop: Stop,
}

fn summary(val_bpb: f64) -> Summary {
    Summary {
        val_bpb,
        training_seconds: 5.0,
        total_seconds: 7.0,
        peak_vram_mb: 512.0,
        mfu_percent: 1.0,
        total_tokens_m: 0.1,
        num_steps: 10,
        num_params_m: 1.0,
        depth: 4,
        profile: "cpu".into(),
        device: "scripted".into(),
        mfu_peak: None,
        eval_tokens: 8192,
        eval_seconds: 1.0,
        tokens_per_second: 1000.0,
        epochs: 1,
        parts: None,
        stolen_seconds: 0.0,
    }
}

impl Trainer for ScriptedTrainer {
    fn build(&mut self, _text: &str) -> Result<Built, TrainerError> {
        match self.builds.pop_front().unwrap_or(Build::Ok) {
            Build::Ok => Ok(Built {
                binary: PathBuf::from("/scripted/trainer"),
                seconds: 0.5,
            }),
            Build::Compile => Err(TrainerError::Compile {
                file: "train.rs".into(),
                errors: "error[E0425]: cannot find value `x`".into(),
            }),
            Build::DiskFull => Err(TrainerError::DiskFull {
                target: "/target".into(),
                detail: "No space left on device (os error 28)".into(),
            }),
        }
    }

    fn run(
        &self,
        _binary: &Path,
        run_dir: &Path,
        _seed: u64,
        _lane: Lane,
        events: &mut dyn RunEvents,
    ) -> Result<RunReport, TrainerError> {
        std::fs::create_dir_all(run_dir).unwrap();
        let mut by_dir = self.by_dir.lock().unwrap();
        let run = match by_dir.iter().position(|(dir, _)| run_dir.ends_with(dir)) {
            Some(i) => by_dir.remove(i).1,
            None => self
                .runs
                .lock()
                .unwrap()
                .pop_front()
                .expect("a scripted run"),
        };
        drop(by_dir);
        // Ten step lines, the loss falling from 5.0; the caller may stop the run at any of them.
        let behind = if matches!(run, Run::Behind(_)) {
            1.0
        } else {
            0.0
        };
        for step in 1..=10 {
            let loss = 5.0 - 0.2 * step as f64 + behind;
            let line = format!(
                "step {step:05} ({:.1}%) | loss {loss:.4} | dt 1ms | tok/s 1000 | epoch 1",
                10.0 * step as f64
            );
            if events.line(&line).is_break() {
                return Ok(RunReport {
                    outcome: RunOutcome::Abandoned,
                    log: run_dir.join("train.log"),
                    seconds: 0.6 * step as f64,
                    tail: vec![line],
                    placed: None,
                });
            }
        }
        let outcome = match run {
            Run::Finished(v) | Run::Behind(v) => RunOutcome::Finished(Box::new(summary(v))),
            Run::Crashed => RunOutcome::Crashed {
                exit: "exit code 101".into(),
            },
            Run::Interrupted => {
                self.stop.request();
                RunOutcome::Interrupted
            }
        };
        Ok(RunReport {
            outcome,
            log: run_dir.join("train.log"),
            seconds: 6.0,
            tail: vec!["the last line".into()],
            placed: None,
        })
    }
}

/// The loop's settings for scripted runs: three baseline runs, up to two runs a candidate, two
/// SET proposals an experiment, the controller, early stopping and paired judging off (their own
/// tests drive them).
pub(crate) fn settings() -> Settings {
    Settings {
        tag: "t".parse().unwrap(),
        dir: PathBuf::from("runs/t"),
        budget: Seconds::new(5.0).unwrap(),
        timeout: Duration::from_secs(60),
        max_experiments: None,
        deadline: None,
        baseline_runs: 3,
        max_runs: 2,
        min_improvement: 0.0001,
        reset_after: 3,
        proposals: 2,
        action: ActionChoice::Set,
        program: PathBuf::from("program.md"),
        controller: false,
        sampler: false,
        early_stop: false,
        paired: false,
        gpu: false,
        workers: 1,
    }
}

struct Scene {
    _dir: tempfile::TempDir,
    checkout: PathBuf,
    settings: Settings,
}

impl Scene {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let checkout = dir.path().join("repo");
        scratch_repo(&checkout);
        let settings = Settings {
            dir: dir.path().join("runs/t"),
            program: checkout.join("program.md"),
            ..settings()
        };
        Scene {
            _dir: dir,
            checkout,
            settings,
        }
    }

    /// Runs the loop until it ends; returns how, the journal, and the agent (what it was asked).
    fn run(
        &self,
        settings: Settings,
        mut agent: ScriptedAgent,
        mut trainer: ScriptedTrainer,
    ) -> (anyhow::Result<Ending>, Vec<Record>, ScriptedAgent) {
        let stop = Stop::new();
        agent.stop = stop.clone();
        trainer.stop = stop.clone();
        let mut research = Research::open(
            settings,
            &self.checkout,
            Protocol::load(&self.checkout.join("program.md")).unwrap(),
            agent,
            trainer,
            Ui::new(true),
            stop,
        )
        .unwrap();
        let ending = research.run();
        let records = research.history().records().to_vec();
        (ending, records, research.into_proposer())
    }

    fn with_max(&self, max: usize) -> Settings {
        Settings {
            max_experiments: Some(max),
            ..self.settings.clone()
        }
    }
}

/// Replies that set `A` to 2.0, 3.0, ... in turn: `n` valid candidates, one per experiment.
fn setting_a(n: usize) -> ScriptedAgent {
    const SETS: [&str; 3] = [
        "const A: f64 = 2.0;\n",
        "const A: f64 = 3.0;\n",
        "const A: f64 = 4.0;\n",
    ];
    ScriptedAgent {
        replies: SETS[..n].iter().map(|&set| Reply::Valid(set)).collect(),
        ..Default::default()
    }
}

fn outcomes(records: &[Record]) -> Vec<Outcome> {
    records.iter().map(|r| r.outcome).collect()
}

fn runs(values: &[f64]) -> VecDeque<Run> {
    values.iter().map(|&v| Run::Finished(v)).collect()
}

#[test]
fn only_what_beats_the_noise_is_kept() {
    let scene = Scene::new();
    let agent = ScriptedAgent {
        replies: [
            Reply::Valid("const A: f64 = 2.0;\n"),
            Reply::Rejected,
            Reply::Valid("const A: f64 = 3.0;\n"),
            Reply::Valid("const A: f64 = 4.0;\n"),
        ]
        .into(),
        ..Default::default()
    };
    let mut scripted = runs(&[1.80, 1.82, 1.81, 1.75, 1.74, 1.745]);
    scripted.push_back(Run::Crashed);
    let trainer = ScriptedTrainer {
        runs: Mutex::new(scripted),
        ..Default::default()
    };
    let (ending, records, agent) = scene.run(scene.with_max(3), agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(
        outcomes(&records),
        [
            Outcome::Keep,
            Outcome::Keep,
            Outcome::Discard,
            Outcome::Crash
        ]
    );
    let base = &records[0];
    assert_eq!(base.kind, RecordKind::Baseline);
    assert_eq!(base.runs.len(), 3);
    // sigma 0.01 over three runs, pooled with the cpu profile's 0.016 as two more:
    // sqrt((2 x 0.01^2 + 2 x 0.016^2) / 4) = 0.013342, so a single run must improve by 0.026683.
    let decision = base.decision.as_ref().unwrap();
    assert!((decision.margin - 0.026_683).abs() < 1e-6, "{decision:?}");
    // 1.75 beats 1.81 by 0.06. 1.74 is better than 1.75 but within the noise, so it ran again,
    // and the mean of 1.74 and 1.745 does not clear 0.026683 / sqrt(2).
    assert_eq!(records[2].runs.len(), 2);
    assert_eq!(records[2].decision.as_ref().unwrap().best_before, 1.75);
    assert_eq!(
        records[3]
            .error
            .as_deref()
            .map(|e| e.lines().next().unwrap()),
        Some("the training program crashed (exit code 101) without a result")
    );
    // The rejected proposal was recorded on the experiment that used the next one.
    assert_eq!(records[2].rejections, ["the edit changes nothing"]);
    assert_eq!(records[2].proposals, 2);
    // The branch is at the kept commit, and every file was remembered as tried.
    let best = History::new(&records).best().unwrap();
    assert_eq!(best.commit, records[1].commit.unwrap());
    assert_eq!(agent.remembered.len(), 4);
    assert!(agent.asked.iter().all(|a| a.action == Action::Set));
}

#[test]
fn a_promising_candidate_is_judged_against_the_best_file_run_beside_it() {
    let scene = Scene::new();
    let agent = setting_a(3);
    // The baseline (sigma 0.01, pooled 0.0133, margin 0.0267), then the machine speeds up:
    // e0001's 1.99 and 1.99 beat the baseline's recorded 2.01 enough to be kept by the stale
    // rule, but the baseline run again beside it makes 1.97. e0002 is better than even that;
    // e0003 is not promising.
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[
            2.00, 2.02, 2.01, 1.99, 1.97, 1.99, 1.95, 1.99, 2.05,
        ])),
        ..Default::default()
    };
    let settings = Settings {
        paired: true,
        ..scene.with_max(3)
    };
    let (ending, records, _) = scene.run(settings, agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(
        outcomes(&records),
        [
            Outcome::Keep,
            Outcome::Discard,
            Outcome::Keep,
            Outcome::Discard
        ]
    );
    let base = records[0].commit.unwrap();
    let files =
        |r: &Record| -> Vec<Option<CommitId>> { r.runs.iter().map(|run| run.commit).collect() };
    // The candidate, the best file with the same seed, the candidate again.
    assert_eq!(files(&records[1]), [None, Some(base), None]);
    let first = records[1].decision.as_ref().unwrap();
    assert_eq!(first.reference_runs, [2.02, 2.01, 1.97]);
    // Its own runs only: 1.99, not the best file's 1.97.
    assert_eq!(records[1].val_bpb, Some(1.99));
    assert!((first.improvement - 0.01).abs() < 1e-9, "{first:?}");
    // The next judges against the best's latest three runs, the last made beside it: 1.95 beats
    // their 1.99 by more than 0.0267 x sqrt(1 + 1/3).
    assert_eq!(files(&records[2]), [None, Some(base)]);
    assert_eq!(
        records[2].decision.as_ref().unwrap().reference_runs,
        [2.01, 1.97, 1.99]
    );
    // Worse than the new best's own run: no run of the best beside it.
    assert_eq!(records[3].runs.len(), 1);
    assert_eq!(records[3].decision.as_ref().unwrap().reference_runs, [1.95]);
    assert_eq!(
        History::new(&records).runs_of(base, 5.0),
        [2.00, 2.02, 2.01, 1.97, 1.99]
    );
    // Runs at another budget (a resumed tag with another --budget) are not this bar.
    assert!(History::new(&records).runs_of(base, 60.0).is_empty());
}

#[test]
fn a_keep_on_one_lucky_run_is_run_again_before_it_bars_a_candidate_within_the_noise() {
    let scene = Scene::new();
    let agent = setting_a(2);
    // The baseline (margin 0.0267); e0001 is kept on one run, 1.90, the baseline beside it making
    // 2.01. Its file runs 1.96 when run again: 1.90 was a lucky draw. e0002's first run, 1.91, is
    // behind that draw but within the noise of one run (0.0267 x sqrt(2) = 0.0377), so e0001's
    // file runs beside it; against their mean, 1.93, e0002 is better but within the noise, runs
    // again (1.89), and its mean 1.90 clears 0.0267 x sqrt(1/2 + 1/2).
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[2.00, 2.02, 2.01, 1.90, 2.01, 1.91, 1.96, 1.89])),
        ..Default::default()
    };
    let settings = Settings {
        paired: true,
        ..scene.with_max(2)
    };
    let (ending, records, _) = scene.run(settings, agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(
        outcomes(&records),
        [Outcome::Keep, Outcome::Keep, Outcome::Keep]
    );
    let first = records[1].commit.unwrap();
    let files: Vec<Option<CommitId>> = records[2].runs.iter().map(|run| run.commit).collect();
    assert_eq!(files, [None, Some(first), None]);
    let decision = records[2].decision.as_ref().unwrap();
    assert_eq!(decision.reference_runs, [1.90, 1.96]);
    assert!((decision.improvement - 0.03).abs() < 1e-9, "{decision:?}");
    assert_eq!(History::new(&records).runs_of(first, 5.0), [1.90, 1.96]);
}

#[test]
fn a_streak_of_failures_resets_the_agent_to_the_best_file() {
    let scene = Scene::new();
    let settings = Settings {
        reset_after: 2,
        proposals: 1,
        ..scene.with_max(3)
    };
    let agent = ScriptedAgent {
        replies: [Reply::Rejected, Reply::Rejected, Reply::Rejected].into(),
        ..Default::default()
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[1.8, 1.8, 1.8])),
        ..Default::default()
    };
    let (ending, records, agent) = scene.run(settings, agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(
        outcomes(&records)[1..],
        [Outcome::Rejected, Outcome::Rejected, Outcome::Rejected]
    );
    let asked: Vec<(usize, bool)> = agent.asked.iter().map(|a| (a.n, a.reset)).collect();
    assert_eq!(asked, [(1, false), (2, false), (3, true)]);
    assert!(agent.asked[1]
        .last_failure
        .as_deref()
        .unwrap()
        .starts_with("The last experiment"));
    assert!(agent.asked[2]
        .last_failure
        .as_deref()
        .unwrap()
        .starts_with("The last 2 experiments failed:"));
    assert!(records[3].agent_reset && !records[2].agent_reset);
}

#[test]
fn an_interrupted_experiment_is_run_again_once_as_it_was() {
    let scene = Scene::new();
    let agent = setting_a(1);
    let mut scripted = runs(&[1.8, 1.8, 1.8]);
    scripted.push_back(Run::Interrupted);
    let trainer = ScriptedTrainer {
        runs: Mutex::new(scripted),
        ..Default::default()
    };
    let (ending, records, _) = scene.run(scene.settings.clone(), agent, trainer);
    assert_eq!(ending.unwrap(), Ending::Stopped);
    assert_eq!(outcomes(&records), [Outcome::Keep, Outcome::Interrupted]);
    let interrupted = records[1].clone();

    // Resumed: the agent is not asked; the interrupted candidate runs again, and is
    // interrupted again.
    let trainer = ScriptedTrainer {
        runs: Mutex::new([Run::Interrupted].into()),
        ..Default::default()
    };
    let (ending, records, agent) =
        scene.run(scene.settings.clone(), ScriptedAgent::default(), trainer);
    assert_eq!(ending.unwrap(), Ending::Stopped);
    assert!(agent.asked.is_empty());
    let retry = &records[2];
    assert_eq!(retry.retry_of, Some(1));
    assert_eq!(retry.idea, interrupted.idea);
    assert_eq!(retry.file_sha256, interrupted.file_sha256);
    assert_eq!(retry.parent, interrupted.parent);

    // A re-run that was interrupted is not run a third time: the agent writes afresh.
    let agent = ScriptedAgent {
        replies: [Reply::Valid("const A: f64 = 5.0;\n")].into(),
        ..Default::default()
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[1.9])),
        ..Default::default()
    };
    let (ending, records, agent) = scene.run(scene.with_max(1), agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(agent.asked.len(), 1);
    assert_eq!(records[3].retry_of, None);
    assert_eq!(records[3].outcome, Outcome::Discard);
}

/// A draft written beside experiment `during`'s runs, with a reply that applied then.
fn draft_of(during: usize) -> Draft {
    Draft {
        during,
        choice: None,
        replies: 2,
        reply: Some(DraftReply {
            action: Action::Set,
            reply: "IDEA: x\nSET A = 9.0\n".into(),
            reply_tokens: 12,
            generate_seconds: 0.3,
        }),
        seconds: 4.0,
        waited_seconds: 1.0,
    }
}

#[test]
fn a_draft_is_used_while_it_still_applies_and_recorded_when_it_does_not() {
    let scene = Scene::new();
    let draft = draft_of;
    let agent = ScriptedAgent {
        // The baseline's runs and e1's runs each leave a draft.
        drafts: [vec![draft(0)], vec![draft(1)]].into(),
        // e1 uses its draft; e2's no longer applies, so the agent writes afresh.
        adopt_valid: [Some("const A: f64 = 9.0;\n"), None].into(),
        replies: [Reply::Valid("const A: f64 = 7.0;\n")].into(),
        ..Default::default()
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[1.8, 1.8, 1.8, 1.9, 1.9])),
        ..Default::default()
    };
    let (ending, records, agent) = scene.run(scene.with_max(2), agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(agent.adopted, 2);
    let used = records[1].draft.as_ref().unwrap();
    assert_eq!((used.during, used.outcome), (0, DraftOutcome::Used));
    assert_eq!(used.saved_seconds(), 3.0);
    assert_eq!(records[1].proposals, 1);
    let stale = records[2].draft.as_ref().unwrap();
    assert_eq!((stale.during, stale.outcome), (1, DraftOutcome::Stale));
    assert_eq!(records[2].proposals, 2);
    assert_eq!(records[2].rejections.len(), 1);
    // Only e2 asked for fresh proposals.
    assert_eq!(agent.asked.iter().map(|a| a.n).collect::<Vec<_>>(), [2]);
}

#[test]
fn a_stop_while_the_agent_writes_records_an_experiment_without_a_candidate() {
    let scene = Scene::new();
    let agent = ScriptedAgent {
        replies: [Reply::StopWhileWriting].into(),
        ..Default::default()
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[1.8, 1.8, 1.8])),
        ..Default::default()
    };
    let (ending, records, _) = scene.run(scene.settings.clone(), agent, trainer);
    assert_eq!(ending.unwrap(), Ending::Stopped);
    let stopped = &records[1];
    assert_eq!(stopped.outcome, Outcome::Interrupted);
    assert_eq!(stopped.description, "stopped while the agent was writing");
    assert!(stopped.commit.is_none() && stopped.runs.is_empty());
    // Nothing to run again: the next start asks the agent.
    assert!(History::new(&records).to_retry().is_none());
}

#[test]
fn a_compile_error_is_the_agents_and_a_full_disk_the_machines() {
    let scene = Scene::new();
    let agent = setting_a(2);
    let trainer = ScriptedTrainer {
        builds: [Build::Ok, Build::Compile, Build::DiskFull].into(),
        runs: Mutex::new(runs(&[1.8, 1.8, 1.8])),
        ..Default::default()
    };
    let (ending, records, _) = scene.run(scene.settings.clone(), agent, trainer);
    let err = format!("{:#}", ending.unwrap_err());
    assert!(
        err.contains("the disk holding the build folder /target is full")
            && err.contains("free space there"),
        "{err}"
    );
    assert_eq!(outcomes(&records), [Outcome::Keep, Outcome::CompileError]);
    assert!(records[1]
        .error
        .as_deref()
        .unwrap()
        .contains("cannot find value `x`"));
    // The candidate the machine could not build is pending: the next start records it as
    // interrupted and runs it again, nothing is held against the agent.
    let pending = super::pending::load(&scene.settings.dir).unwrap().unwrap();
    assert_eq!(pending.n, 2);
    assert!(pending.commit.is_some());
}

#[test]
fn the_controller_asks_for_its_move_and_a_draft_for_another_move_is_stale() {
    let scene = Scene::new();
    let settings = Settings {
        controller: true,
        sampler: true,
        ..scene.with_max(2)
    };
    let other = Choice {
        kind: Move::Ablate,
        category: None,
        builds_on: vec![],
        reason: "written for another move".into(),
    };
    let agent = ScriptedAgent {
        // The baseline's runs leave a draft written for a move the controller will not choose.
        drafts: [vec![Draft {
            choice: Some(other),
            ..draft_of(0)
        }]]
        .into(),
        ..setting_a(2)
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[1.8, 1.8, 1.8, 1.9, 1.9])),
        ..Default::default()
    };
    let (ending, records, agent) = scene.run(settings, agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(agent.adopted, 0, "a draft for another move is not used");
    assert_eq!(
        records[1].draft.as_ref().unwrap().outcome,
        DraftOutcome::Stale
    );
    // The first experiment is a hyperparameter move, asked as TUNE (the sampler is on).
    let first = records[1].choice.as_ref().unwrap();
    assert_eq!(first.kind, Move::Tune);
    assert_eq!(agent.asked[0].action, Action::Tune);
    assert!(records.iter().skip(1).all(|r| r.choice.is_some()));
    // What each candidate changed, and its constants, are recorded.
    assert_eq!(records[1].changes[0].to_string(), "A 1.0 -> 2.0");
    assert_eq!(records[1].constants.as_ref().unwrap()["A"], "2.0");
}

#[test]
fn a_run_that_falls_behind_the_best_is_stopped_early_and_recorded_with_its_curve() {
    let scene = Scene::new();
    let agent = setting_a(2);
    // Three baseline runs, then a candidate that trails them: it would even have finished
    // better, so only the live rule can end it.
    let mut scripted = runs(&[1.80, 1.81, 1.80]);
    scripted.push_back(Run::Behind(1.70));
    let trainer = ScriptedTrainer {
        runs: Mutex::new(scripted),
        ..Default::default()
    };
    let settings = Settings {
        early_stop: true,
        ..scene.with_max(1)
    };
    let (ending, records, _) = scene.run(settings, agent, trainer);
    ending.unwrap();
    assert_eq!(outcomes(&records), [Outcome::Keep, Outcome::StoppedEarly]);
    let stopped = &records[1];
    assert_eq!(stopped.val_bpb, None);
    assert_eq!(stopped.runs.len(), 1, "a stopped run is not run again");
    let run = &stopped.runs[0];
    assert_eq!(run.outcome, super::record::RunEnd::StoppedEarly);
    // Stopped past half the budget, once the loss stayed behind over a fifth of it: at 70 %.
    let last = run.curve.last().unwrap();
    assert_eq!(run.curve.len(), 7, "{:?}", run.curve);
    assert!(
        (last[0] - 0.7).abs() < 1e-6 && (last[1] - 4.6).abs() < 1e-6,
        "{last:?}"
    );
    let why = stopped.error.as_deref().unwrap();
    assert!(
        why.starts_with("stopped early at 70% of the budget"),
        "{why}"
    );
}

/// Commits `text` as the checkout's training file: the file the run starts from.
fn start_from(checkout: &Path, text: &str) {
    let repo = git2::Repository::open(checkout).unwrap();
    std::fs::write(checkout.join(super::git::TRAIN_FILE), text).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new(super::git::TRAIN_FILE)).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let me = git2::Signature::now("t", "t@t").unwrap();
    repo.commit(Some("HEAD"), &me, &me, "two constants", &tree, &[&head])
        .unwrap();
}

#[test]
fn a_round_keeps_its_best_candidate_and_requeues_the_other_on_top() {
    let scene = Scene::new();
    let file = |a: f64, b: f64| -> &'static str {
        let text = format!("const A: f64 = {a:?};\n\n// apart\n\nconst B: f64 = {b:?};\n");
        Box::leak(text.into_boxed_str())
    };
    start_from(&scene.checkout, file(1.0, 1.0));
    let agent = ScriptedAgent {
        replies: [
            Reply::Valid(file(2.0, 1.0)),
            // The other constant: it still applies on top of the first.
            Reply::Valid(file(1.0, 2.0)),
        ]
        .into(),
        // Beside the first round's runs the agent drafts one proposal per worker; the next
        // round's agent candidate is the first of them.
        drafts: [vec![], vec![draft_of(2), draft_of(2)]].into(),
        adopt_valid: [Some(file(3.0, 1.0))].into(),
        ..Default::default()
    };
    let trainer = ScriptedTrainer {
        runs: Mutex::new(runs(&[2.00, 2.01, 1.99])),
        by_dir: Mutex::new(vec![
            ("e0001/run1", Run::Finished(1.90)),
            ("e0002/run1", Run::Finished(1.95)),
            ("e0003/run1", Run::Finished(1.85)),
            ("e0004/run1", Run::Finished(2.10)),
        ]),
        ..Default::default()
    };
    let settings = Settings {
        workers: 2,
        ..scene.with_max(4)
    };
    let (ending, records, agent) = scene.run(settings, agent, trainer);
    assert_eq!(ending.unwrap(), Ending::MaxExperiments);
    assert_eq!(
        outcomes(&records),
        [
            Outcome::Keep,
            Outcome::Keep,
            Outcome::Requeued,
            Outcome::Keep,
            Outcome::Discard
        ]
    );
    // Both candidates of the first round were made on the baseline and judged against it.
    let base = records[0].commit.unwrap();
    assert!(records[1..3].iter().all(|r| r.parent == base));
    assert_eq!(
        records[2].decision.as_ref().unwrap().best_before,
        records[0].val_bpb.unwrap()
    );
    // The beaten one's change, on top of the winner, came first in the next round.
    let requeued = &records[3];
    assert_eq!(requeued.requeue_of, Some(2));
    assert_eq!(requeued.parent, records[1].commit.unwrap());
    let ws = Workspace::open(&scene.checkout, "t", &scene.settings.dir.join("worktree")).unwrap();
    assert_eq!(
        ws.file_at(requeued.commit.unwrap()).unwrap(),
        file(2.0, 2.0)
    );
    // The agent was asked for the first round's two; the second round's came from its draft.
    let asked: Vec<usize> = agent.asked.iter().map(|a| a.n).collect();
    assert_eq!(asked, [1, 2]);
    let used = records[4].draft.as_ref().unwrap();
    assert_eq!((used.during, used.outcome), (2, DraftOutcome::Used));
    assert_eq!(agent.adopted, 1);
}
