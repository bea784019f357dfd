//! `serve`: the dashboard for the runs in a runs folder, until stopped.

use anyhow::{bail, Result};

use crate::cli::ServeArgs;
use crate::dashboard::{Dashboard, Site};

pub fn run(args: &ServeArgs) -> Result<()> {
    let runs = args.run.runs_folder()?;
    if let Some(tag) = &args.run.tag {
        let dir = runs.join(tag.as_str());
        if !dir.is_dir() {
            bail!("no run {tag} in {}: name one that is there with --tag, or leave it out to show the latest", runs.display());
        }
    }
    let site = Site {
        runs,
        default_tag: args.run.tag.clone(),
    };
    let dashboard = Dashboard::bind(args.listen, site)?;
    announce(&dashboard);
    println!("Ctrl-C stops it");
    Ok(dashboard.serve()?)
}

/// The page's address, and a word when other machines can reach it.
pub fn announce(dashboard: &Dashboard) {
    println!("dashboard: {}", dashboard.url());
    if !dashboard.address().ip().is_loopback() {
        println!(
            "the dashboard listens on {}: every machine that reaches this address can read these runs (read-only)",
            dashboard.address()
        );
    }
}
