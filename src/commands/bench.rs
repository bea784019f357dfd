//! `bench build`: how long one experiment waits for its training file to compile, measured the
//! way the loop pays it (the dependencies already built, one constant changed per build).

use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::BenchBuildArgs;
use crate::trainer::build;

pub fn build_time(args: &BenchBuildArgs) -> Result<()> {
    let baseline_file = build::default_train_file();
    let baseline = std::fs::read_to_string(&baseline_file)
        .with_context(|| format!("cannot read {}", baseline_file.display()))?;
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let file = scratch.path().join("train.rs");

    std::fs::write(&file, &baseline)?;
    let start = Instant::now();
    let confinement = args.confinement.confinement();
    build::build(&file, "bench", confinement)?;
    println!(
        "first build (dependencies as found): {:.1}s",
        start.elapsed().as_secs_f64()
    );

    let mut times = Vec::new();
    for i in 0..args.rounds {
        // A different seed each round: a real edit, so cargo must recompile the file.
        let edited = baseline.replacen(
            "const SEED: u64 = 42;",
            &format!("const SEED: u64 = {};", 1000 + i),
            1,
        );
        anyhow::ensure!(
            edited != baseline,
            "the baseline no longer has `const SEED: u64 = 42;`"
        );
        std::fs::write(&file, edited)?;
        let built = build::build(&file, "bench", confinement)?;
        println!("rebuild {}: {:.2}s", i + 1, built.seconds);
        times.push(built.seconds);
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!("incremental rebuild after editing the training file: median {median:.2}s over {} rounds", times.len());
    }
    Ok(())
}
