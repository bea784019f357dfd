//! A scratch repository and the research loop run on it, for the loop's tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::{autoresearch, scratch};

pub const TAG: &str = "t1";

/// Prepared data with a short evaluation, so that each training run takes seconds.
pub fn prepared() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::prepare_once("prepared-cpu-quick", &["--eval-tokens", "8192"]))
}

/// A git repository holding `train_file` as train/src/train.rs and the real program.md.
pub fn repo(train_file: &str) -> TempDir {
    let dir = scratch();
    let root = dir.path();
    std::fs::create_dir_all(root.join("train/src")).unwrap();
    std::fs::write(root.join("train/src/train.rs"), train_file).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("program.md"),
        root.join("program.md"),
    )
    .unwrap();
    let repo = git2::Repository::init(root).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("train/src/train.rs")).unwrap();
    index.add_path(Path::new("program.md")).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let me = git2::Signature::now("test", "test@localhost").unwrap();
    repo.commit(Some("HEAD"), &me, &me, "start", &tree, &[])
        .unwrap();
    dir
}

/// `run` on `repo` with the quick data and `extra` options.
pub fn loop_cmd(repo: &Path, extra: &[&str]) -> Command {
    let mut cmd = autoresearch(&["run", "--quiet", "--tag", TAG, "--budget", "5"]);
    cmd.arg("--repo")
        .arg(repo)
        .arg("--data-dir")
        .arg(prepared())
        .args(extra);
    cmd
}

pub fn run_dir(repo: &Path) -> PathBuf {
    repo.join("runs").join(TAG)
}

pub fn journal(repo: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir(repo).join("experiments.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every journal line parses"))
        .collect()
}

pub fn tsv(repo: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(run_dir(repo).join("results.tsv"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Waits for `path` to exist, or fails after `limit`.
pub fn wait_for(path: &Path, child: &mut Child, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the loop exited ({status}) before {} appeared",
                path.display()
            );
        }
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose environment mentions `needle`.
pub fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            let text = String::from_utf8_lossy(&environ).replace('\0', " ");
            text.contains(needle)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}
