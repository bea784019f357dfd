//! One module per command; `run` sends the parsed command line to the one it names.

pub mod bench;
pub mod bench_agent;
pub mod bench_draft;
pub mod bench_swap;
pub mod bench_trainer;
pub mod confirm;
pub mod doctor;
pub mod node;
pub mod prepare;
pub mod propose;
pub mod report;
pub mod run;
pub mod serve;
pub mod train;

use crate::cli::{BenchCommand, Cli, Command};

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        None => run::run(&cli.run),
        Some(command) => match command {
            Command::Run(args) => run::run(args),
            Command::Report(args) => report::run(args),
            Command::Confirm(args) => confirm::run(args),
            Command::Serve(args) => serve::run(args),
            Command::Prepare(args) => prepare::run(args),
            Command::Train(args) => train::run(args),
            Command::Propose(args) => propose::run(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Confine(args) => crate::confine::run(args),
            Command::NodeRun { task } => node::run_task(task),
            Command::NodeWorker { dir } => crate::executor::workers::serve(dir),
            Command::Bench(BenchCommand::Build(args)) => bench::build_time(args),
            Command::Bench(BenchCommand::Agent(args)) => bench_agent::run(args),
            Command::Bench(BenchCommand::Swap(args)) => bench_swap::run(args),
            Command::Bench(BenchCommand::Draft(args)) => bench_draft::run(args),
            Command::Bench(BenchCommand::Trainer(args)) => bench_trainer::run(args),
        },
    }
}
