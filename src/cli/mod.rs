//! Command-line arguments. Each value is checked where clap reads it (`values`, and the
//! domain's own types: `Seconds`, `Tag`), so a command sees only valid settings; `run`'s
//! arguments then become the loop's settings in one place (`run_settings`).

pub mod executor_args;
pub mod run_settings;
pub mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::Profile;

use crate::confine::Confinement;
use crate::research::locate::{checkout, locate, runs_folder, RunFolder};
use crate::research::settings::{ActionChoice, Switch, ThinkChoice};
use crate::research::tag::Tag;
use crate::units::{Bytes, Seconds};

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
    Run(Box<RunArgs>),
    /// The experiments of a run as a table, and progress.png.
    Report(ReportArgs),
    /// Run the best commit and the baseline alternately: is the improvement real?
    Confirm(ConfirmArgs),
    /// Watch runs in a browser: a read-only page that follows a live loop. / shows --tag (default:
    /// the run whose journal changed last); every run in the folder is at /run/TAG/.
    Serve(ServeArgs),
    /// Train the tokenizer and tokenize a corpus into training and validation shards.
    Prepare(PrepareArgs),
    /// Build the training program and run one experiment with it.
    Train(TrainArgs),
    /// Propose edits to the training file with a local model, without training.
    Propose(ProposeArgs),
    /// Run a program confined (used by the appliance for the training program).
    #[command(hide = true)]
    Confine(ConfineArgs),
    /// Run one training task from a shared folder and write its report (a SLURM job's command).
    #[command(hide = true)]
    NodeRun {
        /// The task.json in the run's folder.
        task: PathBuf,
    },
    /// Run training tasks handed to a worker folder until told to quit (a worker job's command).
    #[command(hide = true)]
    NodeWorker {
        /// The worker's folder in the shared path.
        dir: PathBuf,
    },
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
    /// The trainer's tokens/s and step split at the prepared profile's shape, and PyTorch's beside
    /// it with --torch.
    Trainer(BenchTrainerArgs),
}

#[derive(Args)]
pub struct BenchTrainerArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Seconds of training measured (the harness's warm-up steps not counted).
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    pub budget: Seconds,
    /// The training file to build (default: train/src/train.rs).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// A prebuilt training program instead of building one.
    #[arg(long, value_name = "PATH", conflicts_with = "train_file", value_parser = values::trainer_bin)]
    pub trainer_bin: Option<PathBuf>,
    /// A Python with torch: PyTorch's reference runs right after, eager and with torch.compile,
    /// at the same shape and for the same time.
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<PathBuf>,
    /// The PyTorch reference (default: ../shared/bench/torch_ref_cpu.py beside the checkout).
    #[arg(long, value_name = "PATH", requires = "torch")]
    pub torch_script: Option<PathBuf>,
    #[command(flatten)]
    pub confinement: ConfinementArg,
}

#[derive(Args)]
pub struct BenchDraftArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DataDirArg,
    /// Seconds of training in each of the two runs.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    pub budget: Seconds,
    /// A prebuilt training program (default: build the training file).
    #[arg(long, value_name = "PATH", value_parser = values::trainer_bin)]
    pub trainer_bin: Option<PathBuf>,
    /// The training file the agent drafts against (and builds, without --trainer-bin).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// The research protocol (default: program.md).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// Replies per draft before it gives up.
    #[arg(long, default_value_t = 4, value_parser = values::count)]
    pub proposals: usize,
    /// Longest reply, in tokens.
    #[arg(long, default_value_t = 512, value_parser = values::count)]
    pub max_tokens: usize,
    /// Context size in tokens (default: the model's, at most 8192).
    #[arg(long, value_name = "TOKENS", value_parser = values::context)]
    pub ctx: Option<usize>,
    #[command(flatten)]
    pub confinement: ConfinementArg,
}

#[derive(Args)]
pub struct BenchSwapArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Evict-and-reload cycles.
    #[arg(long, default_value_t = 2, value_parser = values::count)]
    pub cycles: usize,
    /// Context size in tokens the agent's KV cache is sized for (default: the model's, at most
    /// 8192).
    #[arg(long, value_name = "TOKENS", value_parser = values::context)]
    pub ctx: Option<usize>,
}

#[derive(Args)]
pub struct BenchAgentArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Prompt tokens per round (llama-bench's -p).
    #[arg(long, default_value_t = 512, value_parser = values::count)]
    pub prompt_tokens: usize,
    /// Generated tokens per round (llama-bench's -n).
    #[arg(long, default_value_t = 128, value_parser = values::count)]
    pub gen_tokens: usize,
    #[arg(long, default_value_t = 3, value_parser = values::count)]
    pub rounds: usize,
    /// A llama-bench binary (llama.cpp's own), for the side-by-side ratio.
    #[arg(long, value_name = "PATH")]
    pub llama_bench: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchBuildArgs {
    /// Rebuilds to time.
    #[arg(long, default_value_t = 5, value_parser = values::count)]
    pub rounds: usize,
    #[command(flatten)]
    pub confinement: ConfinementArg,
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
    #[arg(long, value_name = "TOKENS", value_parser = values::count)]
    pub eval_tokens: Option<usize>,
}

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Training time budget in seconds (default: the profile's, 300).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<Seconds>,
    /// The training file to build (default: train/src/train.rs).
    #[arg(long, value_name = "PATH")]
    pub train_file: Option<PathBuf>,
    /// Where the log, weights and result go (default: <data-dir>/runs/<date-time>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub confinement: ConfinementArg,
    /// Kill the training program (and everything it started) after this many seconds
    /// (default: twice the budget plus 120).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<Seconds>,
    /// Run this prebuilt training program instead of building one (for machines without Rust).
    #[arg(long, value_name = "PATH", conflicts_with = "train_file", value_parser = values::trainer_bin)]
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

/// Whether agent-written code may run where the kernel cannot confine it: one option, shared by
/// every command that builds or runs a training file.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct ConfinementArg {
    /// Build and run agent-written code even where the kernel cannot confine it (no Landlock).
    #[arg(long)]
    unconfined: bool,
}

impl ConfinementArg {
    pub fn confinement(self) -> Confinement {
        if self.unconfined {
            Confinement::BestEffort
        } else {
            Confinement::Required
        }
    }
}

#[derive(Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Proposals to make.
    #[arg(long, default_value_t = 5, value_parser = values::count)]
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
    #[command(flatten)]
    pub confinement: ConfinementArg,
}

#[derive(Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub confinement: ConfinementArg,
    /// The research protocol, beside which autoresearch.toml is read (default: program.md in
    /// the checkout around the current folder).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    #[command(flatten)]
    pub executor: executor_args::ExecutorArgs,
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
    /// A CPU the program may run on (repeatable; default: all).
    #[arg(long, value_name = "N")]
    pub cpu: Vec<usize>,
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
    pub tag: Option<Tag>,
    /// Training time budget per run in seconds (default: the profile's, 300).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<Seconds>,
    /// Kill a training run after this many seconds (default: twice the budget plus 120).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<Seconds>,
    /// Stop once the run holds this many experiments (the baseline not counted).
    #[arg(long, value_name = "N")]
    pub max_experiments: Option<usize>,
    /// Start no new experiment after this many hours.
    #[arg(long, value_name = "H", value_parser = values::hours)]
    pub hours: Option<std::time::Duration>,
    /// Experiment constants when data must be prepared (default: gpu in CUDA builds, else cpu).
    #[arg(long, value_enum)]
    pub profile: Option<ProfileName>,
    /// Runs of the unchanged file that measure the noise floor.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = values::count)]
    pub baseline_runs: usize,
    /// Most runs of one candidate: a result better than the best but within the noise is run
    /// again, up to this many times (1 = never).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = values::count)]
    pub max_runs: usize,
    /// The least improvement in val_bpb that can be kept, whatever the noise.
    #[arg(long, default_value_t = 0.0001, value_name = "BPB", value_parser = values::zero_or_more)]
    pub min_improvement: f64,
    /// Consecutive failures after which the agent starts over from the best file with a
    /// summary of what failed.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = values::count)]
    pub reset_after: usize,
    /// Proposals per experiment before it is recorded as rejected.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = values::count)]
    pub proposals: usize,
    /// The kind of edit to ask for when the controller is off.
    #[arg(long, value_enum, default_value_t = ActionChoice::Mixed)]
    pub action: ActionChoice,
    /// The search controller: it picks each experiment's move (a new idea, a refinement, a
    /// combination, an ablation or a hyperparameter move) from the recent results.
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "ON|OFF")]
    pub controller: Switch,
    /// The sampler: hyperparameter moves take their values from every past result (off: the
    /// agent writes the values).
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "ON|OFF")]
    pub sampler: Switch,
    /// Stop a run whose training loss falls behind the best file's by more than the baseline
    /// runs' spread allows, late in its budget.
    #[arg(long, value_enum, default_value_t = Switch::Off, value_name = "ON|OFF")]
    pub early_stop: Switch,
    /// Judge a candidate that looks better against the best file run again beside it (with the
    /// best's latest runs), not against the best's value measured earlier: a machine whose speed
    /// drifts over the night then cannot make a later file look better (off: one run fewer per
    /// promising candidate).
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "ON|OFF")]
    pub paired: Switch,
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
    #[arg(long, value_name = "MIB", value_parser = values::mib)]
    pub vram_budget: Option<Bytes>,
    /// Plain log lines only, no progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Serve the dashboard while the loop runs (as `serve` does).
    #[arg(long)]
    pub dashboard: bool,
    /// Where the dashboard listens: this machine only unless another address is given.
    #[arg(long, value_name = "ADDR", default_value = crate::dashboard::DEFAULT_LISTEN, requires = "dashboard")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub confinement: ConfinementArg,
    #[command(flatten)]
    pub executor: executor_args::ExecutorArgs,
}

/// Which recorded run a command reads: report and confirm name it the same way.
#[derive(Args)]
pub struct RunArg {
    /// The run (default: the most recent in the runs folder).
    #[arg(long)]
    pub tag: Option<Tag>,
    /// The git checkout whose runs/ folder holds the run (default: the one around the current
    /// folder).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Where run folders are (default: runs/ in the checkout).
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
}

impl RunArg {
    /// The git checkout that holds the run.
    pub fn checkout(&self) -> anyhow::Result<PathBuf> {
        checkout(self.repo.as_deref())
    }

    /// The folder that holds the run folders.
    pub fn runs_folder(&self) -> anyhow::Result<PathBuf> {
        runs_folder(self.repo.as_deref(), self.runs_dir.as_deref())
    }

    pub fn locate(&self) -> anyhow::Result<RunFolder> {
        locate(
            self.repo.as_deref(),
            self.runs_dir.as_deref(),
            self.tag.as_ref(),
        )
    }
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub run: RunArg,
    /// Order of the table.
    #[arg(long, value_enum, default_value_t = ReportOrder::Best)]
    pub order: ReportOrder,
    /// Where the chart goes (default: progress.png in the run folder).
    #[arg(long, value_name = "PATH")]
    pub png: Option<PathBuf>,
    /// Also write the dashboard's page as one self-contained file, every experiment inside,
    /// that opens in a browser with no server and no network.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: RunArg,
    /// Where to listen: this machine only unless another address is given.
    #[arg(long, value_name = "ADDR", default_value = crate::dashboard::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
}

#[derive(Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub run: RunArg,
    /// Runs of each file.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = values::at_least_two)]
    pub runs: usize,
    /// Training seconds per run (default: the run's own budget).
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<Seconds>,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub confinement: ConfinementArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportOrder {
    /// Best val_bpb first.
    Best,
    /// In the order they ran.
    Time,
}

/// How the agent writes: shared by `propose` and `run`.
#[derive(Args)]
pub struct AgentArgs {
    /// Context size in tokens (default: the model's, at most 8192).
    #[arg(long, value_name = "TOKENS", value_parser = values::context)]
    pub ctx: Option<usize>,
    /// Longest reply in tokens.
    #[arg(long, default_value_t = 384, value_parser = values::count)]
    pub max_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.8, value_parser = values::temperature)]
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

    /// The first line of clap's message for `args`.
    fn refusal(args: &[&str]) -> String {
        let err = Cli::try_parse_from([&["autoresearch"], args].concat())
            .err()
            .unwrap_or_else(|| panic!("{args:?} was accepted"));
        err.to_string().lines().next().unwrap().to_string()
    }

    #[test]
    fn every_invalid_value_is_refused_with_what_it_must_be() {
        let seconds = "must be a positive number of seconds, at most 10000000";
        let count = "must be a whole number of at least 1";
        let cases: &[(&[&str], String)] = &[
            (&["run", "--budget", "inf"], format!("invalid value 'inf' for '--budget <SECONDS>': {seconds}")),
            (&["--budget", "0"], format!("invalid value '0' for '--budget <SECONDS>': {seconds}")),
            (&["train", "--budget", "inf"], format!("invalid value 'inf' for '--budget <SECONDS>': {seconds}")),
            (&["train", "--timeout", "NaN"], format!("invalid value 'NaN' for '--timeout <SECONDS>': {seconds}")),
            (&["bench", "draft", "--budget", "0"], format!("invalid value '0' for '--budget <SECONDS>': {seconds}")),
            (&["bench", "trainer", "--budget", "-"], format!("invalid value '-' for '--budget <SECONDS>': {seconds}")),
            (&["run", "--timeout", "0"], format!("invalid value '0' for '--timeout <SECONDS>': {seconds}")),
            (&["run", "--tag", "a b"], "invalid value 'a b' for '--tag <TAG>': \"a b\" is not a valid run tag: use 1 to 64 letters, digits, '-' or '_'".into()),
            (&["report", "--tag", "../x"], "invalid value '../x' for '--tag <TAG>': \"../x\" is not a valid run tag: use 1 to 64 letters, digits, '-' or '_'".into()),
            (&["run", "--baseline-runs", "0"], format!("invalid value '0' for '--baseline-runs <N>': {count}")),
            (&["run", "--max-runs", "0"], format!("invalid value '0' for '--max-runs <N>': {count}")),
            (&["run", "--proposals", "none"], format!("invalid value 'none' for '--proposals <N>': {count}")),
            (&["run", "--reset-after", "0"], format!("invalid value '0' for '--reset-after <N>': {count}")),
            (&["confirm", "--runs", "1"], "invalid value '1' for '--runs <N>': must be a whole number of at least 2 (an interval needs two runs of each file)".into()),
            (&["propose", "--count", "0"], format!("invalid value '0' for '--count <COUNT>': {count}")),
            (&["prepare", "--eval-tokens", "0"], format!("invalid value '0' for '--eval-tokens <TOKENS>': {count}")),
            (&["run", "--max-tokens", "0"], format!("invalid value '0' for '--max-tokens <MAX_TOKENS>': {count}")),
            (&["run", "--min-improvement", "NaN"], "invalid value 'NaN' for '--min-improvement <BPB>': must be a number of zero or more".into()),
            (&["run", "--hours", "0"], "invalid value '0' for '--hours <H>': must be a positive number of hours, at most 100000".into()),
            (&["run", "--vram-budget", "0"], "invalid value '0' for '--vram-budget <MIB>': must be a positive whole number of MiB (1024 = 1 GiB)".into()),
            (&["run", "--temperature", "9"], "invalid value '9' for '--temperature <TEMPERATURE>': must be a number from 0 (always the likeliest token) to 5".into()),
            (&["run", "--ctx", "10"], "invalid value '10' for '--ctx <TOKENS>': must be a whole number of tokens, at least 256".into()),
            (&["train", "--trainer-bin", "/no/such/trainer"], "invalid value '/no/such/trainer' for '--trainer-bin <PATH>': does not exist: pass a training program built by `autoresearch train`".into()),
            (&["serve", "--listen", "here"], "invalid value 'here' for '--listen <ADDR>': invalid socket address syntax".into()),
            (&["run", "--dashboard", "--listen", "localhost"], "invalid value 'localhost' for '--listen <ADDR>': invalid socket address syntax".into()),
            (&["serve", "--tag", "../runs"], "invalid value '../runs' for '--tag <TAG>': \"../runs\" is not a valid run tag: use 1 to 64 letters, digits, '-' or '_'".into()),
            (&["run", "--listen", "127.0.0.1:9000"], "the following required arguments were not provided:".into()),
            (&["bench", "draft", "--trainer-bin", "/no/such/trainer"], "invalid value '/no/such/trainer' for '--trainer-bin <PATH>': does not exist: pass a training program built by `autoresearch train`".into()),
        ];
        for (args, expected) in cases {
            assert_eq!(&refusal(args), &format!("error: {expected}"), "{args:?}");
        }
    }

    #[test]
    fn unconfined_is_one_option_wherever_agent_code_runs() {
        let commands: [&[&str]; 8] = [
            &["confirm"],
            &["run"],
            &["train"],
            &["propose"],
            &["doctor"],
            &["bench", "draft"],
            &["bench", "build"],
            &["bench", "trainer"],
        ];
        for command in commands {
            let args = [&["autoresearch"], command, &["--unconfined"]].concat();
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let confinement = match cli.command.unwrap() {
                Command::Run(a) => a.confinement,
                Command::Train(a) => a.confinement,
                Command::Propose(a) => a.confinement,
                Command::Doctor(a) => a.confinement,
                Command::Bench(BenchCommand::Draft(a)) => a.confinement,
                Command::Bench(BenchCommand::Build(a)) => a.confinement,
                Command::Bench(BenchCommand::Trainer(a)) => a.confinement,
                Command::Confirm(a) => a.confinement,
                _ => unreachable!(),
            };
            assert_eq!(confinement.confinement(), Confinement::BestEffort);
        }
        assert_eq!(
            ConfinementArg::default().confinement(),
            Confinement::Required
        );
    }
}
