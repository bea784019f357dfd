//! autoresearch: a local language model edits a candle training file, the file is trained for a
//! fixed budget, and the change is kept or reverted. See README.md.
//!
//! The binary (`main.rs`) only parses the command line and calls `commands`; everything else is
//! this library, so that the integration tests read the journal through the same types.

#[macro_use]
mod named;

pub mod agent;
pub mod cli;
pub mod commands;
pub mod confine;
pub mod dashboard;
pub mod data;
pub mod executor;
pub mod program;
pub mod research;
pub mod scheduler;
pub mod trainer;
pub mod units;
