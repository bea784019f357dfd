//! Where training runs go: `--executor` and the SLURM options, from the command line and from
//! `autoresearch.toml` beside `program.md` (the command line wins), checked once into an
//! `executor::Executor`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::executor::slurm::SlurmOptions;
use crate::executor::{Executor, ExecutorKind, SlurmMode};

/// The configuration file's name, beside the research protocol.
pub const CONFIG_FILE: &str = "autoresearch.toml";

#[derive(Args, Clone, Debug, Default)]
pub struct ExecutorArgs {
    /// Candidates trained at once: the agent proposes this many distinct ones from the best
    /// file, they train side by side (each worker its own CPUs, GPU or SLURM job), and the best
    /// that beats the noise is kept. Default: autoresearch.toml's, else 1.
    #[arg(long, value_name = "N", value_parser = super::values::count)]
    pub workers: Option<usize>,
    /// Where training runs execute: local (this machine) or slurm (jobs on a SLURM cluster).
    /// Default: autoresearch.toml's, else local.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// How runs become SLURM jobs: worker (long-lived jobs that run experiment after
    /// experiment; the queue is waited once) or job (one job per run).
    #[arg(long, value_enum, value_name = "MODE")]
    pub slurm_mode: Option<SlurmMode>,
    /// The SLURM partition (default: the cluster's default).
    #[arg(long, value_name = "NAME")]
    pub slurm_partition: Option<String>,
    /// Generic resources per job, e.g. gpu:1.
    #[arg(long, value_name = "GRES")]
    pub slurm_gres: Option<String>,
    /// The jobs' time limit, in sbatch's format (e.g. 8:00:00); a worker job needs room for
    /// many runs.
    #[arg(long, value_name = "TIME")]
    pub slurm_time: Option<String>,
    /// CPUs per job (default 1).
    #[arg(long, value_name = "N")]
    pub slurm_cpus: Option<usize>,
    /// A further sbatch option, as sbatch takes it (repeatable): --slurm-option=--account=lab.
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub slurm_option: Vec<String>,
    /// A folder every node mounts at the same path, for the programs, tasks and worker folders
    /// (default: slurm/ in the run folder). The prepared data and the runs folder must be on a
    /// shared file system too.
    #[arg(long, value_name = "DIR")]
    pub slurm_shared: Option<PathBuf>,
}

/// `autoresearch.toml`: the same settings as the command line, for a lab's cluster.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub executor: Option<ExecutorKind>,
    pub workers: Option<usize>,
    #[serde(default)]
    pub slurm: SlurmConfig,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub mode: Option<SlurmMode>,
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub time: Option<String>,
    pub cpus: Option<usize>,
    #[serde(default)]
    pub options: Vec<String>,
    pub shared: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid configuration: {message}; see the README's \"Running on a SLURM cluster\" for its keys")]
    Invalid { path: PathBuf, message: String },
    #[error("{option} is for the slurm executor, but the executor is local: add --executor slurm (or executor = \"slurm\" in {CONFIG_FILE}), or leave it out")]
    SlurmOptionWithoutSlurm { option: &'static str },
    #[error("--slurm-cpus must be at least 1")]
    NoCpus,
    #[error("workers = 0 in {CONFIG_FILE}: at least one candidate must train; give 1 or more")]
    NoWorkers,
}

impl Config {
    /// The configuration beside the protocol; none there is an empty one.
    pub fn beside(program: &Path) -> Result<Config, ConfigError> {
        let path = program.parent().unwrap_or(Path::new(".")).join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path,
            message: e.message().to_string(),
        })
    }
}

impl ExecutorArgs {
    /// Candidates trained at once: the command line over the configuration file, else 1.
    pub fn workers(&self, config: &Config) -> Result<usize, ConfigError> {
        match self.workers.or(config.workers).unwrap_or(1) {
            0 => Err(ConfigError::NoWorkers),
            n => Ok(n),
        }
    }

    /// The executor: the command line over the configuration file; `run_dir` holds the shared
    /// folder by default.
    pub fn executor(&self, config: &Config, run_dir: &Path) -> Result<Executor, ConfigError> {
        let kind = self.executor.or(config.executor).unwrap_or_default();
        let slurm = &config.slurm;
        if kind == ExecutorKind::Local {
            let given = [
                ("--slurm-mode", self.slurm_mode.is_some()),
                ("--slurm-partition", self.slurm_partition.is_some()),
                ("--slurm-gres", self.slurm_gres.is_some()),
                ("--slurm-time", self.slurm_time.is_some()),
                ("--slurm-cpus", self.slurm_cpus.is_some()),
                ("--slurm-option", !self.slurm_option.is_empty()),
                ("--slurm-shared", self.slurm_shared.is_some()),
            ];
            if let Some((option, _)) = given.iter().find(|(_, given)| *given) {
                return Err(ConfigError::SlurmOptionWithoutSlurm { option });
            }
            return Ok(Executor::Local);
        }
        let cpus = self.slurm_cpus.or(slurm.cpus).unwrap_or(1);
        if cpus == 0 {
            return Err(ConfigError::NoCpus);
        }
        let mut extra = slurm.options.clone();
        extra.extend(self.slurm_option.iter().cloned());
        let options = SlurmOptions {
            partition: self.slurm_partition.clone().or(slurm.partition.clone()),
            gres: self.slurm_gres.clone().or(slurm.gres.clone()),
            time: self.slurm_time.clone().or(slurm.time.clone()),
            cpus,
            extra,
        };
        let shared = self
            .slurm_shared
            .clone()
            .or(slurm.shared.clone())
            .unwrap_or_else(|| run_dir.join("slurm"));
        Ok(Executor::Slurm {
            mode: self.slurm_mode.or(slurm.mode).unwrap_or_default(),
            options,
            shared: std::path::absolute(&shared).unwrap_or(shared),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExecutorArgs,
    }

    fn executor(args: &[&str], config: &str) -> Result<Executor, ConfigError> {
        let cli = Cli::try_parse_from([&["autoresearch"], args].concat()).unwrap();
        let config: Config = toml::from_str(config).unwrap();
        cli.args.executor(&config, Path::new("/runs/night"))
    }

    #[test]
    fn local_by_default_and_slurm_options_need_slurm() {
        assert_eq!(executor(&[], "").unwrap(), Executor::Local);
        let err = executor(&["--slurm-partition", "gpu"], "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--slurm-partition is for the slurm executor, but the executor is local: add --executor slurm (or executor = \"slurm\" in autoresearch.toml), or leave it out"
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_options_add_up() {
        let config = r#"
            executor = "slurm"
            [slurm]
            partition = "cpu"
            time = "8:00:00"
            options = ["--account=lab"]
            shared = "/shared/ar"
        "#;
        let got = executor(
            &[
                "--slurm-partition",
                "gpu",
                "--slurm-gres",
                "gpu:1",
                "--slurm-option=--qos=long",
                "--slurm-mode",
                "job",
            ],
            config,
        )
        .unwrap();
        let Executor::Slurm {
            mode,
            options,
            shared,
        } = got
        else {
            panic!("slurm")
        };
        assert_eq!(mode, SlurmMode::Job);
        assert_eq!(shared, Path::new("/shared/ar"));
        assert_eq!(
            options,
            SlurmOptions {
                partition: Some("gpu".into()),
                gres: Some("gpu:1".into()),
                time: Some("8:00:00".into()),
                cpus: 1,
                extra: vec!["--account=lab".into(), "--qos=long".into()],
            }
        );
        // The executor named in the file can be overridden too.
        assert_eq!(
            executor(&["--executor", "local"], config).unwrap(),
            Executor::Local
        );
    }

    #[test]
    fn workers_come_from_the_command_line_or_the_file() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["autoresearch"], args].concat());
        let config: Config = toml::from_str("workers = 4").unwrap();
        assert_eq!(
            parse(&[])
                .unwrap()
                .args
                .workers(&Config::default())
                .unwrap(),
            1
        );
        assert_eq!(parse(&[]).unwrap().args.workers(&config).unwrap(), 4);
        assert_eq!(
            parse(&["--workers", "2"])
                .unwrap()
                .args
                .workers(&config)
                .unwrap(),
            2
        );
        assert!(parse(&["--workers", "0"]).is_err());
        let zero: Config = toml::from_str("workers = 0").unwrap();
        assert!(matches!(
            parse(&[]).unwrap().args.workers(&zero),
            Err(ConfigError::NoWorkers)
        ));
    }

    #[test]
    fn worker_mode_and_a_shared_folder_in_the_run_by_default() {
        let got = executor(&["--executor", "slurm"], "").unwrap();
        assert_eq!(
            got,
            Executor::Slurm {
                mode: SlurmMode::Worker,
                options: SlurmOptions {
                    cpus: 1,
                    ..SlurmOptions::default()
                },
                shared: PathBuf::from("/runs/night/slurm"),
            }
        );
    }

    #[test]
    fn a_bad_file_names_itself_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[slurm]\npartiton = \"gpu\"\n",
        )
        .unwrap();
        let err = Config::beside(&dir.path().join("program.md")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "autoresearch.toml is not a valid configuration: unknown field `partiton`"
            ),
            "{text}"
        );
        assert_eq!(
            Config::beside(&dir.path().join("sub/program.md")).unwrap(),
            Config::default()
        );
    }
}
