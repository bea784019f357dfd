//! Helpers shared by the end-to-end tests: the real binary, its output, scratch folders.

#![allow(dead_code)] // each test binary uses its own part of these

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub mod research;

/// The appliance binary with `args`.
pub fn autoresearch(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoresearch"));
    cmd.args(args);
    cmd
}

/// Runs to completion: (succeeded, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A fresh folder under cargo's per-target scratch space, removed when dropped.
pub fn scratch() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The default corpus prepared with the CPU profile (plus `extra` prepare options) in a fixed
/// folder under cargo's scratch space. `--force` makes a stale copy from an older build fresh;
/// each test binary prepares it once.
pub fn prepare_once(name: &str, extra: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let (ok, stdout, stderr) = run(autoresearch(&["prepare", "--force", "--profile", "cpu"])
        .args(extra)
        .arg("--data-dir")
        .arg(&dir));
    assert!(ok, "prepare failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("prepared: "), "{stdout}");
    dir
}

/// The baseline training file.
pub fn baseline() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("train/src/train.rs"))
        .unwrap()
}

/// Waits until process `pid` has exited (a zombie runs no more), at most `limit`; true when it
/// has. A pidfd makes this a wait on the exit itself, not a poll.
pub fn wait_exit(pid: i32, limit: std::time::Duration) -> bool {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        // No such process: it is gone already.
        return true;
    }
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) on one descriptor we own, then close(2) of it.
    let ready = unsafe { libc::poll(&mut poll, 1, limit.as_millis() as i32) };
    unsafe { libc::close(fd) };
    ready > 0
}
