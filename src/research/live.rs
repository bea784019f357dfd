//! The loop's state for whoever watches it (the dashboard, in this process or another):
//! `runs/<tag>/live.json`, rewritten at every phase change and, while a run trains, at most every
//! `STEP_INTERVAL` with the loss curve so far. Not a record: the journal stays the truth, and a
//! lost write is made good by the next one, so it is renamed into place but not fsync'd.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::now;

pub const LIVE_FILE: &str = "live.json";

/// A training run's step lines reach the file at most this often (a GPU prints many a second).
pub const STEP_INTERVAL: Duration = Duration::from_millis(400);

/// What the loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started; the baseline or the first proposal comes next.
    Starting,
    /// The agent reads the prompt and writes a candidate.
    Proposing,
    /// A candidate (or the baseline) is being compiled.
    Compiling,
    Training,
    /// The training program evaluates val_bpb after its budget.
    Evaluating,
    /// The loop has ended (stopped, finished, or failed); the page stops waiting for steps.
    Ended,
}

named!(Phase {
    Starting => "starting",
    Proposing => "proposing",
    Compiling => "compiling",
    Training => "training",
    Evaluating => "evaluating",
    Ended => "ended",
});

/// The run as a whole, said once when the loop starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub tag: String,
    /// The agent model's file name.
    pub model: String,
    pub device: String,
    pub profile: String,
    pub budget_seconds: f64,
    /// The loop process: the page says the run is live only while it exists.
    pub pid: u32,
    pub started: String,
}

/// The contents of live.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveState {
    pub run: RunInfo,
    pub phase: Phase,
    /// The experiment in flight, and which of its runs trains.
    pub n: Option<usize>,
    pub run_index: Option<usize>,
    /// When the phase began.
    pub since: String,
    /// The last step line's figures, while training.
    pub step: Option<usize>,
    pub progress: f64,
    pub tokens_per_second: Option<f64>,
    /// `[progress, loss]` of the run training now.
    pub curve: Vec<[f32; 2]>,
    pub updated: String,
}

impl LiveState {
    /// Whether the process that writes it is still there (a killed loop leaves its last phase).
    pub fn writer_alive(&self) -> bool {
        self.phase != Phase::Ended && process_exists(self.run.pid)
    }
}

/// Whether process `pid` is there (Linux's /proc; the appliance confines with Landlock, Linux only).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads live.json; None when there is none or it cannot be read whole (it is replaced by rename,
/// so that is only a file from something else).
pub fn read(dir: &Path) -> Option<LiveState> {
    let text = std::fs::read(dir.join(LIVE_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Keeps live.json up to date. Failing to write it never stops the loop: it is for watching.
pub struct LiveFile {
    path: PathBuf,
    state: LiveState,
    last_write: Option<Instant>,
}

impl LiveFile {
    pub fn new(dir: &Path, run: RunInfo) -> Self {
        // The run folder may be new; if it cannot be made, the writes below say so.
        let _ = std::fs::create_dir_all(dir);
        let now = now();
        let mut file = LiveFile {
            path: dir.join(LIVE_FILE),
            state: LiveState {
                run,
                phase: Phase::Starting,
                n: None,
                run_index: None,
                since: now.clone(),
                step: None,
                progress: 0.0,
                tokens_per_second: None,
                curve: Vec::new(),
                updated: now,
            },
            last_write: None,
        };
        file.write();
        file
    }

    pub fn state(&self) -> &LiveState {
        &self.state
    }

    /// A new phase of experiment `n` (run `run_index` while training), written at once.
    pub fn phase(&mut self, phase: Phase, n: Option<usize>, run_index: Option<usize>) {
        let s = &mut self.state;
        let same_run = s.n == n && s.run_index == run_index;
        if !(same_run && matches!(phase, Phase::Evaluating | Phase::Ended)) {
            // A new run starts a new curve; the evaluation (and the end) keep the one just drawn.
            s.curve.clear();
            s.step = None;
            s.progress = 0.0;
            s.tokens_per_second = None;
        }
        s.phase = phase;
        s.n = n;
        s.run_index = run_index;
        s.since = now();
        self.write();
    }

    /// A step line's figures; written when `STEP_INTERVAL` has passed since the last write.
    pub fn step(&mut self, step: usize, progress: f64, loss: f64, tokens_per_second: f64) {
        let s = &mut self.state;
        s.step = Some(step);
        // A file that prints step lines of its own may print a NaN; JSON has no NaN.
        if progress.is_finite() {
            s.progress = progress;
        }
        s.tokens_per_second = Some(tokens_per_second).filter(|t| t.is_finite());
        if progress.is_finite() && loss.is_finite() {
            s.curve.push([progress as f32, loss as f32]);
        }
        if self.last_write.is_none_or(|t| t.elapsed() >= STEP_INTERVAL) {
            self.write();
        }
    }

    fn write(&mut self) {
        self.state.updated = now();
        let json = serde_json::to_vec(&self.state).expect("the live state serialises");
        let tmp = self.path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::warn!("cannot update {}: {e}", self.path.display());
        }
        self.last_write = Some(Instant::now());
    }
}

impl Drop for LiveFile {
    /// However the loop ends, a watcher is told so.
    fn drop(&mut self) {
        let (n, run) = (self.state.n, self.state.run_index);
        self.phase(Phase::Ended, n, run);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn info(tag: &str) -> RunInfo {
        RunInfo {
            tag: tag.into(),
            model: "model.gguf".into(),
            device: "host RAM".into(),
            profile: "cpu".into(),
            budget_seconds: 60.0,
            pid: std::process::id(),
            started: "2026-12-02T03:27:04Z".into(),
        }
    }

    #[test]
    fn phases_are_written_at_once_and_a_new_run_starts_a_new_curve() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = LiveFile::new(dir.path(), info("t"));
        assert_eq!(read(dir.path()).unwrap().phase, Phase::Starting);
        live.phase(Phase::Training, Some(3), Some(1));
        live.step(1, 0.1, 5.0, 4000.0);
        // Within the interval: kept in memory, on disk at the next write.
        live.step(2, 0.2, 4.5, 4100.0);
        live.phase(Phase::Evaluating, Some(3), Some(1));
        let on_disk = read(dir.path()).unwrap();
        assert_eq!(on_disk.phase, Phase::Evaluating);
        assert_eq!(on_disk.curve, vec![[0.1, 5.0], [0.2, 4.5]]);
        assert_eq!(on_disk.step, Some(2));
        assert!(on_disk.writer_alive());
        live.phase(Phase::Training, Some(3), Some(2));
        assert!(read(dir.path()).unwrap().curve.is_empty());
        drop(live);
        let ended = read(dir.path()).unwrap();
        assert_eq!((ended.phase, ended.n), (Phase::Ended, Some(3)));
        assert!(!ended.writer_alive());
    }

    #[test]
    fn a_step_line_with_no_numbers_keeps_the_file_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = LiveFile::new(dir.path(), info("t"));
        live.phase(Phase::Training, Some(1), Some(1));
        live.last_write = None;
        live.step(3, f64::NAN, f64::NAN, f64::INFINITY);
        let on_disk = read(dir.path()).expect("still readable");
        assert_eq!((on_disk.step, on_disk.progress), (Some(3), 0.0));
        assert!(on_disk.curve.is_empty() && on_disk.tokens_per_second.is_none());
    }

    #[test]
    fn each_phase_has_one_name() {
        for phase in Phase::ALL {
            let json = serde_json::to_string(phase).unwrap();
            assert_eq!(json, format!("\"{phase}\""));
        }
    }

    #[test]
    fn a_step_line_far_enough_from_the_last_write_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = LiveFile::new(dir.path(), info("t"));
        live.phase(Phase::Training, Some(1), Some(1));
        live.last_write = Some(Instant::now() - STEP_INTERVAL);
        live.step(7, 0.5, 4.0, 4000.0);
        assert_eq!(read(dir.path()).unwrap().step, Some(7));
    }
}
