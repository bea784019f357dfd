//! Which run a command that reads one (`report`, `confirm`) is about: the tag given, or the run
//! whose journal changed last, in the checkout's `runs/` folder or the one given.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::git::checkout_root;
use super::journal::JOURNAL_FILE;
use super::tag::Tag;

/// A run's folder and its tag.
pub struct RunFolder {
    pub tag: String,
    pub dir: PathBuf,
}

/// The run `tag` (default: the latest) under `runs_dir` (default: `runs/` of the checkout
/// around `repo` or the current folder).
pub fn locate(
    repo: Option<&Path>,
    runs_dir: Option<&Path>,
    tag: Option<&Tag>,
) -> Result<RunFolder> {
    let runs = runs_folder(repo, runs_dir)?;
    let tag = match tag {
        Some(tag) => tag.to_string(),
        None => latest_tag(&runs)?,
    };
    Ok(RunFolder {
        dir: runs.join(&tag),
        tag,
    })
}

/// The folder that holds the run folders: `runs_dir`, else `runs/` of the checkout around
/// `repo` (or the current folder).
pub fn runs_folder(repo: Option<&Path>, runs_dir: Option<&Path>) -> Result<PathBuf> {
    match runs_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(checkout(repo)?.join("runs")),
    }
}

/// The git checkout around `repo` (default: around the current folder).
pub fn checkout(repo: Option<&Path>) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    Ok(checkout_root(repo.unwrap_or(&cwd))?)
}

/// The run whose journal changed last.
pub fn latest_tag(runs: &Path) -> Result<String> {
    let entries = std::fs::read_dir(runs).with_context(|| {
        format!(
            "no runs in {}: run `autoresearch run` first",
            runs.display()
        )
    })?;
    let latest: Option<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let modified = e
                .path()
                .join(JOURNAL_FILE)
                .metadata()
                .ok()?
                .modified()
                .ok()?;
            Some((modified, e.path()))
        })
        .max();
    match latest {
        Some((_, path)) => Ok(path.file_name().unwrap().to_string_lossy().into_owned()),
        None => bail!("no run with a journal in {}: pass --tag", runs.display()),
    }
}
