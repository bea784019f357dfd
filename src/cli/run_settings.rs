//! `run`'s arguments become the loop's settings here, once: the defaults that depend on the
//! checkout and the prepared data are filled in, and the checks that span several options are
//! made, each with a message that names the fix.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::executor_args::{Config, ConfigError};
use super::RunArgs;
use crate::research::settings::Settings;
use crate::research::tag::Tag;
use crate::trainer::run::default_timeout;
use crate::units::Seconds;

/// What `run` found out before the settings can be made.
pub struct Found {
    /// The git checkout the run works on.
    pub checkout: PathBuf,
    /// The prepared data's budget, the default for `--budget`.
    pub profile_budget: Seconds,
    /// The trainer runs on a GPU.
    pub gpu: bool,
    /// autoresearch.toml beside the protocol.
    pub config: Config,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--timeout {timeout} is not longer than the training budget {budget}: every run would be killed before it ends; give a longer --timeout, or leave it out (twice the budget plus 120 s)")]
    TimeoutWithinBudget { timeout: Seconds, budget: Seconds },
}

/// The hard limit on one run: `--timeout`, which must leave the run its budget, or twice the
/// budget plus start-up and evaluation.
pub fn timeout(budget: Seconds, timeout: Option<Seconds>) -> Result<Duration, SettingsError> {
    match timeout {
        Some(timeout) if timeout <= budget => {
            Err(SettingsError::TimeoutWithinBudget { timeout, budget })
        }
        Some(timeout) => Ok(timeout.duration()),
        None => Ok(default_timeout(budget)),
    }
}

/// The research protocol: `--program`, or program.md in the checkout.
pub fn program_path(args: &RunArgs, checkout: &Path) -> PathBuf {
    args.program
        .clone()
        .unwrap_or_else(|| checkout.join("program.md"))
}

impl TryFrom<(&RunArgs, &Found)> for Settings {
    type Error = SettingsError;

    fn try_from((args, found): (&RunArgs, &Found)) -> Result<Settings, SettingsError> {
        let tag = args.tag.clone().unwrap_or_else(Tag::today);
        let budget = args.budget.unwrap_or(found.profile_budget);
        let timeout = timeout(budget, args.timeout)?;
        let runs = args
            .runs_dir
            .clone()
            .unwrap_or_else(|| found.checkout.join("runs"));
        // The training program runs in its run folder, where a relative path would point
        // elsewhere.
        let dir = std::path::absolute(&runs)
            .unwrap_or(runs)
            .join(tag.as_str());
        Ok(Settings {
            dir,
            budget,
            timeout,
            max_experiments: args.max_experiments,
            deadline: args.hours.map(|h| Instant::now() + h),
            baseline_runs: args.baseline_runs,
            max_runs: args.max_runs,
            min_improvement: args.min_improvement,
            reset_after: args.reset_after,
            proposals: args.proposals,
            action: args.action,
            program: program_path(args, &found.checkout),
            controller: args.controller.on(),
            sampler: args.sampler.on(),
            early_stop: args.early_stop.on(),
            paired: args.paired.on(),
            gpu: found.gpu,
            workers: args.executor.workers(&found.config)?,
            tag,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn settings(args: &[&str]) -> Result<Settings, SettingsError> {
        let cli = Cli::try_parse_from([&["autoresearch", "run"], args].concat()).unwrap();
        let Some(crate::cli::Command::Run(run)) = &cli.command else {
            panic!("run")
        };
        let found = Found {
            checkout: PathBuf::from("/work/checkout"),
            profile_budget: Seconds::new(300.0).unwrap(),
            gpu: false,
            config: Config::default(),
        };
        Settings::try_from((&**run, &found))
    }

    #[test]
    fn defaults_come_from_the_checkout_and_the_profile() {
        let s = settings(&["--tag", "night"]).unwrap();
        assert_eq!(s.dir, Path::new("/work/checkout/runs/night"));
        assert_eq!(s.program, Path::new("/work/checkout/program.md"));
        assert_eq!(s.budget.get(), 300.0);
        assert_eq!(s.timeout, Duration::from_secs(720));
        assert_eq!((s.baseline_runs, s.max_runs, s.proposals), (3, 2, 4));
        assert!(s.deadline.is_none());
        let s = settings(&["--budget", "60", "--hours", "2", "--runs-dir", "rel"]).unwrap();
        assert_eq!(s.timeout, Duration::from_secs(240));
        assert!(s.dir.is_absolute() && s.dir.parent().unwrap().ends_with("rel"));
        let left = s.deadline.unwrap() - Instant::now();
        assert!(left > Duration::from_secs(7100) && left <= Duration::from_secs(7200));
    }

    #[test]
    fn a_timeout_within_the_budget_is_refused() {
        let err = settings(&["--budget", "60", "--timeout", "60"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--timeout 60s is not longer than the training budget 60s: every run would be killed before it ends; give a longer --timeout, or leave it out (twice the budget plus 120 s)"
        );
        // Against the profile's budget when --budget is not given.
        assert!(settings(&["--timeout", "100"]).is_err());
        assert_eq!(
            settings(&["--timeout", "301"]).unwrap().timeout,
            Duration::from_secs(301)
        );
    }
}
