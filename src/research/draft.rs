//! Thinking while training: while a run has the device and the agent is still loaded, a thread
//! writes the next experiment's proposal against the file as it stands. After the run the loop
//! waits for it, then checks it against the file that won (the candidate when it was kept): used
//! when it still applies and compiles, written afresh when it does not. The time it ran beside
//! training is agent time the experiment no longer spends.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, Result};

use super::stop;
use crate::agent::edit::Ledger;
use crate::agent::engine::Engine;
use crate::agent::prompt::{Action, PastExperiment, PromptInput};
use crate::agent::propose::{Agent, DraftReply, Settings};

/// Everything the drafting thread needs, owned: the loop goes on changing its own copies.
pub struct DraftJob {
    pub engine: Arc<Engine>,
    pub program: String,
    pub settings: Settings,
    pub ledger: Ledger,
    pub source: String,
    pub history: Vec<PastExperiment>,
    pub best: Option<PastExperiment>,
    pub last_failure: Option<String>,
    pub action: Action,
    pub count: usize,
    pub seed: u32,
}

/// A draft in the making.
pub struct Drafting {
    during: usize,
    handle: JoinHandle<Result<(usize, Option<DraftReply>, f64)>>,
}

/// A finished draft, waiting for the next proposal.
pub struct Draft {
    /// The experiment whose training it was written beside.
    pub during: usize,
    /// Replies written, and the one that applied to the file of that time.
    pub replies: usize,
    pub reply: Option<DraftReply>,
    pub seconds: f64,
    /// Seconds the loop waited for it after the training had ended.
    pub waited_seconds: f64,
}

impl Drafting {
    pub fn start(job: DraftJob, during: usize) -> Result<Self> {
        let handle = std::thread::Builder::new()
            .name("draft".into())
            .spawn(move || {
                let start = Instant::now();
                let agent = Agent {
                    engine: &job.engine,
                    program: job.program,
                    settings: job.settings,
                    ledger: job.ledger,
                };
                let input = PromptInput {
                    program: &agent.program,
                    train_file: &job.source,
                    history: &job.history,
                    best: job.best.as_ref(),
                    last_failure: job.last_failure.as_deref(),
                    action: job.action,
                };
                let (replies, reply) =
                    agent.draft(&job.source, &input, job.count, job.seed, &stop::requested)?;
                Ok((replies, reply, start.elapsed().as_secs_f64()))
            })?;
        Ok(Drafting { during, handle })
    }

    /// Waits for the draft: the training is over. The wait is what thinking ahead did not save.
    pub fn finish(self) -> Result<Draft> {
        let start = Instant::now();
        let (replies, reply, seconds) = self
            .handle
            .join()
            .map_err(|_| anyhow!("the drafting thread panicked"))??;
        Ok(Draft {
            during: self.during,
            replies,
            reply,
            seconds,
            waited_seconds: start.elapsed().as_secs_f64(),
        })
    }
}
