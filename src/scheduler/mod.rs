//! One owner of the device's memory, shared by the agent and the training program. Before each
//! training run it reads the free memory (GPU memory through NVML in CUDA builds, host RAM
//! otherwise), weighs the agent's footprint against the trainer's expected peak, and keeps the
//! agent resident, moves part of it off the device, or evicts it until the run is over. Every
//! decision, with its figures and timings, goes into the journal.

pub mod memory;
pub mod owner;
pub mod policy;
pub mod resident;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot read the device's memory: {0}")]
    Memory(String),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
}
