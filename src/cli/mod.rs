//! Command-line arguments, parsed by clap and then validated into the types the commands use.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::Profile;

#[derive(Parser)]
#[command(
    name = "autoresearch",
    version,
    about = "An offline ML research appliance on one machine"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no subcommand: the research loop (`run`).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// The research loop: propose, train, keep or discard, record; until stopped.
    Run(RunArgs),
    /// The experiments of a run as a table, and progress.png.
    Report(ReportArgs),
    /// Train the tokenizer and tokenize a corpus into training and validation shards.
    Prepare(PrepareArgs),
    /// Build the training program and run one experiment with it.
    Train(TrainArgs),
    /// Propose edits to the training file with a local model, without training.
    Propose(ProposeArgs),
    /// Run a program confined (used by the appliance for the training program).
    #[command(hide = true)]
    Confine(ConfineArgs),
    /// Check this machine: build features, GPU, model file, data, toolchain, free disk.
    Doctor(DoctorArgs),
    /// Measure the appliance's own costs.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Incremental rebuild time of the training program after an edit.
    Build(BenchBuildArgs),
    /// The agent model's load time and tokens/s, against llama.cpp's llama-bench.
    Agent(BenchAgentArgs),
    /// The scheduler's swap cycle: evict the agent, read the memory, load it again.
    Swap(BenchSwapArgs),
    /// Think while training: the trainer's tokens/s alone and with the agent drafting beside it,
    /// and how long a draft takes there.
    Draft(BenchDraftArgs),
}

#[derive(Args)]
pub struct BenchDraftArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Seconds of training in each of the two runs.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub budget: f64,
    /// A prebuilt training program (default: build the training file).
    #[arg(long, value_name = "PATH")]
    pub trainer_bin: Option<PathBuf>,
    /// The training file the agent drafts against (and builds, without --trainer-bin).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// The research protocol (default: program.md).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// Replies per draft before it gives up.
    #[arg(long, default_value_t = 4)]
    pub proposals: usize,
    /// Longest reply, in tokens.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Context size in tokens (default: the model's, at most 8192).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
    /// Run the training program even where the kernel cannot confine it (no Landlock).
    #[arg(long)]
    pub unconfined: bool,
}

#[derive(Args)]
pub struct BenchSwapArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Evict-and-reload cycles.
    #[arg(long, default_value_t = 2)]
    pub cycles: usize,
    /// Context size in tokens the agent's KV cache is sized for (default: the model's, at most
    /// 8192).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
}

#[derive(Args)]
pub struct BenchAgentArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Prompt tokens per round (llama-bench's -p).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Generated tokens per round (llama-bench's -n).
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A llama-bench binary (llama.cpp's own), for the side-by-side ratio.
    #[arg(long, value_name = "PATH")]
    pub llama_bench: Option<PathBuf>,
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
    /// The folder as an absolute path: the training program runs in its run folder, where a
    /// relative path would point elsewhere.
    pub fn resolve(&self) -> PathBuf {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(harness::default_data_dir);
        std::path::absolute(&dir).unwrap_or(dir)
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
    /// Validation tokens each evaluation reads (default: the profile's). Fewer is quicker and
    /// noisier: for a quick look or tests, not for comparing with other setups.
    #[arg(long, value_name = "TOKENS")]
    pub eval_tokens: Option<usize>,
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
    /// Run the training program even where the kernel cannot confine it (no Landlock).
    #[arg(long)]
    pub unconfined: bool,
    /// Kill the training program (and everything it started) after this many seconds
    /// (default: twice the budget plus 120).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Run this prebuilt training program instead of building one (for machines without Rust).
    #[arg(long, value_name = "PATH", conflicts_with = "train_file")]
    pub trainer_bin: Option<PathBuf>,
}

#[derive(Args)]
pub struct ModelArg {
    /// The agent's model: a GGUF file, or hf:OWNER/REPO/FILE.gguf from the Hugging Face hub (cached;
    /// HF_HUB_OFFLINE=1 uses only the cache). Default: models/gemma-3-270m-q4_k_m.gguf, fetched by
    /// scripts/fetch-default-model.sh.
    #[arg(long, value_name = "GGUF")]
    pub model: Option<String>,
    /// Model layers on the GPU (default: all in CUDA builds, none otherwise).
    #[arg(long, value_name = "N")]
    pub gpu_layers: Option<u32>,
}

impl ModelArg {
    /// The model file on disk, fetched from the hub first when the spec says so.
    pub fn resolve(&self) -> Result<PathBuf, crate::agent::AgentError> {
        match &self.model {
            Some(spec) => crate::agent::source::ModelSource::parse(spec)?.resolve(),
            None => Ok(default_model()),
        }
    }

    /// `--gpu-layers`, or all of them in CUDA builds and none otherwise.
    pub fn gpu_layers(&self) -> u32 {
        self.gpu_layers
            .unwrap_or_else(crate::agent::engine::default_gpu_layers)
    }
}

/// The default small model's place in the checkout.
pub fn default_model() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum ActionChoice {
    /// SEARCH/REPLACE blocks against the training file.
    Replace,
    /// Set hyperparameter constants to new values (the narrow action weak models do well).
    Set,
    /// Half of each.
    Mixed,
}

/// When the agent writes the next proposal during a training run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ThinkChoice {
    /// When the trainer runs on a GPU and the agent stays loaded beside it; never on a CPU-only
    /// build, where the agent would take the trainer's cores and change what it measures.
    Auto,
    /// Whenever the agent stays loaded, CPU-only builds too (many-core machines, tests).
    Always,
    Never,
}

#[derive(Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Proposals to make.
    #[arg(long, default_value_t = 5)]
    pub count: usize,
    /// The kind of edit to ask for.
    #[arg(long, value_enum, default_value_t = ActionChoice::Mixed)]
    pub action: ActionChoice,
    /// The training file to propose against (default: train/src/train.rs).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// The research protocol (default: program.md).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Seed of the first proposal (each next one adds 1).
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Save each valid proposal there as proposal-N.rs, ready for `train --train-file`.
    #[arg(long, value_name = "DIR")]
    pub save: Option<PathBuf>,
}

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Args)]
pub struct ConfineArgs {
    /// A file or folder the program may read (repeatable).
    #[arg(long, value_name = "PATH")]
    pub read: Vec<PathBuf>,
    /// A folder the program may write (repeatable); the first is also its TMPDIR and HOME.
    #[arg(long, value_name = "DIR")]
    pub write: Vec<PathBuf>,
    /// An environment variable to keep (repeatable); all but a short allow-list are dropped.
    #[arg(long, value_name = "NAME")]
    pub keep_env: Vec<String>,
    /// Run even where the kernel cannot enforce the file-system rules.
    #[arg(long)]
    pub allow_unconfined: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DataDirArg,
    /// The run's name: branch autoresearch/TAG, folder runs/TAG. An existing tag is resumed.
    /// Default: today's date.
    #[arg(long)]
    pub tag: Option<String>,
    /// Training time budget per run in seconds (default: the profile's, 300).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<f64>,
    /// Kill a training run after this many seconds (default: twice the budget plus 120).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Stop once the run holds this many experiments (the baseline not counted).
    #[arg(long, value_name = "N")]
    pub max_experiments: Option<usize>,
    /// Start no new experiment after this many hours.
    #[arg(long, value_name = "H")]
    pub hours: Option<f64>,
    /// Experiment constants when data must be prepared (default: gpu in CUDA builds, else cpu).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileName>,
    /// Runs of the unchanged file that measure the noise floor.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub baseline_runs: usize,
    /// Most runs of one candidate: a result better than the best but within the noise is run
    /// again, up to this many times (1 = never).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_runs: usize,
    /// The least improvement in val_bpb that can be kept, whatever the noise.
    #[arg(long, default_value_t = 0.0001, value_name = "BPB")]
    pub min_improvement: f64,
    /// Consecutive failures after which the agent starts over from the best file with a
    /// summary of what failed.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub reset_after: usize,
    /// Proposals per experiment before it is recorded as rejected.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub proposals: usize,
    /// The kind of edit to ask for.
    #[arg(long, value_enum, default_value_t = ActionChoice::Mixed)]
    pub action: ActionChoice,
    /// The git checkout holding train/src/train.rs (default: the one around the current folder).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Where run folders go (default: runs/ in the checkout).
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// The research protocol, re-read before every proposal (default: program.md in the checkout).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    #[command(flatten)]
    pub agent: AgentArgs,
    /// Write the next proposal while a training run has the device, and use it when it still
    /// applies to the file that wins.
    #[arg(long, value_enum, default_value_t = ThinkChoice::Auto, value_name = "WHEN")]
    pub think_while_training: ThinkChoice,
    /// The most memory, in MiB, the agent and the trainer may use together on the device (GPU
    /// memory in CUDA builds, RAM otherwise); the agent leaves the device when both do not fit.
    #[arg(long, value_name = "MIB")]
    pub vram_budget: Option<u64>,
    /// Plain log lines only, no progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Run the training program even where the kernel cannot confine it (no Landlock).
    #[arg(long)]
    pub unconfined: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run to report (default: the most recent in the runs folder).
    #[arg(long)]
    pub tag: Option<String>,
    /// The git checkout whose runs/ folder holds the run (default: the one around the current
    /// folder).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Where run folders are (default: runs/ in the checkout).
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Order of the table.
    #[arg(long, value_enum, default_value_t = ReportOrder::Best)]
    pub order: ReportOrder,
    /// Where the chart goes (default: progress.png in the run folder).
    #[arg(long, value_name = "PATH")]
    pub png: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportOrder {
    /// Best val_bpb first.
    Best,
    /// In the order they ran.
    Time,
}

/// A run tag names a branch, a folder and a staging crate: letters, digits, `-` and `_`.
pub fn validate_tag(tag: &str) -> anyhow::Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        anyhow::bail!(
            "--tag {tag:?} is not a valid run tag: use 1 to 64 letters, digits, '-' or '_'"
        );
    }
    Ok(())
}

/// How the agent writes: shared by `propose` and `run`.
#[derive(Args)]
pub struct AgentArgs {
    /// Context size in tokens (default: the model's, at most 8192).
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<usize>,
    /// Longest reply in tokens.
    #[arg(long, default_value_t = 384)]
    pub max_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Repair rounds after a compiler error.
    #[arg(long, default_value_t = 2)]
    pub repairs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_data_dir_becomes_absolute() {
        let arg = DataDirArg {
            data_dir: Some(PathBuf::from("some/data")),
        };
        let resolved = arg.resolve();
        assert!(resolved.is_absolute(), "{}", resolved.display());
        assert!(resolved.ends_with("some/data"));
    }
}
