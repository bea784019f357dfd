//! Compiles a training file into a training program. The file is staged as the only source of a
//! tiny crate that depends on the harness at the appliance's own path, and built into the
//! appliance's target directory: the harness and every dependency are already compiled there, so
//! an experiment pays only for its one file. A copy of the training file cannot change the
//! harness, whatever worktree it came from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{io, TrainerError};

/// The workspace this appliance was built from (harness sources, Cargo.lock).
const WORKSPACE: &str = env!("CARGO_MANIFEST_DIR");
/// The baseline training file.
pub fn default_train_file() -> PathBuf {
    Path::new(WORKSPACE).join("train/src/train.rs")
}

pub struct Built {
    pub binary: PathBuf,
    pub seconds: f64,
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set, as for the appliance's own build.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(WORKSPACE).join("target"))
}

/// Builds `train_file` in staging slot `slot` (one slot per concurrent user: the loop, a test).
pub fn build(train_file: &Path, slot: &str) -> Result<Built, TrainerError> {
    if !train_file.is_file() {
        return Err(TrainerError::MissingTrainFile(train_file.to_path_buf()));
    }
    let source = std::fs::read_to_string(train_file)
        .map_err(io(format!("cannot read {}", train_file.display())))?;
    build_source(&source, train_file, slot)
}

/// Builds training-file text; `label` names it in errors.
pub fn build_source(source: &str, label: &Path, slot: &str) -> Result<Built, TrainerError> {
    let refused = super::gate::violations(source);
    if !refused.is_empty() {
        return Err(TrainerError::Refused {
            file: label.to_path_buf(),
            reasons: refused.join("\n"),
        });
    }
    let target = target_dir();
    let stage = target.join("trainer-src").join(slot);
    std::fs::create_dir_all(&stage).map_err(io(format!("cannot create {}", stage.display())))?;
    write_if_changed(&stage.join("train.rs"), source.as_bytes())?;
    write_if_changed(&stage.join("Cargo.toml"), manifest(slot).as_bytes())?;
    let lock = std::fs::read(Path::new(WORKSPACE).join("Cargo.lock"))
        .map_err(io("cannot read the workspace's Cargo.lock"))?;
    // Pins the staged crate to the workspace's versions; cargo prunes it to what it needs.
    std::fs::write(stage.join("Cargo.lock"), lock).map_err(io("cannot stage Cargo.lock"))?;

    cargo_build(&stage.join("Cargo.toml"), &target, label)
}

/// Runs cargo on a staged crate, confined: it reads the toolchain, the registry's sources and the
/// harness, writes only the target folder, and has no network. The static gate is the first
/// line of defence; this is the one that holds when the gate is fooled.
fn cargo_build(manifest: &Path, target: &Path, label: &Path) -> Result<Built, TrainerError> {
    let toolchain = Toolchain::find();
    let workspace = Path::new(WORKSPACE);
    // The harness, and the manifests above it that it inherits its package settings from.
    let harness = [
        workspace.join("train/harness"),
        workspace.join("train/Cargo.toml"),
        workspace.join("Cargo.toml"),
    ];
    let mut read: Vec<&Path> = harness.iter().map(PathBuf::as_path).collect();
    read.extend(toolchain.read.iter().map(PathBuf::as_path));
    let mut write: Vec<&Path> = vec![target];
    write.extend(toolchain.write.iter().map(PathBuf::as_path));
    let allowed = crate::confine::Allowed {
        read: &read,
        write: &write,
        keep_env: &[
            "CARGO_HOME",
            "RUSTUP_HOME",
            "RUSTUP_TOOLCHAIN",
            "CARGO_TARGET_DIR",
        ],
    };
    let mut cmd = crate::confine::wrap(&toolchain.cargo, &allowed)
        .map_err(|e| TrainerError::Cargo(e.to_string()))?;
    cmd.env("CARGO_HOME", &toolchain.cargo_home)
        .env("RUSTUP_HOME", &toolchain.rustup_home)
        .arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target);
    if cfg!(feature = "cuda") {
        cmd.args(["--features", "cuda"]);
    }
    let start = Instant::now();
    let output = cmd
        .output()
        .map_err(|e| TrainerError::Cargo(e.to_string()))?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(TrainerError::Compile {
            file: label.to_path_buf(),
            errors: compiler_errors(&stderr),
        });
    }
    let binary = executable(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        TrainerError::Cargo("the build succeeded but reported no executable".into())
    })?;
    Ok(Built { binary, seconds })
}

/// Where cargo and its toolchain live, and what of it a build may read and write.
struct Toolchain {
    cargo: PathBuf,
    cargo_home: PathBuf,
    rustup_home: PathBuf,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
}

impl Toolchain {
    fn find() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let dir = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(default))
        };
        let cargo_home = dir("CARGO_HOME", ".cargo");
        let rustup_home = dir("RUSTUP_HOME", ".rustup");
        // `CARGO` is set when the appliance itself runs under cargo; else the one on PATH.
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .or_else(|| on_path("cargo"))
            .unwrap_or_else(|| PathBuf::from("cargo"));
        let mut read: Vec<PathBuf> = ["bin", "registry", "git", "config.toml", "config"]
            .iter()
            .map(|p| cargo_home.join(p))
            .collect();
        // Not CARGO_HOME itself: it may hold a registry token (credentials.toml).
        read.push(rustup_home.clone());
        if let Some(dir) = cargo.parent() {
            read.push(dir.to_path_buf());
        }
        // Cargo locks its package cache even offline.
        let write = [".package-cache", ".package-cache-mutate", ".global-cache"]
            .iter()
            .map(|p| cargo_home.join(p))
            .collect();
        let existing = |paths: Vec<PathBuf>| paths.into_iter().filter(|p| p.exists()).collect();
        Toolchain {
            cargo,
            cargo_home,
            rustup_home,
            read: existing(read),
            write: existing(write),
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn manifest(slot: &str) -> String {
    format!(
        r#"# Generated by autoresearch for each experiment: do not edit.
[package]
name = "autoresearch-trainer-{slot}"
version = "0.0.0"
edition = "2021"
publish = false

[[bin]]
name = "trainer-{slot}"
path = "train.rs"

[features]
cuda = ["harness/cuda"]

[dependencies]
harness = {{ package = "autoresearch-harness", path = "{harness}" }}

# The same release profile as the appliance's workspace, so its compiled dependencies are reused.
[profile.release]
debug = false

[workspace]
"#,
        harness = Path::new(WORKSPACE).join("train/harness").display()
    )
}

/// Rewriting an unchanged file would only make cargo rebuild it.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), TrainerError> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(io(format!("cannot write {}", path.display())))
}

/// The `error` diagnostics of a rendered cargo log, without warnings and cargo's own chatter.
pub fn compiler_errors(stderr: &str) -> String {
    let mut out = Vec::new();
    let mut in_error = false;
    for line in stderr.lines() {
        if line.starts_with("error") {
            in_error = !line.starts_with("error: could not compile");
        } else if line.starts_with("warning") {
            in_error = false;
        }
        if in_error {
            out.push(line);
        }
    }
    if out.is_empty() {
        return stderr.trim().to_string();
    }
    out.join("\n").trim().to_string()
}

fn executable(json_lines: &str) -> Option<PathBuf> {
    json_lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second line of defence, with the gate out of the way: a crate that reads a file
    /// outside what the build may read at compile time does not build.
    #[test]
    fn a_confined_build_cannot_read_files_outside_the_toolchain() {
        let dir = tempfile::tempdir_in(target_dir()).unwrap();
        let secret = tempfile::NamedTempFile::new_in(std::env::temp_dir()).unwrap();
        std::fs::write(secret.path(), "not for the agent").unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"sneaky\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n",
        )
        .unwrap();
        let main = format!(
            "const S: &str = include_str!({:?});\nfn main() {{ println!(\"{{S}}\"); }}\n",
            secret.path()
        );
        std::fs::write(dir.path().join("src/main.rs"), &main).unwrap();
        // The crate lives in the folder the build may write, as a staged training file does.
        let target = dir.path();
        let err = cargo_build(&dir.path().join("Cargo.toml"), target, Path::new("sneaky"))
            .err()
            .expect("the build must fail");
        let text = err.to_string();
        assert!(text.contains("couldn't read"), "{text}");
        assert!(text.contains("Permission denied"), "{text}");
        // The same crate reading a file it may read builds: the failure above is the confinement.
        std::fs::write(
            dir.path().join("src/main.rs"),
            main.replace(&format!("{:?}", secret.path()), "\"main.rs\""),
        )
        .unwrap();
        cargo_build(&dir.path().join("Cargo.toml"), target, Path::new("honest"))
            .expect("an honest crate builds confined");
    }

    #[test]
    fn compiler_errors_keep_errors_and_drop_warnings() {
        let log = "   Compiling x v0.1.0\nwarning: unused variable: `a`\n --> train.rs:1:1\n\n\
                   error[E0425]: cannot find value `b` in this scope\n --> train.rs:2:5\n  |\n2 |     b\n\n\
                   error: could not compile `x` (bin \"x\") due to 1 previous error\n";
        let errors = compiler_errors(log);
        assert!(errors.starts_with("error[E0425]: cannot find value `b`"));
        assert!(errors.contains("train.rs:2:5"));
        assert!(!errors.contains("warning"));
        assert!(!errors.contains("could not compile"));
    }
}
