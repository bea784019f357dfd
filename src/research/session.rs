//! One research run (a tag): recover what a crash left, measure the baseline and its noise, then
//! experiment until told to stop. Every experiment is committed before it trains, saved as
//! pending while it runs, and appended to the journal before the branch moves, so the journal is
//! the truth and everything else (branch, results.tsv) is rebuilt from it on the next start.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::draft::{Draft, DraftJob, Drafting};
use super::git::{parse_oid, Workspace};
use super::journal::{Decision, DraftRecord, Journal, Outcome, Record, RunRecord, Timing};
use super::lock::RunLock;
use super::noise::{mean, Judgement, NoiseFloor};
use super::progress::Ui;
use super::{pending, stop};
use crate::agent::edit::Ledger;
use crate::agent::prompt::{Action, PastExperiment, PromptInput};
use crate::agent::propose::{Agent, Attempt, Event, Settings as AgentSettings, Verdict};
use crate::cli::{ActionChoice, ThinkChoice};
use crate::scheduler::memory::Kind;
use crate::scheduler::owner::{DeviceOwner, Schedule};
use crate::scheduler::policy::Plan;
use crate::scheduler::MIB;
use crate::trainer::{build, run};

/// Experiments the agent sees in its prompt.
const HISTORY: usize = 8;

pub struct Settings {
    pub tag: String,
    /// runs/<tag>: journal, results, lock, per-experiment folders, the worktree.
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub budget: f64,
    pub timeout: Duration,
    /// Stop once the tag's journal holds this many experiments (baseline and interrupted ones
    /// not counted).
    pub max_experiments: Option<usize>,
    pub deadline: Option<Instant>,
    pub baseline_runs: usize,
    /// Most runs of one candidate (1 = no confirmation runs).
    pub max_runs: usize,
    pub min_improvement: f64,
    /// Consecutive failures after which the agent starts over from the best file.
    pub reset_after: usize,
    /// Proposals per experiment before it is recorded as rejected.
    pub proposals: usize,
    pub action: ActionChoice,
    pub program: PathBuf,
    pub think: ThinkChoice,
}

/// Why the loop ended.
pub enum Ending {
    MaxExperiments,
    Deadline,
    Stopped,
}

pub struct Research {
    settings: Settings,
    workspace: Workspace,
    journal: Journal,
    /// The agent's model and the device it shares with the trainer.
    owner: DeviceOwner,
    /// The rest of the agent, lent to an `Agent` for each proposal.
    program: String,
    agent_settings: AgentSettings,
    ledger: Ledger,
    /// The current experiment's scheduling, completed when it is recorded.
    schedule: Option<Schedule>,
    /// Whether the agent writes the next proposal during training runs, the draft being written,
    /// and the one waiting for the next proposal.
    thinks: bool,
    drafting: Option<Drafting>,
    draft: Option<Draft>,
    ui: Ui,
    _lock: RunLock,
}

struct Best {
    commit: git2::Oid,
    val_bpb: f64,
}

/// The agent as the command line set it up, and the device's owner.
pub struct AgentParts {
    pub owner: DeviceOwner,
    pub program: String,
    pub settings: AgentSettings,
}

impl Research {
    pub fn open(settings: Settings, checkout: &Path, agent: AgentParts, ui: Ui) -> Result<Self> {
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("cannot create {}", settings.dir.display()))?;
        let lock = RunLock::acquire(&settings.dir, &settings.tag)?;
        let workspace = Workspace::open(checkout, &settings.tag, &settings.dir.join("worktree"))?;
        let (mut journal, torn) = Journal::open(&settings.dir)?;
        if let Some(torn) = torn {
            ui.say(&format!(
                "the journal's last line was cut short by a crash; it is kept in {}",
                torn.display()
            ));
        }
        if let Some(mut record) = pending::load(&settings.dir)? {
            if journal.records().iter().all(|r| r.n != record.n) {
                record.finished = now();
                ui.say(&format!(
                    "e{:04} was in flight when the last run ended: recorded as interrupted",
                    record.n
                ));
                journal.append(record)?;
            }
            pending::clear(&settings.dir)?;
        }
        let mut ledger = Ledger::default();
        let mut owner = agent.owner;
        for record in journal.records() {
            if let Some(hash) = &record.file_sha256 {
                ledger.insert_hash(hash);
            }
            if let Some(peak) = record.peak_vram_mb {
                owner.note_trainer_peak((peak * MIB as f64) as u64);
            }
        }
        let thinks = match settings.think {
            ThinkChoice::Always => true,
            ThinkChoice::Never => false,
            ThinkChoice::Auto => owner.device.kind == Kind::Gpu,
        };
        Ok(Research {
            thinks,
            drafting: None,
            draft: None,
            settings,
            workspace,
            journal,
            owner,
            program: agent.program,
            agent_settings: agent.settings,
            ledger,
            schedule: None,
            ui,
            _lock: lock,
        })
    }

    pub fn run(&mut self) -> Result<Ending> {
        let floor = match self.baseline_record() {
            Some(b) => NoiseFloor::measure(&finished_values(b), self.settings.min_improvement),
            None => match self.baseline()? {
                Some(floor) => floor,
                None => return Ok(Ending::Stopped),
            },
        };
        loop {
            // The branch is always at the best commit between experiments, even after a crash.
            let best = self.best()?;
            self.workspace.reset_to(best.commit)?;
            if stop::requested() {
                return Ok(Ending::Stopped);
            }
            if let Some(max) = self.settings.max_experiments {
                if self.experiments_done() >= max {
                    return Ok(Ending::MaxExperiments);
                }
            }
            if self.settings.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Ending::Deadline);
            }
            self.experiment(&best, &floor)?;
        }
    }

    fn experiments_done(&self) -> usize {
        self.journal
            .records()
            .iter()
            .filter(|r| !is_baseline(r) && r.outcome != Outcome::Interrupted)
            .count()
    }

    fn baseline_record(&self) -> Option<&Record> {
        self.journal
            .records()
            .iter()
            .find(|r| is_baseline(r) && r.outcome == Outcome::Keep)
    }

    /// The latest kept experiment: the best, since only improvements are kept.
    fn last_kept(&self) -> Option<&Record> {
        self.journal
            .records()
            .iter()
            .rev()
            .find(|r| r.outcome == Outcome::Keep)
    }

    fn best(&self) -> Result<Best> {
        let record = self.last_kept().context("the journal has no baseline")?;
        Ok(Best {
            commit: parse_oid(record.commit.as_deref().unwrap_or_default())?,
            val_bpb: record
                .val_bpb
                .context("a kept experiment without val_bpb")?,
        })
    }

    fn next_n(&self) -> usize {
        self.journal
            .records()
            .iter()
            .map(|r| r.n + 1)
            .max()
            .unwrap_or(0)
    }

    /// Runs the unchanged training file several times: the first val_bpb to beat, and the
    /// run-to-run spread. None when interrupted.
    fn baseline(&mut self) -> Result<Option<NoiseFloor>> {
        let n = self.next_n();
        let head = self.workspace.head()?;
        let text = std::fs::read_to_string(self.workspace.train_file())
            .context("cannot read the training file")?;
        let mut record = new_record(n, head, "baseline");
        record.commit = Some(head.to_string());
        record.file_sha256 = Some(harness::meta::sha256_hex(text.as_bytes()));
        self.workspace.mark(n, head)?;
        self.ledger.insert(&text);
        self.ui.say(&format!(
            "e{n:04}: baseline, {} run(s) of {:.0}s to measure the noise floor",
            self.settings.baseline_runs, self.settings.budget
        ));
        let start = Instant::now();
        let binary = match self.build(&text, &mut record) {
            Ok(binary) => binary,
            Err(errors) => {
                record.outcome = Outcome::CompileError;
                record.error = Some(errors.clone());
                self.finish(record, start, None)?;
                bail!("the baseline training file does not build, so there is nothing to improve on: fix train/src/train.rs\n{errors}");
            }
        };
        for i in 1..=self.settings.baseline_runs {
            let outcome = self.train(&binary, &mut record, i)?;
            if let Some(failed) = outcome {
                record.outcome = failed;
                let interrupted = failed == Outcome::Interrupted;
                let reason = record.error.clone().unwrap_or_default();
                self.finish(record, start, None)?;
                if interrupted {
                    return Ok(None);
                }
                bail!("the baseline training run failed ({failed:?}: {reason}): fix train/src/train.rs before the research loop can start; see the log in {}", self.settings.dir.display());
            }
        }
        let values = finished_values(&record);
        let floor = NoiseFloor::measure(&values, self.settings.min_improvement);
        record.outcome = Outcome::Keep;
        record.val_bpb = Some(mean(&values));
        record.decision = Some(decision(&floor, mean(&values), &values));
        self.ui.say(&format!(
            "noise floor: sigma {:.6} over {} runs; a single run must beat the best by {:.6}",
            floor.sigma,
            floor.runs.len(),
            floor.margin
        ));
        self.finish(record, start, None)?;
        Ok(Some(floor))
    }

    fn experiment(&mut self, best: &Best, floor: &NoiseFloor) -> Result<()> {
        let n = self.next_n();
        let start = Instant::now();
        let mut record = new_record(n, best.commit, "");
        let retry = self.journal.records().last().and_then(|last| {
            let retried = self
                .journal
                .records()
                .iter()
                .any(|r| r.retry_of == Some(last.n));
            // Once: a retry that is interrupted again is left as it is.
            let retry = last.outcome == Outcome::Interrupted
                && last.retry_of.is_none()
                && !is_baseline(last)
                && !retried;
            retry.then(|| last.clone())
        });
        let (text, idea) = match retry {
            // An experiment cut short by a stop or a crash is run once more, as it was.
            Some(last) if last.commit.is_some() => {
                let commit = parse_oid(last.commit.as_deref().unwrap_or_default())?;
                record.retry_of = Some(last.n);
                record.idea = last.idea.clone();
                record.action = last.action.clone();
                record.diff = last.diff.clone();
                let idea = last
                    .idea
                    .clone()
                    .unwrap_or_else(|| last.description.clone());
                (self.workspace.file_at(commit)?, idea)
            }
            _ => match self.propose(&mut record, best)? {
                Taken::Candidate { text, idea } => (text, idea),
                Taken::Broken { text } => {
                    // A file that does not compile is a candidate too: committed, never trained.
                    let message = format!("e{n:04}: {} (does not compile)", record.description);
                    self.commit_candidate(&mut record, &text, &message)?;
                    return self.finish(record, start, Some(best.val_bpb));
                }
                Taken::Nothing => return self.finish(record, start, Some(best.val_bpb)),
            },
        };
        record.description = idea.clone();
        self.commit_candidate(&mut record, &text, &format!("e{n:04}: {idea}"))?;
        pending::save(&self.settings.dir, &record)?;

        let binary = match self.build(&text, &mut record) {
            Ok(binary) => binary,
            Err(errors) => {
                record.outcome = Outcome::CompileError;
                record.error = Some(errors);
                return self.finish(record, start, Some(best.val_bpb));
            }
        };
        for i in 1..=self.settings.max_runs {
            if let Some(failed) = self.train(&binary, &mut record, i)? {
                record.outcome = failed;
                return self.finish(record, start, Some(best.val_bpb));
            }
            let values = finished_values(&record);
            let judgement = floor.judge(best.val_bpb, &values, self.settings.max_runs);
            record.val_bpb = Some(mean(&values));
            record.decision = Some(decision(floor, best.val_bpb, &values));
            match judgement {
                Judgement::Keep => record.outcome = Outcome::Keep,
                Judgement::Discard => record.outcome = Outcome::Discard,
                Judgement::Confirm => {
                    self.ui.say(&format!(
                        "e{n:04}: {:.6} is better than {:.6} but within the noise: one more run",
                        values[values.len() - 1],
                        best.val_bpb
                    ));
                    continue;
                }
            }
            break;
        }
        self.finish(record, start, Some(best.val_bpb))
    }

    /// Commits `text` on the branch, keeps the commit reachable under the experiment's ref, and
    /// notes it (and the file's hash, for the ledger) in the record.
    fn commit_candidate(&self, record: &mut Record, text: &str, message: &str) -> Result<()> {
        let commit = self.workspace.commit(text, message)?;
        self.workspace.mark(record.n, commit)?;
        record.commit = Some(commit.to_string());
        record.file_sha256 = Some(harness::meta::sha256_hex(text.as_bytes()));
        Ok(())
    }

    /// Asks the agent for a candidate that applies and compiles. None when there is none (the
    /// record says why) or the user stopped the loop.
    fn propose(&mut self, record: &mut Record, best: &Best) -> Result<Taken> {
        let n = record.n;
        let source = self.workspace.file_at(best.commit)?;
        // Re-read every time: the human may edit the protocol during the night.
        match crate::program::load(Some(&self.settings.program)) {
            Ok(text) => self.program = text,
            Err(e) => self
                .ui
                .say(&format!("{e:#}; going on with the protocol read before")),
        }
        let (last_failure, reset) = self.failure_note();
        record.agent_reset = reset;
        let history = self.history();
        let best_record = self.last_kept().map(past);
        let start = Instant::now();
        self.ui.agent_begin(n);
        let mut agent = Agent {
            engine: self.owner.agent.engine()?,
            program: std::mem::take(&mut self.program),
            settings: std::mem::take(&mut self.agent_settings),
            ledger: std::mem::take(&mut self.ledger),
        };
        let ui = &mut self.ui;
        // The agent stops at the first valid proposal, or when the user stops the loop.
        let mut observe = |event: Event<'_>| {
            ui.agent_event(n, &event);
            let done = matches!(&event, Event::Finished(a) if a.is_valid());
            if done || stop::requested() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut attempts: Vec<Attempt> = Vec::new();
        if let Some(draft) = self.draft.take() {
            let mut outcome = "none";
            if let Some(reply) = &draft.reply {
                let attempt = agent.adopt(&source, reply, seed(n, 0) + 1000, &mut observe)?;
                outcome = match &attempt.verdict {
                    Verdict::Valid(_) => "used",
                    Verdict::Rejected(_) => "stale",
                    Verdict::Refused(_) | Verdict::DoesNotCompile { .. } => "failed",
                };
                attempts.push(attempt);
            }
            record.draft = Some(DraftRecord {
                during: draft.during,
                seconds: draft.seconds,
                waited_seconds: draft.waited_seconds,
                replies: draft.replies,
                outcome: outcome.into(),
            });
        }
        for (action, count) in plan(self.settings.action, n, self.settings.proposals) {
            if attempts.iter().any(Attempt::is_valid) {
                break;
            }
            if count == 0 || stop::requested() {
                continue;
            }
            let program = agent.program.clone();
            let input = PromptInput {
                program: &program,
                train_file: &source,
                history: &history,
                best: best_record.as_ref(),
                last_failure: last_failure.as_deref(),
                action,
            };
            let seed = seed(n, attempts.len());
            let found = agent.propose(&source, &input, count, seed, &mut observe)?;
            // An agent error ends the loop, so the parts need no putting back on that path.
            attempts.extend(found.1);
        }
        (self.program, self.agent_settings, self.ledger) =
            (agent.program, agent.settings, agent.ledger);
        record.proposals = attempts.len();
        record.repairs = attempts.iter().map(|a| a.repairs).sum();
        record.timing.build_seconds = attempts.iter().map(|a| a.build_seconds).sum();
        record.timing.agent_seconds = start.elapsed().as_secs_f64() - record.timing.build_seconds;
        self.owner
            .note_proposal_seconds(record.timing.agent_seconds);
        if stop::requested() {
            record.outcome = Outcome::Interrupted;
            record.description = "stopped while the agent was writing".into();
            return Ok(Taken::Nothing);
        }
        Ok(take_proposal(record, &attempts))
    }

    /// What went wrong lately, for the prompt; true when the agent is reset after a streak.
    fn failure_note(&self) -> (Option<String>, bool) {
        let streak: Vec<&Record> = self
            .journal
            .records()
            .iter()
            .rev()
            .take_while(|r| r.outcome.is_failure())
            .collect();
        let Some(last) = streak.first() else {
            return (None, false);
        };
        let reset_after = self.settings.reset_after.max(1);
        if streak.len() % reset_after == 0 {
            let list: Vec<String> = streak
                .iter()
                .rev()
                .map(|r| {
                    format!(
                        "- {} ({}): {}",
                        r.description,
                        outcome_name(r.outcome),
                        first_line(r.error.as_deref().unwrap_or(""))
                    )
                })
                .collect();
            let note = format!(
                "The last {} experiments failed:\n{}\nThe training file is back at the best version. \
                 Try a different and smaller change.",
                streak.len(),
                list.join("\n")
            );
            return (Some(note), true);
        }
        let note = format!(
            "The last experiment ({}) failed: {}\n{}",
            last.description,
            outcome_name(last.outcome),
            last.error.as_deref().unwrap_or("")
        );
        (Some(note), false)
    }

    fn history(&self) -> Vec<PastExperiment> {
        let records = self.journal.records();
        records[records.len().saturating_sub(HISTORY)..]
            .iter()
            .filter(|r| !is_baseline(r))
            .map(past)
            .collect()
    }

    /// With the device arranged for a run of `record` and the agent still loaded: starts writing
    /// the next experiment's proposal against the best file, beside the training.
    fn start_draft(&mut self, record: &Record) -> Result<()> {
        if !self.thinks || self.drafting.is_some() {
            return Ok(());
        }
        let Some(engine) = self.owner.agent.shared() else {
            return Ok(());
        };
        let next = record.n + 1;
        let Some(&(action, count)) = plan(self.settings.action, next, self.settings.proposals)
            .iter()
            .find(|(_, count)| *count > 0)
        else {
            return Ok(());
        };
        let best = self.last_kept().map(past);
        let mut history = self.history();
        if !is_baseline(record) {
            // So that the draft tries something else than the experiment it is written beside.
            history.push(PastExperiment {
                description: record.description.clone(),
                status: "running now".into(),
                val_bpb: None,
            });
        }
        let job = DraftJob {
            engine,
            program: self.program.clone(),
            settings: self.agent_settings.clone(),
            ledger: self.ledger.clone(),
            source: self.workspace.file_at(parse_oid(&record.parent)?)?,
            history,
            best,
            last_failure: self.failure_note().0,
            action,
            count,
            seed: seed(next, 0),
        };
        self.drafting = Some(Drafting::start(job, record.n)?);
        Ok(())
    }

    /// Builds the candidate in the agent's staging slot (already built there: this only finds
    /// the binary). Err carries the compiler's message.
    fn build(&mut self, text: &str, record: &mut Record) -> Result<PathBuf, String> {
        let label = Path::new(super::git::TRAIN_FILE);
        match build::build_source(text, label, &self.agent_settings.slot) {
            Ok(built) => {
                record.timing.build_seconds += built.seconds;
                Ok(built.binary)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// One training run; Some(outcome) when it produced no result.
    fn train(
        &mut self,
        binary: &Path,
        record: &mut Record,
        index: usize,
    ) -> Result<Option<Outcome>> {
        let run_dir = self
            .settings
            .dir
            .join(format!("e{:04}", record.n))
            .join(format!("run{index}"));
        if self.schedule.is_none() {
            // The device is arranged once per experiment, before its first run.
            let schedule = self.owner.make_room()?;
            if schedule.decision.plan != Plan::Resident {
                self.ui.say(&format!(
                    "e{:04}: agent {:?} for the run: {}",
                    record.n, schedule.decision.plan, schedule.decision.reason
                ));
            }
            self.schedule = Some(schedule);
            self.start_draft(record)?;
        }
        let spec = run::RunSpec {
            binary,
            data_dir: &self.settings.data_dir,
            run_dir: &run_dir,
            budget: Some(self.settings.budget),
            timeout: self.settings.timeout,
            stop: &stop::requested,
        };
        self.ui
            .training_begin(record.n, index, self.settings.budget);
        let ui = &mut self.ui;
        let report = run::run(&spec, |line| ui.training_line(line))?;
        record.timing.training_seconds += report.seconds;
        record.log_tail = report.tail.clone();
        let name = report.outcome.name();
        let exit = report.outcome.problem(self.settings.timeout);
        let (summary, failed) = match report.outcome {
            run::Outcome::Finished(summary) => (Some(*summary), None),
            run::Outcome::Diverged
            | run::Outcome::Crashed { .. }
            | run::Outcome::OutOfMemory { .. } => (None, Some(Outcome::Crash)),
            run::Outcome::TimedOut => (None, Some(Outcome::Timeout)),
            run::Outcome::Interrupted => (None, Some(Outcome::Interrupted)),
        };
        if let Some(s) = &summary {
            let schedule = self
                .schedule
                .as_ref()
                .expect("arranged before the first run");
            let peak = self
                .owner
                .trainer_share((s.peak_vram_mb * MIB as f64) as u64, schedule);
            self.owner.note_trainer_peak(peak);
            record.timing.eval_seconds += s.eval_seconds;
            let peak_mb = peak as f64 / MIB as f64;
            record.peak_vram_mb = Some(record.peak_vram_mb.unwrap_or(0.0).max(peak_mb));
        }
        if let Some(exit) = &exit {
            let tail = report
                .tail
                .iter()
                .rev()
                .take(12)
                .rev()
                .cloned()
                .collect::<Vec<_>>();
            record.error = Some(format!("{exit}\n{}", tail.join("\n")));
        }
        record.runs.push(RunRecord {
            outcome: name.into(),
            summary,
            seconds: report.seconds,
            log: report.log,
            exit,
        });
        pending::save(&self.settings.dir, record)?;
        Ok(failed)
    }

    /// Completes the record (timings, the scheduler's part, the agent back on the device) and
    /// appends it; the loop then resets the branch to the best commit.
    fn finish(&mut self, mut record: Record, start: Instant, best: Option<f64>) -> Result<()> {
        record.finished = now();
        record.timing.total_seconds = start.elapsed().as_secs_f64();
        if record.description.is_empty() {
            record.description = record.idea.clone().unwrap_or_default();
        }
        if record.outcome != Outcome::Keep {
            // Weights of runs that were not kept only fill the disk.
            for run in &record.runs {
                if let Some(dir) = run.log.parent() {
                    let _ = std::fs::remove_file(dir.join(harness::WEIGHTS_FILE));
                }
            }
        }
        if let Some(drafting) = self.drafting.take() {
            // Before the agent moves: the draft holds the model.
            match drafting.finish() {
                Ok(draft) => self.draft = Some(draft),
                Err(e) => self.ui.say(&format!(
                    "e{:04}: the draft written during training failed ({e:#}); the next proposal is written afresh",
                    record.n
                )),
            }
        }
        if let Some(mut schedule) = self.schedule.take() {
            self.owner.restore(&mut schedule)?;
            record.schedule = Some(schedule);
        }
        self.ui.experiment_done(&record, best);
        self.journal.append(record)?;
        pending::clear(&self.settings.dir)?;
        Ok(())
    }
}

/// The sampling seed of an experiment's proposal number `attempt`.
fn seed(n: usize, attempt: usize) -> u32 {
    (n as u32).wrapping_mul(100).wrapping_add(attempt as u32)
}

/// What the keep/discard rule saw for `runs` against `best_before`.
fn decision(floor: &NoiseFloor, best_before: f64, runs: &[f64]) -> Decision {
    let candidate = mean(runs);
    Decision {
        best_before,
        candidate,
        improvement: best_before - candidate,
        margin: floor.margin,
        noise_sigma: floor.sigma,
        baseline_runs: floor.runs.clone(),
        rule: floor.rule(),
    }
}

/// What an experiment's proposals came to.
enum Taken {
    /// A file that applies and compiles, with its idea.
    Candidate { text: String, idea: String },
    /// The last file that applied but did not compile.
    Broken { text: String },
    /// Nothing applied (or the user stopped the agent).
    Nothing,
}

/// Records what the proposals came to: the first valid one's file and idea, or why there is
/// none (the last compiler error with its file, or every rejection).
fn take_proposal(record: &mut Record, attempts: &[Attempt]) -> Taken {
    let mut broken = None;
    for a in attempts {
        match &a.verdict {
            Verdict::Valid(text) => {
                record.idea = a.idea.clone();
                record.diff = a.diff.clone();
                record.action = Some(action_name(a.action).into());
                let idea = a.idea.clone().unwrap_or_else(|| "(no idea given)".into());
                return Taken::Candidate {
                    text: text.clone(),
                    idea,
                };
            }
            Verdict::Rejected(r) => record.rejections.push(r.to_string()),
            Verdict::Refused(r) => record.rejections.push(format!("refused by the gate: {r}")),
            Verdict::DoesNotCompile { errors, text } => {
                record.rejections.push("does not compile".into());
                record.idea = a.idea.clone();
                record.diff = a.diff.clone();
                record.action = Some(action_name(a.action).into());
                broken = Some((errors.clone(), text.clone()));
            }
        }
    }
    match broken {
        Some((errors, text)) => {
            record.outcome = Outcome::CompileError;
            record.description = record
                .idea
                .clone()
                .unwrap_or_else(|| "an edit that does not compile".into());
            record.error = Some(errors);
            Taken::Broken { text }
        }
        None => {
            record.outcome = Outcome::Rejected;
            record.description = format!("no usable proposal in {}", attempts.len());
            record.error = record.rejections.last().cloned();
            Taken::Nothing
        }
    }
}

fn new_record(n: usize, parent: git2::Oid, description: &str) -> Record {
    Record {
        n,
        outcome: Outcome::Interrupted,
        val_bpb: None,
        peak_vram_mb: None,
        started: now(),
        finished: String::new(),
        description: description.into(),
        idea: None,
        diff: None,
        action: None,
        proposals: 0,
        repairs: 0,
        rejections: Vec::new(),
        commit: None,
        parent: parent.to_string(),
        file_sha256: None,
        runs: Vec::new(),
        decision: None,
        timing: Timing::default(),
        error: None,
        log_tail: Vec::new(),
        retry_of: None,
        agent_reset: false,
        schedule: None,
        draft: None,
    }
}

pub fn is_baseline(record: &Record) -> bool {
    record.description == "baseline"
}

fn finished_values(record: &Record) -> Vec<f64> {
    record
        .runs
        .iter()
        .filter_map(|r| r.summary.as_ref().map(|s| s.val_bpb))
        .collect()
}

fn past(record: &Record) -> PastExperiment {
    PastExperiment {
        description: record.description.clone(),
        status: outcome_name(record.outcome).into(),
        val_bpb: record.val_bpb,
    }
}

/// Which actions an experiment asks for, and how many proposals of each. Mixed alternates the
/// first action between experiments and falls back to the narrow SET, which weak models get right.
fn plan(choice: ActionChoice, n: usize, proposals: usize) -> Vec<(Action, usize)> {
    match choice {
        ActionChoice::Replace => vec![(Action::Replace, proposals)],
        ActionChoice::Set => vec![(Action::Set, proposals)],
        ActionChoice::Mixed if n % 2 == 1 => vec![
            (Action::Replace, proposals / 2),
            (Action::Set, proposals - proposals / 2),
        ],
        ActionChoice::Mixed => vec![(Action::Set, proposals)],
    }
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Keep => "keep",
        Outcome::Discard => "discard",
        Outcome::Crash => "crash",
        Outcome::Timeout => "timeout",
        Outcome::CompileError => "compile_error",
        Outcome::Rejected => "rejected",
        Outcome::Interrupted => "interrupted",
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Replace => "replace",
        Action::Set => "set",
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::edit::Rejection;

    fn attempt(verdict: Verdict) -> Attempt {
        Attempt {
            action: Action::Set,
            reply: String::new(),
            idea: Some("raise the learning rate".into()),
            diff: Some("-a\n+b\n".into()),
            verdict,
            repairs: 0,
            reply_tokens: 0,
            generate_seconds: 0.0,
            build_seconds: 0.0,
        }
    }

    /// The journal's outcome for proposals that never became a candidate (the model's replies
    /// cannot be chosen in an end-to-end test, so the mapping is tested here).
    #[test]
    fn proposals_that_fail_are_recorded_with_their_reason() {
        let parent = git2::Oid::ZERO_SHA1;
        let garbage = attempt(Verdict::Rejected(Rejection::Format("no IDEA: line".into())));
        let missing = attempt(Verdict::Rejected(Rejection::NotFound("const X".into())));
        let noop = attempt(Verdict::Rejected(Rejection::NoOp));
        let mut record = new_record(1, parent, "");
        assert!(matches!(
            take_proposal(&mut record, &[garbage, missing, noop]),
            Taken::Nothing
        ));
        assert_eq!(record.outcome, Outcome::Rejected);
        assert_eq!(record.description, "no usable proposal in 3");
        assert_eq!(record.rejections.len(), 3);
        assert_eq!(record.error, record.rejections.last().cloned());

        let refused = attempt(Verdict::Refused("line 3: `std::fs`".into()));
        let broken = attempt(Verdict::DoesNotCompile {
            errors: "error[E0425]: x".into(),
            text: "const A: f64 = x;\n".into(),
        });
        let mut record = new_record(2, parent, "");
        let Taken::Broken { text } = take_proposal(&mut record, &[refused, broken]) else {
            panic!("the file that does not compile is kept for its commit")
        };
        assert_eq!(text, "const A: f64 = x;\n");
        assert_eq!(record.outcome, Outcome::CompileError);
        assert_eq!(record.error.as_deref(), Some("error[E0425]: x"));
        assert!(record.rejections[0].starts_with("refused by the gate: line 3"));
        assert_eq!(record.description, "raise the learning rate");

        let valid = attempt(Verdict::Valid("const A: f64 = 2.0;\n".into()));
        let mut record = new_record(3, parent, "");
        let noop = attempt(Verdict::Rejected(Rejection::NoOp));
        let Taken::Candidate { text, idea } = take_proposal(&mut record, &[noop, valid]) else {
            panic!("the valid proposal is the candidate")
        };
        assert_eq!(
            (text.as_str(), idea.as_str()),
            ("const A: f64 = 2.0;\n", "raise the learning rate")
        );
        assert_eq!(record.rejections.len(), 1);
        assert_eq!(record.action.as_deref(), Some("set"));
    }

    #[test]
    fn mixed_alternates_and_falls_back_to_set() {
        assert_eq!(
            plan(ActionChoice::Mixed, 1, 4),
            vec![(Action::Replace, 2), (Action::Set, 2)]
        );
        assert_eq!(plan(ActionChoice::Mixed, 2, 4), vec![(Action::Set, 4)]);
        assert_eq!(
            plan(ActionChoice::Replace, 2, 3),
            vec![(Action::Replace, 3)]
        );
    }
}
