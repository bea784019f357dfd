//! The agent for real: a local GGUF model run in-process, on a device it shares with the
//! trainer. It proposes through `agent::propose`, drafts beside training runs where that does
//! not slow the trainer, and lets the scheduler move its model out of the trainer's way.

use super::draft::{Draft, Drafting};
use super::history::History;
use super::settings::ThinkChoice;
use super::sourcing::{Ask, DraftAsk, Proposer};
use super::stop::Stop;
use crate::agent::inert::ShapeCheck;
use crate::agent::ledger::{Ledger, Tried};
use crate::agent::prompt::Action;
use crate::agent::propose::{Agent, Attempt, DraftReply, Observer, ProposeError, Settings};
use crate::scheduler::memory::Kind;
use crate::scheduler::owner::{DeviceOwner, Schedule};
use crate::units::Bytes;

pub struct LocalAgent {
    /// The model and the device it shares with the trainer.
    owner: DeviceOwner,
    settings: Settings,
    /// Every training file tried, so none is proposed twice.
    ledger: Ledger,
    /// Refuses shape changes that build the same model (where runs train on this machine).
    shapes: Option<ShapeCheck>,
    /// Whether it writes the next proposal during training runs, and the draft being written.
    thinks: bool,
    drafting: Option<Drafting>,
    stop: Stop,
}

impl LocalAgent {
    pub fn new(
        owner: DeviceOwner,
        settings: Settings,
        shapes: Option<ShapeCheck>,
        think: ThinkChoice,
        stop: Stop,
    ) -> Self {
        let thinks = match think {
            ThinkChoice::Always => true,
            ThinkChoice::Never => false,
            // On a CPU-only build the agent would take the trainer's cores and change what the
            // run measures.
            ThinkChoice::Auto => owner.device.kind == Kind::Gpu,
        };
        LocalAgent {
            owner,
            settings,
            ledger: Ledger::default(),
            shapes,
            thinks,
            drafting: None,
            stop,
        }
    }

    /// Lends the model, the settings, the ledger and the shape check to an `Agent` for one call,
    /// and takes them back.
    fn with_agent<T>(
        &mut self,
        ask: &Ask,
        call: impl FnOnce(&mut Agent) -> Result<T, ProposeError>,
    ) -> Result<T, ProposeError> {
        let mut agent = Agent {
            engine: self.owner.agent.engine()?,
            program: ask.program.to_string(),
            settings: std::mem::take(&mut self.settings),
            ledger: std::mem::take(&mut self.ledger),
            tuner: ask.tuner,
            shapes: self.shapes.take(),
        };
        let result = call(&mut agent);
        (self.settings, self.ledger, self.shapes) = (agent.settings, agent.ledger, agent.shapes);
        result
    }
}

impl Proposer for LocalAgent {
    fn propose(
        &mut self,
        ask: &Ask,
        action: Action,
        count: usize,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Vec<Attempt>, ProposeError> {
        let input = ask.prompt(action);
        self.with_agent(ask, |agent| {
            Ok(agent.propose(ask.source, &input, count, seed, observe)?.1)
        })
    }

    fn adopt(
        &mut self,
        ask: &Ask,
        reply: &DraftReply,
        seed: u32,
        observe: &mut Observer,
    ) -> Result<Attempt, ProposeError> {
        self.with_agent(ask, |agent| agent.adopt(ask.source, reply, seed, observe))
    }

    fn remember(&mut self, tried: Tried) {
        self.ledger.insert(tried);
    }

    fn resume(&mut self, history: &History) {
        for tried in history.tried_files() {
            self.remember(tried);
        }
        if let Some(peak) = history.last_trainer_peak() {
            self.owner.note_trainer_peak(peak);
        }
    }

    fn start_drafts(&mut self, asks: Vec<DraftAsk>) -> anyhow::Result<()> {
        if !self.thinks || self.drafting.is_some() {
            return Ok(());
        }
        // Only beside a run that left the model loaded.
        let Some(engine) = self.owner.agent.shared() else {
            return Ok(());
        };
        self.drafting = Some(Drafting::start(
            asks,
            engine,
            self.settings.clone(),
            self.ledger.clone(),
            self.stop.clone(),
        )?);
        Ok(())
    }

    fn finish_drafts(&mut self) -> anyhow::Result<Vec<Draft>> {
        Ok(self
            .drafting
            .take()
            .map(Drafting::finish)
            .transpose()?
            .unwrap_or_default())
    }

    fn make_room(&mut self) -> anyhow::Result<Option<Schedule>> {
        Ok(Some(self.owner.make_room()?))
    }

    fn restore(&mut self, schedule: &mut Schedule) -> anyhow::Result<()> {
        Ok(self.owner.restore(schedule)?)
    }

    fn trainer_share(&mut self, reported: Bytes, schedule: Option<&Schedule>) -> Bytes {
        let peak = match schedule {
            Some(schedule) => self.owner.trainer_share(reported, schedule),
            None => reported,
        };
        self.owner.note_trainer_peak(peak);
        peak
    }

    fn note_agent_seconds(&mut self, seconds: f64) {
        self.owner.note_proposal_seconds(seconds);
    }
}
