//! autoresearch: a local language model edits a candle training file, the file is trained for a
//! fixed budget, and the change is kept or reverted. See README.md.

use std::process::ExitCode;

use autoresearch::cli::Cli;
use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match autoresearch::commands::run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
