//! Where an experiment's candidate comes from: a draft written during the last training run when
//! it still applies to the file that won, else fresh proposals, action by action, until one
//! applies and compiles. The agent is behind the `Proposer` trait, so the loop's control logic
//! can be driven by a scripted proposer in tests.

use std::ops::ControlFlow;
use std::time::Instant;

use super::context::Context;
use super::controller::Choice;
use super::draft::Draft;
use super::history::History;
use super::progress::Ui;
use super::record::{DraftOutcome, DraftRecord, Outcome, Record};
use super::request::Request;
use super::stop::Stop;
use crate::agent::ledger::Tried;
use crate::agent::prompt::{Action, PromptInput};
use crate::agent::propose::{Attempt, DraftReply, Event, Observer, ProposeError, Tuner, Verdict};
use crate::scheduler::owner::Schedule;
use crate::units::Bytes;

/// What the loop asks the agent for.
pub struct Ask<'a> {
    pub n: usize,
    pub program: &'a str,
    /// The best training file, which the proposal edits.
    pub source: &'a str,
    pub context: &'a Context,
    pub request: &'a Request,
    /// The sampler, for TUNE replies.
    pub tuner: Option<&'a dyn Tuner>,
}

impl Ask<'_> {
    /// The prompt of a proposal of `action`.
    pub fn prompt(&self, action: Action) -> PromptInput<'_> {
        PromptInput {
            task: self.request.task.as_deref(),
            names: self.request.names.as_deref(),
            ..self.context.prompt(self.program, self.source, action)
        }
    }
}

/// A draft to write beside a training run, owned: it runs on its own thread.
pub struct DraftAsk {
    /// The experiment training beside it.
    pub during: usize,
    /// The controller's choice for the next experiment, as it stands before the run's result:
    /// the draft is used only when the choice after it is the same.
    pub choice: Option<Choice>,
    pub program: String,
    pub source: String,
    pub context: Context,
    pub request: Request,
    pub seed: u32,
}

impl DraftAsk {
    /// The first proposals the request asks for: the draft's reply format and count.
    pub fn first(&self) -> Option<(Action, usize)> {
        self.request
            .plan
            .iter()
            .copied()
            .find(|(_, count)| *count > 0)
    }

    /// The draft's prompt.
    pub fn prompt(&self, action: Action) -> PromptInput<'_> {
        PromptInput {
            task: self.request.task.as_deref(),
            names: self.request.names.as_deref(),
            ..self.context.prompt(&self.program, &self.source, action)
        }
    }
}

/// The agent as the loop sees it: it proposes candidates, checks drafted replies again, and
/// shares the device with the trainer.
pub trait Proposer {
    /// Up to `count` proposals of `action`, stopping early when `observe` breaks (after a valid
    /// one, or when the user stops the loop).
    fn propose(
        &mut self,
        ask: &Ask,
        action: Action,
        count: usize,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Vec<Attempt>, ProposeError>;

    /// A reply drafted during the last run, checked against `ask.source` (the file that won)
    /// like a fresh proposal.
    fn adopt(
        &mut self,
        ask: &Ask,
        reply: &DraftReply,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Attempt, ProposeError>;

    /// A training file tried already: neither it nor a near-duplicate is proposed again.
    fn remember(&mut self, tried: Tried);

    /// Picks up a resumed run: the files it tried, and what else the agent learns from it.
    fn resume(&mut self, history: &History) {
        for tried in history.tried_files() {
            self.remember(tried);
        }
    }

    /// Starts writing the next proposals beside training runs, one after another (one for the
    /// next experiment; one per worker for the next round), where this agent does that.
    fn start_drafts(&mut self, _asks: Vec<DraftAsk>) -> anyhow::Result<()> {
        Ok(())
    }

    /// The drafts written beside the runs that just ended, if they were started.
    fn finish_drafts(&mut self) -> anyhow::Result<Vec<Draft>> {
        Ok(Vec::new())
    }

    /// Before an experiment's first run: where the agent goes while the trainer runs.
    fn make_room(&mut self) -> anyhow::Result<Option<Schedule>> {
        Ok(None)
    }

    /// After the runs: the agent back where it was.
    fn restore(&mut self, _schedule: &mut Schedule) -> anyhow::Result<()> {
        Ok(())
    }

    /// The part of a run's reported peak memory that was the trainer's own; it plans the next
    /// run.
    fn trainer_share(&mut self, reported: Bytes, _schedule: Option<&Schedule>) -> Bytes {
        reported
    }

    /// How long the agent took for an experiment's proposals.
    fn note_agent_seconds(&mut self, _seconds: f64) {}
}

/// What an experiment's proposals came to.
#[derive(Debug)]
pub enum Taken {
    /// A file that applies and compiles, with its idea.
    Candidate { text: String, idea: String },
    /// The last file that applied but did not compile.
    Broken { text: String },
    /// Nothing applied, or the user stopped the agent (the record says which).
    Nothing,
}

/// Asks for a candidate for `record`: the draft first when there is one, then the actions of
/// the plan in turn. Fills in the record's proposal fields, timings and, when nothing came of
/// it, its outcome.
pub fn source(
    proposer: &mut dyn Proposer,
    ask: &Ask,
    draft: Option<Draft>,
    choice: Option<&Choice>,
    stop: &Stop,
    ui: &mut Ui,
    record: &mut Record,
) -> Result<Taken, ProposeError> {
    let n = ask.n;
    let start = Instant::now();
    ui.agent_begin(n);
    // The agent stops at the first valid proposal, or when the user stops the loop.
    let mut observe = |event: Event<'_>| {
        ui.agent_event(n, &event);
        let done = matches!(&event, Event::Finished(a) if a.is_valid());
        if done || stop.requested() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let mut attempts: Vec<Attempt> = Vec::new();
    if let Some(draft) = draft {
        let mut outcome = DraftOutcome::NothingApplied;
        if !same_move(draft.choice.as_ref(), choice) {
            // Written for another move than the one chosen after the run's result.
            outcome = DraftOutcome::Stale;
        } else if let Some(reply) = &draft.reply {
            let attempt = proposer.adopt(ask, reply, seed(n, 0) + 1000, &mut observe)?;
            outcome = match &attempt.verdict {
                Verdict::Valid(_) => DraftOutcome::Used,
                Verdict::Rejected(_) => DraftOutcome::Stale,
                Verdict::Refused(_) | Verdict::DoesNotCompile { .. } => DraftOutcome::Failed,
            };
            attempts.push(attempt);
        }
        record.draft = Some(DraftRecord {
            during: draft.during,
            seconds: draft.seconds,
            waited_seconds: draft.waited_seconds,
            replies: draft.replies,
            outcome,
        });
    }
    for &(action, count) in &ask.request.plan {
        if attempts.iter().any(Attempt::is_valid) || stop.requested() {
            break;
        }
        if count > 0 {
            let seed = seed(n, attempts.len());
            attempts.extend(proposer.propose(ask, action, count, seed, &mut observe)?);
        }
    }
    record.proposals = attempts.len();
    record.repairs = attempts.iter().map(|a| a.repairs).sum();
    record.timing.build_seconds = attempts.iter().map(|a| a.build_seconds).sum();
    record.timing.agent_seconds = start.elapsed().as_secs_f64() - record.timing.build_seconds;
    proposer.note_agent_seconds(record.timing.agent_seconds);
    if stop.requested() {
        record.outcome = Outcome::Interrupted;
        record.description = "stopped while the agent was writing".into();
        return Ok(Taken::Nothing);
    }
    Ok(take(record, &attempts))
}

/// Records what the proposals came to: the first valid one's file and idea, or why there is
/// none (the last compiler error with its file, or every rejection).
fn take(record: &mut Record, attempts: &[Attempt]) -> Taken {
    let mut broken = None;
    for a in attempts {
        match &a.verdict {
            Verdict::Valid(text) => {
                record.idea = a.idea.clone();
                record.diff = a.diff.clone();
                record.action = Some(a.action);
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
                record.action = Some(a.action);
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

/// Whether a draft written for `drafted` answers `chosen`: the same move on the same category and
/// experiments (the reason's words, with its counts, may differ).
fn same_move(drafted: Option<&Choice>, chosen: Option<&Choice>) -> bool {
    let key = |c: &Choice| (c.kind, c.category, c.builds_on.clone());
    drafted.map(key) == chosen.map(key)
}

/// The sampling seed of an experiment's proposal number `attempt`.
pub fn seed(n: usize, attempt: usize) -> u32 {
    (n as u32).wrapping_mul(100).wrapping_add(attempt as u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::record::tests::commit;
    use super::super::record::RecordKind;
    use super::*;
    use crate::agent::edit::Rejection;

    /// A SET proposal whose reply came to `verdict`.
    pub fn attempt(verdict: Verdict) -> Attempt {
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

    fn fresh(n: usize) -> Record {
        Record::new(n, RecordKind::Experiment, commit(0), String::new())
    }

    /// The journal's outcome for proposals that never became a candidate (the model's replies
    /// cannot be chosen in an end-to-end test, so the mapping is tested here).
    #[test]
    fn proposals_that_fail_are_recorded_with_their_reason() {
        let garbage = attempt(Verdict::Rejected(Rejection::Format("no IDEA: line".into())));
        let missing = attempt(Verdict::Rejected(Rejection::NotFound("const X".into())));
        let noop = attempt(Verdict::Rejected(Rejection::NoOp));
        let mut record = fresh(1);
        assert!(matches!(
            take(&mut record, &[garbage, missing, noop]),
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
        let mut record = fresh(2);
        let Taken::Broken { text } = take(&mut record, &[refused, broken]) else {
            panic!("the file that does not compile is kept for its commit")
        };
        assert_eq!(text, "const A: f64 = x;\n");
        assert_eq!(record.outcome, Outcome::CompileError);
        assert_eq!(record.error.as_deref(), Some("error[E0425]: x"));
        assert!(record.rejections[0].starts_with("refused by the gate: line 3"));
        assert_eq!(record.description, "raise the learning rate");

        let valid = attempt(Verdict::Valid("const A: f64 = 2.0;\n".into()));
        let mut record = fresh(3);
        let noop = attempt(Verdict::Rejected(Rejection::NoOp));
        let Taken::Candidate { text, idea } = take(&mut record, &[noop, valid]) else {
            panic!("the valid proposal is the candidate")
        };
        assert_eq!(
            (text.as_str(), idea.as_str()),
            ("const A: f64 = 2.0;\n", "raise the learning rate")
        );
        assert_eq!(record.rejections.len(), 1);
        assert_eq!(record.action, Some(Action::Set));
    }
}
