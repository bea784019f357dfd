//! One research run (a tag): recover what a crash left, measure the baseline and its noise, then
//! experiment until told to stop. Every experiment is committed before it trains, saved as
//! pending while it runs, and appended to the journal before the branch moves, so the journal is
//! the truth and everything else (branch, results.tsv) is rebuilt from it on the next start.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::changes;
use super::draft::Draft;
use super::git::Workspace;
use super::history::{Best, History};
use super::journal::Journal;
use super::live::LiveFile;
use super::lock::RunLock;
use super::noise::{mean, pooling, NoiseFloor};
use super::parallel;
use super::progress::Ui;
use super::record::{CommitId, Outcome, Record, RecordKind};
use super::request::Asking;
use super::runner::{self, Trainer};
use super::settings::Settings;
use super::sourcing::{self, Proposer, Taken};
use super::stop::Stop;
use super::{now, pending, ResearchError};
use crate::program::Protocol;
use crate::scheduler::owner::Schedule;

// Each training run of a record, and the judgement of a candidate's runs.
mod runs;
// With several workers: rounds of candidates trained side by side.
mod round;

/// Where an experiment's candidate comes from.
enum Origin {
    /// The agent, asked for the move the controller chooses.
    Agent,
    /// An experiment a stop or a crash cut short, run again as it was.
    Retry(Record),
    /// A candidate beaten within its round, its change re-applied on the best file.
    Requeue(Record),
}

/// A candidate made, committed and built; or an experiment that ended before training.
enum Prepared {
    Ready { record: Record, binary: PathBuf },
    Done(Record),
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    MaxExperiments,
    Deadline,
    Stopped,
}

pub struct Research<P: Proposer, T: Trainer> {
    settings: Settings,
    /// The research protocol as last read (it is read again before every proposal).
    program: Protocol,
    workspace: Workspace,
    journal: Journal,
    proposer: P,
    trainer: T,
    /// The current experiment's scheduling, completed when it is recorded.
    schedule: Option<Schedule>,
    /// The proposals written during the last experiment's runs (or round's), waiting for the
    /// next ones.
    drafts: VecDeque<Draft>,
    ui: Ui,
    stop: Stop,
    _lock: RunLock,
}

impl<P: Proposer, T: Trainer> Research<P, T> {
    /// Takes the run's lock and worktree, and puts in the journal what a crash left in flight.
    pub fn open(
        settings: Settings,
        checkout: &Path,
        program: Protocol,
        mut proposer: P,
        trainer: T,
        ui: Ui,
        stop: Stop,
    ) -> Result<Self> {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let lock = RunLock::acquire(dir, settings.tag.as_str())?;
        let workspace = Workspace::open(checkout, settings.tag.as_str(), &dir.join("worktree"))?;
        let (mut journal, torn) = Journal::open(dir)?;
        if let Some(torn) = torn {
            ui.say(&format!(
                "the journal's last line was cut short by a crash; it is kept in {}",
                torn.display()
            ));
        }
        for n in pending::recover(dir, &mut journal, now())? {
            ui.say(&format!(
                "e{n:04} was in flight when the last run ended: recorded as interrupted"
            ));
        }
        proposer.resume(&journal.history());
        Ok(Research {
            settings,
            program,
            workspace,
            journal,
            proposer,
            trainer,
            schedule: None,
            drafts: VecDeque::new(),
            ui,
            stop,
            _lock: lock,
        })
    }

    pub fn history(&self) -> History<'_> {
        self.journal.history()
    }

    /// Tells watchers what the loop does (live.json); only once the run's lock is held, so that
    /// a second loop refused on the same tag never speaks for the first.
    pub fn watch(&mut self, live: LiveFile) {
        self.ui.watch(live);
    }

    /// The agent back, to see what it was asked.
    #[cfg(test)]
    pub fn into_proposer(self) -> P {
        self.proposer
    }

    pub fn run(&mut self) -> Result<Ending> {
        let floor = match self.history().baseline() {
            Some(b) => NoiseFloor::measure(
                &b.finished_values(),
                self.settings.min_improvement,
                self.settings.known_sigma(),
            ),
            None => match self.baseline()? {
                Some(floor) => floor,
                None => return Ok(Ending::Stopped),
            },
        };
        loop {
            // The branch is always at the best commit between experiments, even after a crash.
            let best = self
                .history()
                .best()
                .context("the journal has no baseline")?;
            self.workspace.reset_to(best.commit)?;
            if self.stop.requested() {
                return Ok(Ending::Stopped);
            }
            let done = self.history().experiments_done();
            if self.settings.max_experiments.is_some_and(|max| done >= max) {
                return Ok(Ending::MaxExperiments);
            }
            if self.settings.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Ending::Deadline);
            }
            match self.settings.workers {
                1 => self.experiment(best, &floor)?,
                _ => self.round(best, &floor)?,
            }
        }
    }

    /// Runs the unchanged training file several times: the first val_bpb to beat, and the
    /// run-to-run spread. None when interrupted.
    fn baseline(&mut self) -> Result<Option<NoiseFloor>> {
        let start = Instant::now();
        let head = self.workspace.head()?;
        let text = self.workspace.file_at(head)?;
        let mut record = Record::new(self.history().next_n(), RecordKind::Baseline, head, now());
        record.description = "baseline".into();
        record.budget_seconds = Some(self.settings.budget.get());
        self.commit_candidate(&mut record, head, &text)?;
        let runs = self.settings.baseline_runs;
        self.ui.say(&format!(
            "e{:04}: baseline, {runs} run(s) of {} to measure the noise floor",
            record.n, self.settings.budget
        ));
        let binary = match self.build(&text, &mut record)? {
            Ok(binary) => binary,
            Err(errors) => {
                record.outcome = Outcome::CompileError;
                record.error = Some(errors.clone());
                self.finish(record, start, None)?;
                bail!("the baseline training file does not build, so there is nothing to improve on: fix train/src/train.rs\n{errors}");
            }
        };
        for i in 1..=runs {
            if let Some(failed) = self.train(&binary, &mut record, (i - 1) as u64, None)? {
                record.outcome = failed;
                let reason = record.error.clone().unwrap_or_default();
                self.finish(record, start, None)?;
                if failed == Outcome::Interrupted {
                    return Ok(None);
                }
                bail!("the baseline training run failed ({failed}: {reason}): fix train/src/train.rs before the research loop can start; see the log in {}", self.settings.dir.display());
            }
        }
        let values = record.finished_values();
        let floor = NoiseFloor::measure(
            &values,
            self.settings.min_improvement,
            self.settings.known_sigma(),
        );
        record.outcome = Outcome::Keep;
        record.val_bpb = Some(mean(&values));
        record.decision = Some(floor.decision(mean(&values), &values));
        self.ui.say(&format!(
            "noise floor: sigma {:.6} over {} runs{}; a single run must beat the best by {:.6}",
            floor.sigma,
            floor.runs.len(),
            pooling(floor.prior),
            floor.margin
        ));
        self.finish(record, start, None)?;
        Ok(Some(floor))
    }

    fn experiment(&mut self, best: Best, floor: &NoiseFloor) -> Result<()> {
        let start = Instant::now();
        let n = self.history().next_n();
        // An experiment cut short by a stop or a crash is run once more, as it was.
        let origin = match self.history().to_retry().cloned() {
            Some(last) => Origin::Retry(last),
            None => Origin::Agent,
        };
        match self.prepare(n, best, origin, &[])? {
            Prepared::Done(record) => self.finish(record, start, Some(best.val_bpb)),
            Prepared::Ready { mut record, binary } => {
                let bar = self.train_and_judge(&binary, &mut record, best, floor)?;
                self.finish(record, start, Some(bar))
            }
        }
    }

    /// Experiment `n`'s candidate made on the best file, committed and built: ready to train,
    /// or done already (nothing proposed, does not compile, no longer applies). Once committed
    /// it is saved as pending, beside `in_flight` (the round's candidates made before it).
    fn prepare(
        &mut self,
        n: usize,
        best: Best,
        origin: Origin,
        in_flight: &[Record],
    ) -> Result<Prepared> {
        let mut record = Record::new(n, RecordKind::Experiment, best.commit, now());
        record.budget_seconds = Some(self.settings.budget.get());
        let (text, idea) = match origin {
            Origin::Retry(last) => {
                record.retry_of = Some(last.n);
                record.idea = last.idea.clone();
                record.action = last.action;
                record.diff = last.diff.clone();
                record.choice = last.choice.clone();
                let commit = last
                    .commit
                    .context("a retried experiment without a commit")?;
                let idea = last.idea.unwrap_or(last.description);
                (self.workspace.file_at(commit)?, idea)
            }
            Origin::Requeue(beaten) => {
                record.requeue_of = Some(beaten.n);
                record.idea = beaten.idea.clone();
                record.action = beaten.action;
                record.choice = beaten.choice.clone();
                let idea = beaten.idea.clone().unwrap_or(beaten.description.clone());
                let commit = beaten
                    .commit
                    .context("a requeued experiment without a commit")?;
                let (parent, theirs) = (
                    self.workspace.file_at(beaten.parent)?,
                    self.workspace.file_at(commit)?,
                );
                let ours = self.workspace.file_at(best.commit)?;
                match parallel::reapply(&parent, &ours, &theirs) {
                    Some(text) => (text, idea),
                    None => {
                        record.outcome = Outcome::Superseded;
                        record.description = format!(
                            "{idea} (e{:04}'s change no longer applies on the best file)",
                            beaten.n
                        );
                        return Ok(Prepared::Done(record));
                    }
                }
            }
            Origin::Agent => match self.propose(&mut record, best)? {
                Taken::Candidate { text, idea } => (text, idea),
                Taken::Broken { text } => {
                    // A file that does not compile is a candidate too: committed, never trained.
                    let commit = self.workspace.commit(
                        &text,
                        &format!("e{n:04}: {} (does not compile)", record.description),
                    )?;
                    self.commit_candidate(&mut record, commit, &text)?;
                    return Ok(Prepared::Done(record));
                }
                Taken::Nothing => return Ok(Prepared::Done(record)),
            },
        };
        let parent = self.workspace.file_at(record.parent)?;
        record.description = changes::describe(&idea, &changes::changes(&parent, &text));
        let commit = self
            .workspace
            .commit(&text, &format!("e{n:04}: {}", record.description))?;
        self.commit_candidate(&mut record, commit, &text)?;
        match in_flight {
            [] => pending::save(&self.settings.dir, &record)?,
            _ => pending::save_round(&self.settings.dir, &[in_flight, &[record.clone()]].concat())?,
        }
        match self.build(&text, &mut record)? {
            Ok(binary) => Ok(Prepared::Ready { record, binary }),
            Err(errors) => {
                record.outcome = Outcome::CompileError;
                record.error = Some(errors);
                Ok(Prepared::Done(record))
            }
        }
    }

    /// Keeps `commit` (holding `text`) reachable under the experiment's ref and notes in the
    /// record what it is and what it changed; the agent will not propose it, or one close to it,
    /// again.
    fn commit_candidate(
        &mut self,
        record: &mut Record,
        commit: CommitId,
        text: &str,
    ) -> Result<()> {
        self.workspace.mark(record.n, commit)?;
        let parent = self.workspace.file_at(record.parent)?;
        self.proposer
            .remember(record.note_candidate(commit, &parent, text));
        Ok(())
    }

    /// Asks the agent for a candidate made on the best file, as the controller chooses.
    fn propose(&mut self, record: &mut Record, best: Best) -> Result<Taken> {
        let source = self.workspace.file_at(best.commit)?;
        let program = self.protocol();
        let asking = Asking::new(&self.history(), &self.settings, record.n, &source);
        record.choice = asking.choice.clone();
        record.agent_reset = asking.context.reset;
        if let Some(choice) = &asking.choice {
            self.ui.say(&format!(
                "e{:04}: {}: {}",
                record.n, choice.kind, choice.reason
            ));
        }
        let taken = sourcing::source(
            &mut self.proposer,
            &asking.ask(record.n, &program, &source),
            self.drafts.pop_front(),
            asking.choice.as_ref(),
            &self.stop,
            &mut self.ui,
            record,
        );
        Ok(taken.map_err(ResearchError::from)?)
    }

    /// The protocol, re-read every time: the human may edit it during the night.
    fn protocol(&mut self) -> String {
        let (text, problem) = self.program.reread(&self.settings.program);
        if let Some(e) = problem {
            self.ui
                .say(&format!("{e:#}; going on with the protocol read before"));
        }
        text
    }

    /// The candidate's training program. The inner Err is the compiler's message (the agent's
    /// fault, recorded); the outer one a failure of the machine, which ends the loop.
    fn build(&mut self, text: &str, record: &mut Record) -> Result<Result<PathBuf, String>> {
        self.ui.compiling(record.n);
        match self.trainer.build(text) {
            Ok(built) => {
                record.timing.build_seconds += built.seconds;
                Ok(Ok(built.binary))
            }
            Err(e) if e.is_agents_fault() => Ok(Err(e.to_string())),
            Err(e) => Err(ResearchError::Build(e).into()),
        }
    }

    /// Beside `record`'s runs (the last of a round's): the agent writes the next `count`
    /// experiments' proposals against the best file, one after another, where it does that.
    fn start_drafts(&mut self, record: &Record, count: usize) -> Result<()> {
        let (program, source) = (self.protocol(), self.workspace.file_at(record.parent)?);
        let asks = (0..count)
            .map(|k| {
                let asking = Asking::beside(record, &self.history(), &self.settings, &source);
                let seed = sourcing::seed(record.n + 1 + k, 0);
                asking.draft(record.n, program.clone(), source.clone(), seed)
            })
            .collect();
        self.proposer.start_drafts(asks)
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
            runner::drop_weights(&record);
        }
        // Before the agent moves: the draft holds the model.
        // A round's records finish one after another: the first collects the round's drafts, and
        // they replace any left unused.
        match self.proposer.finish_drafts() {
            Ok(drafts) if drafts.is_empty() => {}
            Ok(drafts) => self.drafts = drafts.into(),
            Err(e) => self.ui.say(&format!(
                "e{:04}: the draft written during training failed ({e:#}); the next proposal is written afresh",
                record.n
            )),
        }
        if let Some(mut schedule) = self.schedule.take() {
            self.proposer.restore(&mut schedule)?;
            record.schedule = Some(schedule);
        }
        self.ui.experiment_done(&record, best);
        self.journal.append(record)?;
        pending::clear(&self.settings.dir)?;
        Ok(())
    }
}
