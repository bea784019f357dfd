//! `run` (also the command with no subcommand): checks everything a night needs before the
//! first experiment (data, model, protocol, repository), then hands over to the research loop.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use harness::meta::DataMeta;
use harness::HarnessError;

use crate::agent::inert::ShapeCheck;
use crate::agent::propose::Settings as AgentSettings;
use crate::cli::executor_args::Config;
use crate::cli::run_settings::{program_path, Found};
use crate::cli::{ProfileName, RunArgs};
use crate::dashboard::{Dashboard, Site};
use crate::data::prepare::{prepare, PrepareRequest};
use crate::executor::{Executor, SlurmTrainer};
use crate::program::Protocol;
use crate::research::git::checkout_root;
use crate::research::journal::{JOURNAL_FILE, RESULTS_FILE};
use crate::research::live::{LiveFile, RunInfo};
use crate::research::local_agent::LocalAgent;
use crate::research::progress::Ui;
use crate::research::runner::{LocalTrainer, Trainer};
use crate::research::session::{Ending, Research};
use crate::research::settings::{Settings, ThinkChoice};
use crate::research::stop::Stop;
use crate::scheduler::memory::{Device, Kind};
use crate::scheduler::owner::DeviceOwner;
use crate::scheduler::resident::ResidentAgent;
use crate::units::Seconds;

pub fn run(args: &RunArgs) -> Result<()> {
    let confinement = args.confinement.confinement();
    // Said at start-up, not after a night of experiments that could not run.
    crate::confine::probe(confinement)
        .map_err(|why| anyhow::anyhow!("agent-written code cannot be confined here: {why}"))?;
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let checkout = checkout_root(args.repo.as_deref().unwrap_or(&cwd))?;
    // Before the data is prepared: a missing protocol is said at once.
    let program = Protocol::load(&program_path(args, &checkout))?;
    let data_dir = args.data.resolve();
    let meta = ensure_data(&data_dir, args.profile)?;
    let mut device = Device::detect();
    let found = Found {
        config: Config::beside(&program_path(args, &checkout))?,
        checkout: checkout.clone(),
        profile_budget: Seconds::new(meta.profile.budget_seconds)
            .map_err(|e| anyhow::anyhow!("the prepared data's budget {e}"))?,
        gpu: device.kind == Kind::Gpu,
    };
    let settings = Settings::try_from((args, &found))?;
    let executor = args.executor.executor(&found.config, &settings.dir)?;
    // The address is taken now: a port in use is said before the model loads.
    let dashboard = match args.dashboard {
        true => Some(Dashboard::bind(args.listen, site(&settings))?),
        false => None,
    };

    let model = args.model.resolve()?;
    let before_load = device.read()?;
    let resident = ResidentAgent::load(&model, args.model.gpu_layers(), args.agent.ctx)?;
    println!(
        "agent model {} loaded in {:.1}s; device memory: {}",
        model.display(),
        resident.last_load_seconds,
        device.name
    );
    // Per run folder: two runs never share a staged build, even with the same tag.
    let slot = format!(
        "loop-{}-{}",
        settings.tag,
        &harness::meta::sha256_hex(settings.dir.to_string_lossy().as_bytes())[..8]
    );
    let agent_settings = AgentSettings {
        context: resident.context(),
        max_tokens: args.agent.max_tokens,
        temperature: args.agent.temperature,
        max_repairs: args.agent.repairs,
        slot: slot.clone(),
        confinement,
    };
    let stop = Stop::on_signals()?;
    let device_name = device.name.clone();
    let gpus = Device::gpu_count();
    // Runs that share the agent's device at once: a round's workers, unless each has a GPU of
    // its own (then only the first is beside the agent); none when they go to a cluster.
    let runs_beside = match (&executor, device.kind) {
        (Executor::Slurm { .. }, _) => 0,
        (Executor::Local, Kind::Gpu) if gpus >= settings.workers => 1,
        (Executor::Local, _) => settings.workers,
    };
    let mut owner = DeviceOwner::new(device, resident, args.vram_budget, before_load);
    owner.set_runs_beside(runs_beside);
    // Runs on a cluster take nothing from this machine: the agent writes the next proposal
    // while they train.
    let think = match (args.think_while_training, &executor) {
        (ThinkChoice::Auto, Executor::Slurm { .. }) => ThinkChoice::Always,
        (think, _) => think,
    };
    // A model is described on this machine: only where the runs train here too.
    let shapes =
        matches!(executor, Executor::Local).then(|| ShapeCheck::new(&data_dir, stop.clone()));
    let agent = LocalAgent::new(owner, agent_settings, shapes, think, stop.clone());
    let local = LocalTrainer {
        slot,
        data_dir,
        budget: settings.budget,
        timeout: settings.timeout,
        confinement,
        stop: stop.clone(),
        gpus,
    };
    let trainer: Box<dyn Trainer> = match executor {
        Executor::Local => Box::new(local),
        Executor::Slurm {
            mode,
            options,
            shared,
        } => {
            println!(
                "executor: slurm ({mode} mode), shared folder {}",
                shared.display()
            );
            Box::new(SlurmTrainer::new(local, shared, options, mode)?)
        }
    };
    let (tag, dir, budget) = (settings.tag.clone(), settings.dir.clone(), settings.budget);
    let ui = Ui::new(args.quiet);
    let mut research = Research::open(settings, &checkout, program, agent, trainer, ui, stop)?;
    research.watch(LiveFile::new(
        &dir,
        RunInfo {
            tag: tag.to_string(),
            model: model.file_name().map_or_else(
                || model.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            device: device_name,
            profile: meta.profile.name.to_string(),
            budget_seconds: budget.get(),
            pid: std::process::id(),
            started: crate::research::now(),
        },
    ));
    if let Some(dashboard) = dashboard {
        super::serve::announce(&dashboard);
        dashboard.spawn();
    }
    println!(
        "run {tag}: branch autoresearch/{tag}, journal {}, budget {budget} per run",
        dir.join(JOURNAL_FILE).display(),
    );
    let why = match research.run()? {
        Ending::MaxExperiments => "reached --max-experiments",
        Ending::Deadline => "reached --hours",
        Ending::Stopped => "stopped",
    };
    println!(
        "{why}; results: {} | resume: autoresearch run --tag {tag} | report: autoresearch report --tag {tag} | page: autoresearch serve --tag {tag}",
        dir.join(RESULTS_FILE).display()
    );
    Ok(())
}

/// The dashboard's runs: this run's folder and those beside it, this one first.
fn site(settings: &Settings) -> Site {
    let runs = settings.dir.parent().unwrap_or(&settings.dir).to_path_buf();
    Site {
        runs,
        default_tag: Some(settings.tag.clone()),
    }
}

/// Prepared data for the run: what is there, or the embedded corpus prepared now.
fn ensure_data(data_dir: &Path, profile: Option<ProfileName>) -> Result<DataMeta> {
    let wanted = profile.map(ProfileName::profile);
    match DataMeta::load(data_dir) {
        Ok(meta) if wanted.as_ref().is_none_or(|p| p.name == meta.profile.name) => Ok(meta),
        Ok(_) | Err(HarnessError::NotPrepared { .. }) => {
            println!(
                "preparing the embedded corpus in {} (once)",
                data_dir.display()
            );
            let req = PrepareRequest {
                data_dir: data_dir.to_path_buf(),
                profile: wanted.unwrap_or_else(|| ProfileName::for_this_build().profile()),
                corpus: Vec::<PathBuf>::new(),
                force: false,
            };
            prepare(&req)?;
            Ok(DataMeta::load(data_dir)?)
        }
        Err(e) => Err(e.into()),
    }
}
