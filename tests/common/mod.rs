//! Helpers shared by the end-to-end tests: the real binary, its output, scratch folders.

use std::process::Command;

use tempfile::TempDir;

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
