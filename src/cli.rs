//! Command-line arguments, parsed by clap and then validated into the types the commands use.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::Profile;

#[derive(Parser)]
#[command(
    name = "autoresearch",
    version,
    about = "An offline ML research appliance on one machine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train the tokenizer and tokenize a corpus into training and validation shards.
    Prepare(PrepareArgs),
    /// Build the training program and run one experiment with it.
    Train(TrainArgs),
    /// Measure the appliance's own costs.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Incremental rebuild time of the training program after an edit.
    Build(BenchBuildArgs),
}

#[derive(Args)]
pub struct BenchBuildArgs {
    /// Rebuilds to time.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

#[derive(Args)]
pub struct DataDirArg {
    /// Where prepared data lives (default: ~/.cache/autoresearch).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub fn resolve(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(harness::default_data_dir)
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProfileName {
    Cpu,
    Gpu,
}

impl ProfileName {
    pub fn profile(self) -> Profile {
        match self {
            ProfileName::Cpu => Profile::cpu(),
            ProfileName::Gpu => Profile::gpu(),
        }
    }

    /// GPU constants when this build has CUDA, CPU constants otherwise.
    pub fn for_this_build() -> Self {
        if cfg!(feature = "cuda") {
            ProfileName::Gpu
        } else {
            ProfileName::Cpu
        }
    }
}

#[derive(Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// A plain-text file or folder, a JSONL file (`text` field) or a parquet shard (`text`
    /// column). Repeatable. Default: the embedded public-domain corpus.
    #[arg(long, value_name = "PATH")]
    pub corpus: Vec<PathBuf>,
    /// Experiment constants: `gpu` (the reference's) or `cpu` (scaled for two cores). Default:
    /// `gpu` in CUDA builds, else `cpu`.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileName>,
    /// Replace data prepared from another corpus or profile.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Training time budget in seconds (default: the profile's, 300).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<f64>,
    /// The training file to build (default: train/src/train.rs).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// Where the log, weights and result go (default: <data-dir>/runs/<date-time>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}
