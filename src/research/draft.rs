//! Thinking while training: while a run has the device and the agent is still loaded, a thread
//! writes the next experiment's proposal against the file as it stands. After the run the loop
//! waits for it, then checks it against the file that won (the candidate when it was kept): used
//! when it still applies and compiles, written afresh when it does not. The time it ran beside
//! training is agent time the experiment no longer spends.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, Result};

use super::controller::Choice;
use super::sourcing::DraftAsk;
use super::stop::Stop;
use crate::agent::engine::Engine;
use crate::agent::ledger::Ledger;
use crate::agent::propose::{Agent, DraftReply, Settings};

/// Drafts in the making: one thread writes them one after another (a round of several workers
/// asks for one per worker; one at a time, for one).
pub struct Drafting {
    handle: JoinHandle<Result<Vec<Written>>>,
}

/// One draft as its thread wrote it.
struct Written {
    during: usize,
    choice: Option<Choice>,
    replies: usize,
    reply: Option<DraftReply>,
    seconds: f64,
}

/// A finished draft, waiting for the next proposal.
pub struct Draft {
    /// The experiment whose training it was written beside.
    pub during: usize,
    /// The controller's choice it was written for.
    pub choice: Option<Choice>,
    /// Replies written, and the one that applied to the file of that time.
    pub replies: usize,
    pub reply: Option<DraftReply>,
    pub seconds: f64,
    /// Seconds the loop waited for it after the training had ended.
    pub waited_seconds: f64,
}

impl Drafting {
    /// Starts the thread; it owns copies of everything, so the loop goes on changing its own.
    pub fn start(
        asks: Vec<DraftAsk>,
        engine: Arc<Engine>,
        settings: Settings,
        ledger: Ledger,
        stop: Stop,
    ) -> Result<Self> {
        if asks.iter().any(|ask| ask.first().is_none()) {
            anyhow::bail!("the next experiment asks for no proposal");
        }
        let handle = std::thread::Builder::new()
            .name("draft".into())
            .spawn(move || {
                let mut written = Vec::new();
                for ask in asks {
                    if stop.requested() {
                        break;
                    }
                    let start = Instant::now();
                    let (action, count) = ask.first().expect("checked before the thread");
                    let agent = Agent {
                        engine: &engine,
                        program: ask.program.clone(),
                        settings: settings.clone(),
                        ledger: ledger.clone(),
                        tuner: None,
                        shapes: None,
                    };
                    let input = ask.prompt(action);
                    let (replies, reply) =
                        agent.draft(&ask.source, &input, count, ask.seed, &|| stop.requested())?;
                    written.push(Written {
                        during: ask.during,
                        choice: ask.choice.clone(),
                        replies,
                        reply,
                        seconds: start.elapsed().as_secs_f64(),
                    });
                }
                Ok(written)
            })?;
        Ok(Drafting { handle })
    }

    /// Waits for the drafts: the training is over. The wait is what thinking ahead did not save.
    pub fn finish(self) -> Result<Vec<Draft>> {
        let start = Instant::now();
        let written = self
            .handle
            .join()
            .map_err(|_| anyhow!("the drafting thread panicked"))??;
        let waited_seconds = start.elapsed().as_secs_f64();
        Ok(written
            .into_iter()
            .map(|w| Draft {
                during: w.during,
                choice: w.choice,
                replies: w.replies,
                reply: w.reply,
                seconds: w.seconds,
                waited_seconds,
            })
            .collect())
    }
}
