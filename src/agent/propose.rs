//! From a model's reply to a training file that compiles: generate under the grammar, parse,
//! apply, refuse repeats, compile, and on a compiler error ask the model to repair its own edit
//! (up to a few rounds) before the idea is abandoned. Every step is recorded.

use std::ops::ControlFlow;
use std::path::Path;

use super::edit::{self, Proposal, Rejection};
use super::engine::{Engine, Session};
use super::grammar;
use super::inert::{Inert, ShapeCheck};
use super::ledger::Ledger;
use super::prompt::{self, Action, FitError, Memory, PromptInput};
use super::AgentError;
use crate::confine::Confinement;
use crate::trainer::{build, TrainerError};

/// Why proposing stopped before it came to a verdict. A proposal that does not apply or
/// compile is not an error: it is an `Attempt` with that verdict.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Prompt(#[from] FitError<AgentError>),
    /// The candidate could not be compiled for a reason outside the file (no cargo, a full
    /// disk): the machine's fault, not the agent's.
    #[error("a candidate could not be compiled for a reason outside the training file")]
    Build(#[source] TrainerError),
}

#[derive(Default, Clone)]
pub struct Settings {
    /// Context size for the model.
    pub context: usize,
    /// Longest reply, in tokens.
    pub max_tokens: usize,
    pub temperature: f32,
    /// Repair rounds after a compiler error before the idea is abandoned.
    pub max_repairs: usize,
    /// Staging slot for compiling candidates.
    pub slot: String,
    /// Whether candidates may be compiled where the kernel cannot confine the build.
    pub confinement: Confinement,
}

/// How one proposal ended.
#[derive(Debug)]
pub enum Verdict {
    /// Applies and compiles: the new training file.
    Valid(String),
    /// The reply did not parse or apply, or repeats a tried file.
    Rejected(Rejection),
    /// The static gate refused the edited file.
    Refused(String),
    /// Still does not compile after the repair rounds: the compiler's errors and the file.
    DoesNotCompile { errors: String, text: String },
}

/// One proposal, with everything the journal needs.
#[derive(Debug)]
pub struct Attempt {
    pub action: Action,
    pub reply: String,
    pub idea: Option<String>,
    pub diff: Option<String>,
    pub verdict: Verdict,
    pub repairs: usize,
    pub reply_tokens: usize,
    pub generate_seconds: f64,
    pub build_seconds: f64,
}

impl Attempt {
    /// A reply not yet parsed, applied or built.
    fn unjudged(action: Action, reply: String, reply_tokens: usize, generate_seconds: f64) -> Self {
        Attempt {
            action,
            reply,
            idea: None,
            diff: None,
            verdict: Verdict::Rejected(Rejection::NoOp),
            repairs: 0,
            reply_tokens,
            generate_seconds,
            build_seconds: 0.0,
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self.verdict, Verdict::Valid(_))
    }
}

/// What the agent is doing, for progress displays; `Break` from the observer stops it.
pub enum Event<'a> {
    /// Writing a reply (or a repair): tokens so far and seconds so far.
    Writing { tokens: usize, seconds: f64 },
    /// Compiling a candidate.
    Building,
    /// A proposal is finished.
    Finished(&'a Attempt),
}

pub type Observer<'o> = dyn FnMut(Event<'_>) -> ControlFlow<()> + 'o;

/// A reply written ahead, while a training run had the machine: it parsed and applied to the file
/// it was written against. Whether it still applies is checked when it is used.
#[derive(Debug, Clone)]
pub struct DraftReply {
    pub action: Action,
    pub reply: String,
    pub reply_tokens: usize,
    pub generate_seconds: f64,
}

/// How the ledger names a file proposed in this run, to the agent.
const PROPOSED: &str = "an earlier proposal";

/// Statistics of one prompt evaluation.
pub struct PromptStats {
    pub tokens: usize,
    /// Tokens whose state came from the previous prompt, not read again.
    pub reused: usize,
    pub seconds: f64,
    pub level: usize,
}

/// Values for the constants a TUNE reply names: the research loop's sampler.
pub trait Tuner: Sync {
    /// Whether it can give `constant` values: the TUNE grammar names only those.
    fn can_tune(&self, constant: &edit::Constant) -> bool;

    /// `(name, value)` for each of `names` in `source`; a rejection for a name it cannot tune.
    fn values(
        &self,
        source: &str,
        names: &[String],
        seed: u32,
    ) -> Result<Vec<(String, String)>, Rejection>;

    /// The tuner to draw from instead when the file this one's values made was tried already
    /// (a fixed step that lands on a tried file would be refused on every reply); None: the
    /// refusal stands.
    fn instead(&self) -> Option<&dyn Tuner> {
        None
    }
}

pub struct Agent<'e> {
    pub engine: &'e Engine,
    pub program: String,
    pub settings: Settings,
    pub ledger: Ledger,
    /// Where TUNE replies get their values; without one they are refused.
    pub tuner: Option<&'e dyn Tuner>,
    /// Refuses shape changes that build the same model; None where runs train elsewhere.
    pub shapes: Option<ShapeCheck>,
}

impl Agent<'_> {
    /// The grammar of a reply to `input`: its action's format, over the constants of `source`
    /// it may name.
    fn grammar_for(&self, input: &PromptInput, source: &str) -> String {
        let named: Vec<edit::Constant> = edit::constants(source)
            .into_iter()
            .filter(|c| input.names.is_none_or(|names| names.contains(&c.name)))
            .collect();
        match input.action {
            Action::Replace => grammar::replace_grammar(),
            Action::Set => grammar::set_grammar(&named).unwrap_or_else(grammar::replace_grammar),
            Action::Tune => {
                let tunable: Vec<edit::Constant> = named
                    .iter()
                    .filter(|c| self.tuner.is_some_and(|t| t.can_tune(c)))
                    .cloned()
                    .collect();
                grammar::tune_grammar(&tunable)
            }
            .or_else(|| grammar::set_grammar(&named))
            .unwrap_or_else(grammar::replace_grammar),
        }
    }

    /// Proposes up to `count` edits of one action against `source`, reading the prompt once;
    /// stops early when `observe` breaks (after a finished proposal, or in the middle of one,
    /// which is then dropped).
    pub fn propose(
        &mut self,
        source: &str,
        input: &PromptInput,
        count: usize,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<(PromptStats, Vec<Attempt>), ProposeError> {
        let engine = self.engine;
        let prompt = fit_prompt(engine, &self.settings, input, self.settings.max_tokens)?;
        let mut session = open_session(engine, &self.settings, &prompt.system, &prompt.user)?;
        let stats = PromptStats {
            tokens: session.prompt_tokens(),
            reused: session.reused_tokens,
            seconds: session.prompt_seconds,
            level: prompt.level,
        };
        let grammar = self.grammar_for(input, source);
        let mut attempts = Vec::new();
        for i in 0..count {
            let mut stopped = false;
            let generation = session.generate_observed(
                Some(&grammar),
                self.settings.max_tokens,
                self.settings.temperature,
                seed.wrapping_add(i as u32),
                &mut |tokens, seconds| {
                    stopped = observe(Event::Writing { tokens, seconds }).is_break();
                    !stopped
                },
            )?;
            if stopped {
                break;
            }
            let mut attempt = Attempt::unjudged(
                input.action,
                generation.text,
                generation.tokens,
                generation.seconds,
            );
            if generation.complete {
                self.evaluate(
                    source,
                    &mut attempt,
                    seed.wrapping_add(1000 + i as u32),
                    observe,
                )?;
            } else {
                attempt.verdict = Verdict::Rejected(Rejection::Format(format!(
                    "the reply was cut off at the limit of {} tokens before it finished",
                    self.settings.max_tokens
                )));
            }
            let flow = observe(Event::Finished(&attempt));
            attempts.push(attempt);
            if flow.is_break() {
                break;
            }
        }
        Ok((stats, attempts))
    }

    /// Writes up to `count` replies against `source` until one parses, applies and makes a file
    /// not tried before. Nothing is compiled and nothing goes into the ledger: the run in progress
    /// decides which file the reply will be applied to. Returns the replies written and the one
    /// that applies; `stop` ends it early.
    pub fn draft(
        &self,
        source: &str,
        input: &PromptInput,
        count: usize,
        seed: u32,
        stop: &dyn Fn() -> bool,
    ) -> Result<(usize, Option<DraftReply>), ProposeError> {
        let engine = self.engine;
        let prompt = fit_prompt(engine, &self.settings, input, self.settings.max_tokens)?;
        let mut session = open_session(engine, &self.settings, &prompt.system, &prompt.user)?;
        let grammar = self.grammar_for(input, source);
        for i in 0..count {
            if stop() {
                return Ok((i, None));
            }
            let generation = session.generate_observed(
                Some(&grammar),
                self.settings.max_tokens,
                self.settings.temperature,
                seed.wrapping_add(i as u32),
                &mut |_, _| !stop(),
            )?;
            let applies = generation.complete
                && edit::parse(&generation.text).is_ok_and(|p| {
                    match edit::apply(source, &p) {
                        Ok(text) => self.ledger.check(&text).is_ok(),
                        // Only TUNE lines: their values come when the draft is adopted.
                        Err(Rejection::NoOp) => !p.tunes().is_empty(),
                        Err(_) => false,
                    }
                });
            if applies {
                let draft = DraftReply {
                    action: input.action,
                    reply: generation.text,
                    reply_tokens: generation.tokens,
                    generate_seconds: generation.seconds,
                };
                return Ok((i + 1, Some(draft)));
            }
        }
        Ok((count, None))
    }

    /// A drafted reply as an attempt against `source`, the file that won in the meantime:
    /// parsed, applied, checked against the ledger, compiled and repaired like a fresh one. A
    /// draft that no longer applies comes back `Rejected`.
    pub fn adopt(
        &mut self,
        source: &str,
        draft: &DraftReply,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Attempt, ProposeError> {
        let mut attempt = Attempt::unjudged(
            draft.action,
            draft.reply.clone(),
            draft.reply_tokens,
            draft.generate_seconds,
        );
        self.evaluate(source, &mut attempt, seed, observe)?;
        let _ = observe(Event::Finished(&attempt));
        Ok(attempt)
    }

    /// Parses, applies, checks and compiles a reply, repairing compiler errors.
    fn evaluate(
        &mut self,
        source: &str,
        attempt: &mut Attempt,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<(), ProposeError> {
        let proposal = match edit::parse(&attempt.reply) {
            Ok(p) => p,
            Err(r) => {
                attempt.verdict = Verdict::Rejected(r);
                return Ok(());
            }
        };
        attempt.idea = Some(proposal.idea.clone());
        let mut candidate = match self.apply(source, &proposal, seed) {
            Ok(text) => text,
            Err(r) => {
                attempt.verdict = Verdict::Rejected(r);
                return Ok(());
            }
        };
        loop {
            attempt.diff = Some(edit::diff(source, &candidate));
            let label = Path::new("train.rs (proposed)");
            let _ = observe(Event::Building);
            let built = build::build_source(
                &candidate,
                label,
                &self.settings.slot,
                self.settings.confinement,
            );
            match built {
                Ok(built) => {
                    attempt.build_seconds += built.seconds;
                    let Some((inert, rest)) = self.inert(source, &candidate, &built.binary) else {
                        attempt.verdict = Verdict::Valid(candidate);
                        return Ok(());
                    };
                    // The slot keeps its last few programs: one that will never run must not
                    // push out a program a round has yet to run.
                    let _ = std::fs::remove_file(&built.binary);
                    let (changes, model) = (inert.words(), inert.model);
                    if rest == source {
                        attempt.verdict = Verdict::Rejected(Rejection::Inert { changes, model });
                        return Ok(());
                    }
                    // What the candidate changes besides is tried on its own, once.
                    if let Err(refused) = self.ledger.claim(&rest, PROPOSED) {
                        attempt.verdict = Verdict::Rejected(Rejection::InertRest {
                            changes,
                            model,
                            rest: Box::new(refused),
                        });
                        return Ok(());
                    }
                    if let Some(idea) = &mut attempt.idea {
                        idea.push_str(&format!(" ({changes} taken out: the same model)"));
                    }
                    candidate = rest;
                }
                Err(TrainerError::Refused { reasons, .. }) => {
                    attempt.verdict = Verdict::Refused(reasons);
                    return Ok(());
                }
                Err(TrainerError::Compile { errors, .. }) => {
                    if attempt.repairs == self.settings.max_repairs {
                        attempt.verdict = Verdict::DoesNotCompile {
                            errors,
                            text: candidate,
                        };
                        return Ok(());
                    }
                    attempt.repairs += 1;
                    let repair_seed = seed + attempt.repairs as u32;
                    match self.repair(&candidate, &errors, repair_seed, observe)? {
                        Some(fixed) => candidate = fixed,
                        None => {
                            attempt.verdict = Verdict::DoesNotCompile {
                                errors,
                                text: candidate,
                            };
                            return Ok(());
                        }
                    }
                }
                Err(other) => return Err(ProposeError::Build(other)),
            }
        }
    }

    /// The shape constants `candidate` changes without changing its parent's model, and the
    /// candidate without them.
    fn inert(&mut self, source: &str, candidate: &str, binary: &Path) -> Option<(Inert, String)> {
        let inert = self.shapes.as_mut()?.inert(
            source,
            candidate,
            binary,
            &self.settings.slot,
            self.settings.confinement,
        )?;
        let rest = inert.undone(candidate)?;
        Some((inert, rest))
    }

    /// The proposal's file: TUNE lines given the sampler's values, then checked against every
    /// file tried and claimed.
    fn apply(&mut self, source: &str, proposal: &Proposal, seed: u32) -> Result<String, Rejection> {
        let names = proposal.tunes();
        if names.is_empty() {
            let text = edit::apply(source, proposal)?;
            self.ledger.claim(&text, PROPOSED)?;
            return Ok(text);
        }
        let tuner = self.tuner.ok_or_else(|| {
            Rejection::Format("TUNE needs the research loop's sampler: use SET".into())
        })?;
        let tuned = |tuner: &dyn Tuner| {
            edit::apply(
                source,
                &proposal.tuned(&tuner.values(source, &names, seed)?),
            )
        };
        let text = tuned(tuner)?;
        let text = match (self.ledger.claim(&text, PROPOSED), tuner.instead()) {
            (Ok(()), _) => text,
            (Err(_), Some(instead)) => {
                let text = tuned(instead)?;
                self.ledger.claim(&text, PROPOSED)?;
                text
            }
            (Err(refused), None) => return Err(refused),
        };
        Ok(text)
    }

    /// One repair round: the compiler's errors and the code around them go back to the model,
    /// which answers with SEARCH/REPLACE blocks against the edited file. None when the reply does
    /// not apply.
    fn repair(
        &mut self,
        candidate: &str,
        errors: &str,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Option<String>, ProposeError> {
        let around = code_around_errors(candidate, errors);
        let memory = Memory {
            last_failure: Some(errors.to_string()),
            ..Memory::default()
        };
        let input = PromptInput {
            memory: &memory,
            ..PromptInput::plain(&self.program, candidate, Action::Replace)
        };
        let engine = self.engine;
        // Room for the reply and for the code shown with the errors.
        let reserve = self.settings.max_tokens + engine.tokenize(&around).len() + 32;
        let mut prompt = fit_prompt(engine, &self.settings, &input, reserve)?;
        prompt.user = format!(
            "Your edit does not compile. Fix it with SEARCH/REPLACE blocks against this code:\n```rust\n{around}```\n\n{}",
            prompt.user
        );
        let Ok(mut session) = open_session(engine, &self.settings, &prompt.system, &prompt.user)
        else {
            return Ok(None);
        };
        let reply = session.generate_observed(
            Some(&grammar::replace_grammar()),
            self.settings.max_tokens,
            self.settings.temperature,
            seed,
            &mut |tokens, seconds| observe(Event::Writing { tokens, seconds }).is_continue(),
        )?;
        Ok(edit::parse(&reply.text)
            .ok()
            .and_then(|p| self.apply(candidate, &p, seed).ok()))
    }
}

/// The richest prompt that leaves `reserve` tokens of the context free, counted with the
/// model's own tokenizer and chat format.
fn fit_prompt(
    engine: &Engine,
    settings: &Settings,
    input: &PromptInput,
    reserve: usize,
) -> Result<prompt::Prompt, FitError<AgentError>> {
    prompt::fit(input, settings.context, reserve, |s, u| {
        engine.render(s, u).map(|p| engine.tokenize(&p).len())
    })
}

/// A session of the agent's whole context: every session the same size, so the state saved
/// after one prompt fits the next (see `Engine`).
fn open_session<'e>(
    engine: &'e Engine,
    settings: &Settings,
    system: &str,
    user: &str,
) -> Result<Session<'e>, AgentError> {
    let tokens = engine.tokenize(&engine.render(system, user)?);
    engine.session_tokens(tokens, settings.context)
}

/// The lines around the first `--> file:LINE:COL` the compiler names, or the file's top.
fn code_around_errors(source: &str, errors: &str) -> String {
    let line = errors
        .lines()
        .find_map(|l| {
            let loc = l.trim().strip_prefix("--> ")?;
            loc.split(':').nth(1)?.parse::<usize>().ok()
        })
        .unwrap_or(1);
    let lines: Vec<&str> = source.lines().collect();
    let start = line.saturating_sub(8);
    let end = (line + 7).min(lines.len());
    lines[start..end].iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ledger::Tried;

    /// An agent on the default model with the real protocol.
    fn agent<'e>(engine: &'e Engine, context: usize, max_repairs: usize, slot: &str) -> Agent<'e> {
        Agent {
            engine,
            program: crate::program::load(None).unwrap(),
            settings: Settings {
                context,
                max_tokens: 128,
                temperature: 0.8,
                max_repairs,
                slot: slot.into(),
                confinement: Confinement::Required,
            },
            ledger: Ledger::default(),
            tuner: None,
            shapes: None,
        }
    }

    #[test]
    fn a_compiler_error_goes_back_to_the_model_for_repair() {
        let engine = Engine::load(&crate::cli::default_model(), 0).expect("the default model");
        let source = include_str!("../../train/src/train.rs");
        let mut agent = agent(&engine, 2048, 1, "test-repair");
        let mut attempt = Attempt::unjudged(
            Action::Set,
            "IDEA: break the build\nSET MATRIX_LR = oops\n".into(),
            0,
            0.0,
        );
        agent
            .evaluate(source, &mut attempt, 7, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(attempt.repairs, 1, "{:?}", attempt.verdict);
        assert!(attempt.diff.is_some());
        match &attempt.verdict {
            // The weak default model rarely mends it; when it does, the file compiles.
            Verdict::Valid(text) => assert!(!text.contains("= oops;")),
            Verdict::DoesNotCompile { errors, .. } => {
                assert!(errors.contains("error"), "{errors}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A draft is written against the file of its time without touching the ledger, then used
    /// only where it still applies to the file that won.
    #[test]
    fn a_draft_is_used_only_where_it_still_applies() {
        let engine = Engine::load(&crate::cli::default_model(), 0).expect("the default model");
        let source = include_str!("../../train/src/train.rs");
        let mut agent = agent(&engine, 4096, 0, "test-draft");
        let program = agent.program.clone();
        let input = PromptInput::plain(&program, source, Action::Set);
        let (replies, draft) = agent.draft(source, &input, 4, 3, &|| false).unwrap();
        let draft = draft.expect("one of four grammar-constrained SET replies applies");
        assert!((1..=4).contains(&replies));
        let drafted = edit::apply(source, &edit::parse(&draft.reply).unwrap()).unwrap();
        assert!(!agent.ledger.contains(&drafted), "a draft records nothing");
        let stop_at_once = agent.draft(source, &input, 4, 3, &|| true).unwrap();
        assert_eq!(stop_at_once.0, 0);
        assert!(stop_at_once.1.is_none());

        // The run meanwhile kept a file without the lines a REPLACE draft searched for.
        let won = source.replace(
            "const MATRIX_LR: f64 = 0.04;",
            "const MATRIX_LR: f64 = 0.05;",
        );
        let replace = DraftReply {
            action: Action::Replace,
            reply: "IDEA: lower the matrix learning rate\n<<<<<<< SEARCH\nconst MATRIX_LR: f64 = 0.04;\n=======\nconst MATRIX_LR: f64 = 0.03;\n>>>>>>> REPLACE\n".into(),
            reply_tokens: 40,
            generate_seconds: 1.0,
        };
        let mut go_on = |_: Event| ControlFlow::Continue(());
        let stale = agent.adopt(&won, &replace, 1, &mut go_on).unwrap();
        assert!(
            matches!(stale.verdict, Verdict::Rejected(Rejection::NotFound(_))),
            "{:?}",
            stale.verdict
        );

        // Against the file it was written for, it goes through the whole check and is tried once.
        let used = agent.adopt(source, &draft, 1, &mut go_on).unwrap();
        assert!(
            matches!(
                used.verdict,
                Verdict::Valid(_) | Verdict::DoesNotCompile { .. }
            ),
            "{:?}",
            used.verdict
        );
        assert_eq!(used.generate_seconds, draft.generate_seconds);
        assert!(agent.ledger.contains(&drafted));
        let again = agent.adopt(source, &draft, 1, &mut go_on).unwrap();
        assert!(matches!(
            again.verdict,
            Verdict::Rejected(Rejection::AlreadyTried)
        ));
    }

    /// A tuner that gives every named constant one value.
    struct Fixed(&'static str);

    impl Tuner for Fixed {
        fn can_tune(&self, constant: &edit::Constant) -> bool {
            constant.ty == "f64"
        }

        fn values(
            &self,
            _: &str,
            names: &[String],
            _: u32,
        ) -> Result<Vec<(String, String)>, Rejection> {
            Ok(names
                .iter()
                .map(|n| (n.clone(), self.0.to_string()))
                .collect())
        }
    }

    /// Fixed values that give way to another tuner's when their file was tried.
    struct Stepping(Fixed, Fixed);

    impl Tuner for Stepping {
        fn can_tune(&self, constant: &edit::Constant) -> bool {
            self.0.can_tune(constant)
        }

        fn values(
            &self,
            source: &str,
            names: &[String],
            seed: u32,
        ) -> Result<Vec<(String, String)>, Rejection> {
            self.0.values(source, names, seed)
        }

        fn instead(&self) -> Option<&dyn Tuner> {
            Some(&self.1)
        }
    }

    /// TUNE replies written by the real model under the grammar take their values from the
    /// tuner; a value within 5% of one tried is refused, with the reason, before any build.
    #[test]
    fn tune_replies_take_the_tuners_values_and_near_duplicates_are_refused() {
        let engine = Engine::load(&crate::cli::default_model(), 0).expect("the default model");
        let source = include_str!("../../train/src/train.rs");
        let mut agent = agent(&engine, 4096, 0, "test-tune");
        let tried = source.replace(
            "const MATRIX_LR: f64 = 0.04;",
            "const MATRIX_LR: f64 = 0.041;",
        );
        agent.ledger.insert(Tried::of("e0003", &tried));
        let close = Fixed("0.0412");
        agent.tuner = Some(&close);
        let reply = "IDEA: search the matrix learning rate\nTUNE MATRIX_LR\n";
        let mut attempt = Attempt::unjudged(Action::Tune, reply.into(), 0, 0.0);
        agent
            .evaluate(source, &mut attempt, 1, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert!(
            matches!(&attempt.verdict, Verdict::Rejected(Rejection::NearDuplicate { of, .. }) if of == "e0003"),
            "{:?}",
            attempt.verdict
        );
        assert_eq!(attempt.build_seconds, 0.0, "refused before any build");
        // A tuner with another to draw from takes that one's values when its own were tried.
        let stepping = Stepping(Fixed("0.0412"), Fixed("0.2"));
        agent.tuner = Some(&stepping);
        let text = agent
            .apply(source, &edit::parse(reply).unwrap(), 1)
            .unwrap();
        assert!(text.contains("const MATRIX_LR: f64 = 0.2;"));

        // The model names constants under the TUNE grammar; every value is the tuner's.
        let far = Fixed("0.9");
        agent.tuner = Some(&far);
        let program = agent.program.clone();
        let names = ["WARMDOWN_RATIO".to_string(), "FINAL_LR_FRAC".to_string()];
        let input = PromptInput {
            names: Some(&names),
            ..PromptInput::plain(&program, source, Action::Tune)
        };
        let (_, attempts) = agent
            .propose(source, &input, 2, 5, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        assert!(!attempts.is_empty());
        for a in &attempts {
            assert!(
                a.reply
                    .lines()
                    .skip(1)
                    .all(|l| l.starts_with("TUNE WARMDOWN_RATIO")
                        || l.starts_with("TUNE FINAL_LR_FRAC")
                        || l.is_empty()),
                "{}",
                a.reply
            );
            if let Verdict::Valid(text) = &a.verdict {
                assert!(
                    text.contains(": f64 = 0.9;"),
                    "{}",
                    a.diff.as_deref().unwrap_or("")
                );
            }
        }
    }

    #[test]
    fn the_code_around_the_first_error_is_shown() {
        let source: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        let errors = "error[E0425]: x\n  --> train.rs:20:5\n   |\n";
        let around = code_around_errors(&source, errors);
        assert!(around.starts_with("line 13\n"));
        assert!(around.contains("line 20\n") && around.contains("line 27\n"));
        assert!(!around.contains("line 28\n"));
    }
}
