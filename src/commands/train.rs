//! `train`: build the training program from a training file (or take a prebuilt one) and run
//! one experiment with it, confined, as the loop would.

use anyhow::{bail, Result};
use harness::meta::DataMeta;
use std::ops::ControlFlow;

use crate::cli::TrainArgs;
use crate::trainer::{build, run};
use crate::units::Seconds;

pub fn run(args: &TrainArgs) -> Result<()> {
    let confinement = args.confinement.confinement();
    let data_dir = args.data.resolve();
    // Fail before a build when the data is missing or corrupt.
    let meta = DataMeta::load(&data_dir)?;
    let budget = match args.budget {
        Some(budget) => budget,
        None => Seconds::new(meta.profile.budget_seconds)
            .map_err(|e| anyhow::anyhow!("the prepared data's budget {e}"))?,
    };
    let timeout = crate::cli::run_settings::timeout(budget, args.timeout)?;
    let train_file = args
        .train_file
        .clone()
        .unwrap_or_else(build::default_train_file);
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        data_dir
            .join("runs")
            .join(jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string())
    });

    let binary = match &args.trainer_bin {
        // Built elsewhere (a GPU machine without Rust, build-once-run-many).
        Some(bin) => {
            eprintln!(
                "running the prebuilt {}; training for {budget}",
                bin.display()
            );
            bin.clone()
        }
        None => {
            eprintln!("building {}", train_file.display());
            // One staging slot per training file, so runs of different files never share a build.
            let canonical = train_file
                .canonicalize()
                .unwrap_or_else(|_| train_file.clone());
            let slot = &harness::meta::sha256_hex(canonical.to_string_lossy().as_bytes())[..12];
            let built = build::build(&train_file, slot, confinement)?;
            eprintln!(
                "built {} in {:.1}s (for --trainer-bin: kept until {} newer versions of this file are built); training for {budget}",
                built.binary.display(),
                built.seconds,
                build::KEPT_PROGRAMS
            );
            built.binary
        }
    };
    let spec = run::RunSpec {
        binary: &binary,
        data_dir: &data_dir,
        run_dir: &run_dir,
        seed: 0,
        budget: Some(budget.get()),
        timeout,
        confinement,
        cpus: None,
        gpu: None,
        stop: &|| false,
        describe: false,
    };
    let report = run::run(&spec, |line| {
        println!("{line}");
        ControlFlow::Continue(())
    })?;
    eprintln!(
        "ran for {:.1}s; log: {}",
        report.seconds,
        report.log.display()
    );
    match &report.outcome {
        run::Outcome::Finished(summary) => {
            eprintln!(
                "val_bpb {:.6} ({})",
                summary.val_bpb,
                run_dir.join(harness::summary::RESULT_FILE).display()
            );
            Ok(())
        }
        failed => bail!("{}", failed.problem(spec.timeout).unwrap_or_default()),
    }
}
