//! The fixed harness of an autoresearch experiment. Nobody edits it during research.
//!
//! It owns everything that makes `val_bpb` trustworthy and experiments comparable: the profile's
//! constants, the data loader, the time-budget clock, the fast-fail rule, the evaluation and the
//! summary. The training file (`train/src/train.rs`) owns the model, the optimizer and the loop,
//! and hands the harness a trained model through [`run`]; the harness then saves the weights,
//! scores them itself and prints the result.
//!
//! Modelled on karpathy/autoresearch's `prepare.py` (constants, loader, evaluation), with its known
//! flaws fixed: exact byte lengths for partial UTF-8 tokens and an evaluation that the training
//! file cannot reach.

pub mod check;
pub mod clock;
pub mod device;
pub mod error;
pub mod eval;
pub mod loader;
pub mod memory;
pub mod meta;
pub mod profile;
pub mod rng;
pub mod summary;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub use autoresearch_ops as ops;
pub use candle_core as candle;
use candle_core::{DType, Device, Tensor};
pub use candle_nn;
use candle_nn::VarMap;

use clock::Clock;
use device::DeviceInfo;
pub use error::{HarnessError, Result};
use loader::TrainLoader;
use meta::DataMeta;
pub use profile::Profile;
use summary::{Parts, Summary, RESULT_FILE};

/// Where the prepared data is (default `~/.cache/autoresearch`).
pub const ENV_DATA_DIR: &str = "AUTORESEARCH_DATA_DIR";
/// Where the run writes its weights and `result.json` (default: the current directory).
pub const ENV_RUN_DIR: &str = "AUTORESEARCH_RUN_DIR";
/// Overrides the profile's time budget, in seconds (tests use a few).
pub const ENV_BUDGET: &str = "AUTORESEARCH_BUDGET";
/// The run's seed (default 0): the loop runs a file again with another seed, so that the noise
/// floor and confirmations measure what a change does beyond the luck of its initialisation.
pub const ENV_SEED: &str = "AUTORESEARCH_SEED";
/// Set to 1 to check, after training, that every variable receives a gradient.
pub const ENV_CHECK_GRADIENTS: &str = "AUTORESEARCH_CHECK_GRADIENTS";
/// Set to 1 for the plain wall clock on the CPU too (to measure what the steal correction does).
pub const ENV_WALL_CLOCK: &str = "AUTORESEARCH_WALL_CLOCK";
/// Set to 1 to time the parts of a step exactly on a GPU (the device is synchronised at each
/// part's end, which costs a little speed; on the CPU every op is synchronous anyway).
pub const ENV_TIME_PARTS: &str = "AUTORESEARCH_TIME_PARTS";
/// Set to N (GiB) to run on a GPU as on a card of N GiB: the harness holds the rest of the device's
/// memory for the whole run and leaves it out of the peak (a 24 GB card's setting, measured on a
/// larger card). An error on the CPU.
pub const ENV_GPU_MEMORY_GIB: &str = "AUTORESEARCH_GPU_MEMORY_GIB";
/// Set to 1 to stop at the first batch: the program prints what it says of its model, then
/// [`DESCRIBED`], and exits 0 without training. The appliance compares two files' descriptions to
/// refuse a change of shape constants that leaves the model as it was, before any training time.
pub const ENV_DESCRIBE: &str = "AUTORESEARCH_DESCRIBE";
/// The line a described program ends with.
pub const DESCRIBED: &str = "described: stopped at the first batch";
/// The weights saved before evaluation, so an evaluation failure loses nothing.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Loss above this (or NaN) ends the run at once: the reference's fast-fail rule.
pub const FAIL_LOSS: f32 = 100.0;
/// The first word of the line printed when the evaluation starts (what a watcher waits for).
pub const EVALUATING: &str = "evaluating";

/// What the training file hands over: a function from token ids to logits.
pub trait LanguageModel {
    /// `ids`: `[batch, seq_len]` u32 token ids. Returns `[batch, seq_len, vocab_size]` logits
    /// (any float dtype; the harness scores them in f32).
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
}

/// Facts about the model for the summary.
pub struct ModelInfo {
    pub depth: usize,
    /// Training FLOPs per token (forward + backward), for MFU.
    pub flops_per_token: f64,
}

/// The training file's result.
pub struct Trained {
    pub model: Box<dyn LanguageModel>,
    pub vars: VarMap,
    pub info: ModelInfo,
}

/// A part of a training step, timed with [`Harness::time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The forward pass and the loss.
    Forward,
    /// `backward()` and gathering the gradients.
    Backward,
    /// The optimizer's update.
    Optimizer,
}

/// Where one training step ended.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    pub step: usize,
    /// Training time / budget, in [0, 1]: drive schedules with this.
    pub progress: f64,
    /// The budget is spent: stop training.
    pub done: bool,
}

/// The default data directory: `~/.cache/autoresearch`.
pub fn default_data_dir() -> PathBuf {
    std::env::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("autoresearch")
}

/// Runs one experiment: sets up, calls `train`, then saves, evaluates and prints the summary.
/// Exits the process: 0 with a summary, 1 on any failure (`FAIL` for NaN or exploding loss).
pub fn run(train: impl FnOnce(&mut Harness) -> Result<Trained>) -> ! {
    let outcome = Harness::start().and_then(|mut h| {
        let trained = train(&mut h)?;
        h.finish(trained)
    });
    match outcome {
        Ok(summary) => {
            print!("{}", summary.block());
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    }
}

/// The harness's side of a running experiment.
pub struct Harness {
    profile: Profile,
    run_dir: PathBuf,
    check_gradients: bool,
    seed: u64,
    /// Synchronise the device when a timed part ends (GPU timing).
    sync_parts: bool,
    /// Stop at the first batch (`ENV_DESCRIBE`).
    describe_only: bool,
    device: DeviceInfo,
    budget: f64,
    loader: TrainLoader,
    val_rows: Vec<Vec<u32>>,
    token_bytes: Vec<u16>,
    process_start: Instant,
    step: usize,
    clock: Clock,
    training_seconds: f64,
    tokens_this_step: u64,
    tokens_total: u64,
    /// Tokens of the steps whose time counts (after warm-up): the basis of tokens/s and MFU.
    tokens_timed: u64,
    /// The parts of the step in progress, and their totals over the timed steps.
    parts_this_step: [f64; 3],
    parts: Parts,
    smooth_loss: f64,
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).map(PathBuf::from)
}

impl Harness {
    fn start() -> Result<Self> {
        let process_start = Instant::now();
        let data_dir = env_path(ENV_DATA_DIR).unwrap_or_else(default_data_dir);
        let run_dir = env_path(ENV_RUN_DIR).unwrap_or_else(|| PathBuf::from("."));
        let budget_override = std::env::var(ENV_BUDGET).ok();
        let seed = std::env::var(ENV_SEED)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let check_gradients = std::env::var(ENV_CHECK_GRADIENTS).is_ok_and(|v| v == "1");
        let sync_parts = std::env::var(ENV_TIME_PARTS).is_ok_and(|v| v == "1");
        let wall_clock = std::env::var(ENV_WALL_CLOCK).is_ok_and(|v| v == "1");
        let describe_only = std::env::var(ENV_DESCRIBE).is_ok_and(|v| v == "1");
        let gpu_memory_gib = match std::env::var(ENV_GPU_MEMORY_GIB) {
            Ok(text) => Some(
                text.parse::<f64>()
                    .map_err(|_| HarnessError::BadMemoryLimit(text))?,
            ),
            Err(_) => None,
        };
        // The training file has no business with these.
        for key in [
            ENV_DATA_DIR,
            ENV_RUN_DIR,
            ENV_BUDGET,
            ENV_SEED,
            ENV_CHECK_GRADIENTS,
            ENV_TIME_PARTS,
            ENV_WALL_CLOCK,
            ENV_DESCRIBE,
            ENV_GPU_MEMORY_GIB,
        ] {
            std::env::remove_var(key);
        }
        std::fs::create_dir_all(&run_dir).map_err(error::io(format!(
            "cannot create the run directory {}",
            run_dir.display()
        )))?;
        // A result left by an earlier run must never be mistaken for this one's.
        let _ = std::fs::remove_file(run_dir.join(RESULT_FILE));

        let meta = DataMeta::load(&data_dir)?;
        let profile = meta.profile.clone();
        let budget = match budget_override {
            Some(text) => text
                .parse::<f64>()
                .ok()
                .filter(|b| *b > 0.0)
                .ok_or(HarnessError::BadBudget(text))?,
            None => profile.budget_seconds,
        };
        let token_bytes = meta::read_u16s(&data_dir, &meta.token_bytes)?;
        if token_bytes.len() != profile.vocab_size {
            return Err(HarnessError::CorruptData {
                path: data_dir.join(&meta.token_bytes.file),
                reason: format!(
                    "{} entries for a vocabulary of {}",
                    token_bytes.len(),
                    profile.vocab_size
                ),
            });
        }
        let train_tokens = meta::read_split(&data_dir, &meta.train_shards)?;
        let val_tokens = meta::read_split(&data_dir, &meta.val_shards)?;
        if let Some(bad) = train_tokens
            .iter()
            .chain(&val_tokens)
            .find(|&&t| t as usize >= profile.vocab_size)
        {
            return Err(HarnessError::CorruptData {
                path: data_dir,
                reason: format!("token id {bad} is outside the vocabulary"),
            });
        }
        let val_rows = loader::validation_rows(
            &val_tokens,
            profile.seq_len,
            meta.eval_tokens / profile.seq_len,
        );
        let device = DeviceInfo::detect(gpu_memory_gib)?;
        let clock = Clock::new(device.device.is_cpu() && !wall_clock);
        println!(
            "profile {} | device {} | budget {budget:.0}s | train {:.2}M tokens | eval {} tokens",
            profile.name,
            device.name,
            train_tokens.len() as f64 / 1e6,
            val_rows.len() * profile.seq_len,
        );
        let loader = TrainLoader::new(train_tokens, profile.seq_len, device.device.clone());
        Ok(Self {
            profile,
            run_dir,
            check_gradients,
            seed,
            sync_parts,
            describe_only,
            device,
            budget,
            loader,
            val_rows,
            token_bytes,
            process_start,
            step: 0,
            clock,
            training_seconds: 0.0,
            tokens_this_step: 0,
            tokens_total: 0,
            tokens_timed: 0,
            parts_this_step: [0.0; 3],
            parts: Parts::default(),
            smooth_loss: 0.0,
        })
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn device(&self) -> &Device {
        &self.device.device
    }

    pub fn is_gpu(&self) -> bool {
        !self.device.device.is_cpu()
    }

    /// The run's seed, to add to the training file's own: 0 for a file's first run, another for
    /// each run of it again (the noise floor, confirmation runs).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The training time budget in seconds.
    pub fn budget(&self) -> f64 {
        self.budget
    }

    /// Training time spent / budget, in [0, 1].
    pub fn progress(&self) -> f64 {
        (self.training_seconds / self.budget).min(1.0)
    }

    /// The next training batch: inputs and targets, each `[rows, seq_len]` u32.
    pub fn next_batch(&mut self, rows: usize) -> Result<(Tensor, Tensor)> {
        if self.describe_only {
            // Exits here rather than returning an error: the training file could swallow an
            // error and train on.
            println!("{DESCRIBED}");
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
        self.clock.start();
        self.tokens_this_step += (rows * self.profile.seq_len) as u64;
        Ok(self.loader.next_batch(rows)?)
    }

    /// Runs `f`, one part of the step, and adds its time to that part's total: the summary
    /// reports the split of the timed steps into forward, backward and optimizer.
    pub fn time<T, E>(
        &mut self,
        part: Part,
        f: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let start = Instant::now();
        let out = f();
        if self.sync_parts {
            let _ = self.device.device.synchronize();
        }
        self.parts_this_step[part as usize] += start.elapsed().as_secs_f64();
        out
    }

    /// Ends a training step: synchronises on the loss, applies the fast-fail rule, advances the
    /// clock (steps after the warm-up count against the budget) and prints a progress line.
    pub fn step(&mut self, loss: &Tensor) -> Result<StepInfo> {
        let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let (wall, dt) = self.clock.lap();
        self.step += 1;
        if loss.is_nan() || loss > FAIL_LOSS {
            println!("FAIL");
            eprintln!(
                "step {}: loss {loss} (NaN or above {FAIL_LOSS}): the run has diverged",
                self.step
            );
            std::process::exit(1);
        }
        if self.step > self.profile.warmup_steps {
            self.training_seconds += dt;
            self.tokens_timed += self.tokens_this_step;
            self.parts.add(&self.parts_this_step);
        }
        self.parts_this_step = [0.0; 3];
        self.tokens_total += self.tokens_this_step;
        let tokens_per_second = self.tokens_this_step as f64 / wall.max(1e-9);
        self.tokens_this_step = 0;
        self.device.sample_memory();
        let beta = 0.9;
        self.smooth_loss = beta * self.smooth_loss + (1.0 - beta) * loss as f64;
        let debiased = self.smooth_loss / (1.0 - beta.powi(self.step as i32));
        let progress = self.progress();
        println!(
            "step {:05} ({:5.1}%) | loss {debiased:.6} | dt {:.0}ms | tok/s {tokens_per_second:.0} | epoch {}",
            self.step,
            progress * 100.0,
            wall * 1000.0,
            self.loader.epoch(),
        );
        Ok(StepInfo {
            step: self.step,
            progress,
            done: self.training_seconds >= self.budget,
        })
    }

    fn finish(mut self, trained: Trained) -> Result<Summary> {
        let weights = self.run_dir.join(WEIGHTS_FILE);
        trained.vars.save(&weights)?;
        if self.check_gradients {
            let (x, y) = self.loader.next_batch(2)?;
            let bad = check::bad_gradients(trained.model.as_ref(), &trained.vars, &x, &y)?;
            if !bad.is_empty() {
                return Err(HarnessError::Gradients(bad.join(", ")));
            }
            println!(
                "gradient check: all {} variables receive finite, non-zero gradients",
                trained.vars.all_vars().len()
            );
        }
        println!(
            "{EVALUATING} {} validation tokens",
            self.val_rows.len() * self.profile.seq_len
        );
        let eval_start = Instant::now();
        let score = eval::evaluate(
            trained.model.as_ref(),
            &self.val_rows,
            self.profile.eval_batch_rows,
            self.profile.seq_len,
            self.profile.vocab_size,
            &self.token_bytes,
            &self.device.device,
        )?;
        let eval_seconds = eval_start.elapsed().as_secs_f64();
        let val_bpb = score.bits_per_byte();
        if !val_bpb.is_finite() {
            println!("FAIL");
            eprintln!("the evaluation produced val_bpb = {val_bpb}");
            std::process::exit(1);
        }
        let tokens_per_second = if self.training_seconds > 0.0 {
            self.tokens_timed as f64 / self.training_seconds
        } else {
            0.0
        };
        let peak = self.device.peak.clone();
        let mfu_percent = peak.as_ref().map_or(0.0, |p| {
            100.0 * tokens_per_second * trained.info.flops_per_token / p.flops_per_second
        });
        let num_params: usize = trained.vars.all_vars().iter().map(|v| v.elem_count()).sum();
        let summary = Summary {
            val_bpb,
            training_seconds: self.training_seconds,
            total_seconds: self.process_start.elapsed().as_secs_f64(),
            peak_vram_mb: self.device.peak_memory_mb(),
            mfu_percent,
            total_tokens_m: self.tokens_total as f64 / 1e6,
            num_steps: self.step,
            num_params_m: num_params as f64 / 1e6,
            depth: trained.info.depth,
            profile: self.profile.name.clone(),
            device: self.device.name.clone(),
            mfu_peak: peak,
            eval_tokens: self.val_rows.len() * self.profile.seq_len,
            eval_seconds,
            tokens_per_second,
            epochs: self.loader.epoch(),
            parts: (self.parts.steps > 0).then_some(self.parts),
            stolen_seconds: self.clock.stolen_seconds,
        };
        println!(
            "eval: {} tokens in {eval_seconds:.1}s | weights: {} | mfu against: {}",
            summary.eval_tokens,
            weights.display(),
            summary
                .mfu_peak
                .as_ref()
                .map_or("unknown device peak (reported as 0)", |p| p.basis.as_str()),
        );
        if let Some(p) = &summary.parts {
            let share = |s: f64| 100.0 * s / p.total().max(1e-9);
            println!(
                "step split over {} timed steps: forward {:.0}% | backward {:.0}% | optimizer {:.0}%",
                p.steps,
                share(p.forward_seconds),
                share(p.backward_seconds),
                share(p.optimizer_seconds)
            );
        }
        let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
        meta::write_atomic(&self.run_dir.join(RESULT_FILE), json.as_bytes())?;
        Ok(summary)
    }
}
