//! `run` (also the command with no subcommand): checks everything a night needs before the
//! first experiment (data, model, protocol, repository), then hands over to the research loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness::meta::DataMeta;
use harness::HarnessError;

use crate::agent::propose::Settings as AgentSettings;
use crate::cli::{validate_tag, ProfileName, RunArgs};
use crate::data::prepare::{prepare, PrepareRequest};
use crate::research::git::checkout_root;
use crate::research::journal::{JOURNAL_FILE, RESULTS_FILE};
use crate::research::progress::Ui;
use crate::research::session::{AgentParts, Ending, Research, Settings};
use crate::research::stop;
use crate::scheduler::memory::Device;
use crate::scheduler::owner::DeviceOwner;
use crate::scheduler::resident::ResidentAgent;
use crate::scheduler::MIB;
use crate::trainer::run::timeout;

pub fn run(args: &RunArgs) -> Result<()> {
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| jiff::Zoned::now().strftime("%Y%m%d").to_string());
    validate_tag(&tag)?;
    crate::confine::set_allow_unconfined(args.unconfined);
    // Said at start-up, not after a night of experiments that could not run.
    crate::confine::probe()
        .map_err(|why| anyhow::anyhow!("agent-written code cannot be confined here: {why}"))?;
    for (name, value) in [
        ("--baseline-runs", args.baseline_runs),
        ("--max-runs", args.max_runs),
        ("--proposals", args.proposals),
    ] {
        if value == 0 {
            bail!("{name} must be at least 1");
        }
    }
    if args.min_improvement.is_nan() || args.min_improvement < 0.0 {
        bail!("--min-improvement must be zero or more");
    }
    let deadline = match args.hours {
        Some(h) if h.is_finite() && h > 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(h * 3600.0))
        }
        Some(h) => bail!("--hours must be a positive number, not {h}"),
        None => None,
    };
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let checkout = checkout_root(args.repo.as_deref().unwrap_or(&cwd))?;
    let dir = args
        .runs_dir
        .clone()
        .unwrap_or_else(|| checkout.join("runs"))
        .join(&tag);
    let program_path = args
        .program
        .clone()
        .unwrap_or_else(|| checkout.join("program.md"));
    let program = crate::program::load(Some(&program_path))?;

    let data_dir = args.data.resolve();
    let meta = ensure_data(&data_dir, args.profile)?;
    let budget = args.budget.unwrap_or(meta.profile.budget_seconds);
    if !(budget.is_finite() && budget > 0.0) {
        bail!("--budget must be a positive number of seconds, not {budget}");
    }

    let model = args.model.resolve()?;
    let device = Device::detect();
    let before_load = device.read()?;
    let resident = ResidentAgent::load(&model, args.model.gpu_layers(), args.agent.ctx)?;
    println!(
        "agent model {} loaded in {:.1}s; device memory: {}",
        model.display(),
        resident.last_load_seconds,
        device.name
    );
    let agent_settings = AgentSettings {
        context: resident.context(),
        max_tokens: args.agent.max_tokens,
        temperature: args.agent.temperature,
        max_repairs: args.agent.repairs,
        // Per run folder: two runs never share a staged build, even with the same tag.
        slot: format!(
            "loop-{tag}-{}",
            &harness::meta::sha256_hex(dir.to_string_lossy().as_bytes())[..8]
        ),
    };
    let budget_bytes = args.vram_budget.map(|mib| mib * MIB);
    let agent = AgentParts {
        owner: DeviceOwner::new(device, resident, budget_bytes, before_load),
        program,
        settings: agent_settings,
    };
    let settings = Settings {
        tag: tag.clone(),
        dir: dir.clone(),
        data_dir,
        budget,
        timeout: timeout(budget, args.timeout)?,
        max_experiments: args.max_experiments,
        deadline,
        baseline_runs: args.baseline_runs,
        max_runs: args.max_runs,
        min_improvement: args.min_improvement,
        reset_after: args.reset_after,
        proposals: args.proposals,
        action: args.action,
        program: program_path,
        think: args.think_while_training,
    };
    stop::install()?;
    let mut research = Research::open(settings, &checkout, agent, Ui::new(args.quiet))?;
    println!(
        "run {tag}: branch autoresearch/{tag}, journal {}, budget {budget:.0}s per run",
        dir.join(JOURNAL_FILE).display()
    );
    let ending = research.run()?;
    let why = match ending {
        Ending::MaxExperiments => "reached --max-experiments",
        Ending::Deadline => "reached --hours",
        Ending::Stopped => "stopped",
    };
    println!(
        "{why}; results: {} | resume: autoresearch run --tag {tag} | report: autoresearch report --tag {tag}",
        dir.join(RESULTS_FILE).display()
    );
    Ok(())
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
