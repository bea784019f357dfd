//! autoresearch: a local language model edits a candle training file, the file is trained for a
//! fixed budget, and the change is kept or reverted. See README.md.

mod agent;
mod cli;
mod commands;
mod confine;
mod data;
mod program;
mod research;
mod scheduler;
mod trainer;

use std::process::ExitCode;

use clap::Parser;
use cli::{BenchCommand, Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        None => commands::run::run(&cli.run),
        Some(command) => match command {
            Command::Run(args) => commands::run::run(args),
            Command::Report(args) => commands::report::run(args),
            Command::Prepare(args) => commands::prepare::run(args),
            Command::Train(args) => commands::train::run(args),
            Command::Propose(args) => commands::propose::run(args),
            Command::Doctor(args) => commands::doctor::run(args),
            Command::Confine(args) => confine::run(args),
            Command::Bench(BenchCommand::Build(args)) => commands::bench::build_time(args),
            Command::Bench(BenchCommand::Agent(args)) => commands::bench_agent::run(args),
            Command::Bench(BenchCommand::Swap(args)) => commands::bench_swap::run(args),
            Command::Bench(BenchCommand::Draft(args)) => commands::bench_draft::run(args),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
