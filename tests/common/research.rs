//! A scratch repository and the research loop run on it, for the loop's tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use autoresearch::research::record::Record;
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
    loop_with_budget(repo, "5", extra)
}

/// `run` on `repo` with the quick data, `budget` seconds per run and `extra` options.
pub fn loop_with_budget(repo: &Path, budget: &str, extra: &[&str]) -> Command {
    let mut cmd = autoresearch(&["run", "--quiet", "--tag", TAG, "--budget", budget]);
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

/// The run's journal, read by the appliance's own parser.
pub fn journal(repo: &Path) -> Vec<Record> {
    autoresearch::research::journal::read(&run_dir(repo)).expect("the journal reads")
}

/// Reads the loop's output (run with `--quiet`) until a line ends with `ending`, which proves
/// the state a test waits for; fails when the loop ends first.
pub fn wait_for_line(stdout: &mut BufReader<ChildStdout>, ending: &str) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = stdout
            .read_line(&mut line)
            .expect("the loop's output reads");
        assert!(
            read > 0,
            "the loop ended before printing `...{ending}`:\n{seen}"
        );
        if line.trim_end().ends_with(ending) {
            return;
        }
        seen.push_str(&line);
    }
}

pub fn tsv(repo: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(run_dir(repo).join("results.tsv"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The loop started with `extra` options, its output to be read line by line.
pub fn spawn_loop(repo: &Path, extra: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = loop_cmd(repo, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
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
