//! Compiles a training file into a training program. The file is staged as the only source of a
//! tiny crate that depends on the harness at the appliance's own path, and built into the
//! appliance's target directory: the harness and every dependency are already compiled there, so
//! an experiment pays only for its one file. A copy of the training file cannot change the
//! harness, whatever worktree it came from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{io, TrainerError};
use crate::confine::Confinement;

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
pub fn build(
    train_file: &Path,
    slot: &str,
    confinement: Confinement,
) -> Result<Built, TrainerError> {
    if !train_file.is_file() {
        return Err(TrainerError::MissingTrainFile(train_file.to_path_buf()));
    }
    let source = std::fs::read_to_string(train_file)
        .map_err(io(format!("cannot read {}", train_file.display())))?;
    build_source(&source, train_file, slot, confinement)
}

/// Builds training-file text; `label` names it in errors.
pub fn build_source(
    source: &str,
    label: &Path,
    slot: &str,
    confinement: Confinement,
) -> Result<Built, TrainerError> {
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
    write_if_changed(&stage.join("Cargo.toml"), manifest_text(slot).as_bytes())?;
    let lock = std::fs::read(Path::new(WORKSPACE).join("Cargo.lock"))
        .map_err(io("cannot read the workspace's Cargo.lock"))?;
    // Pins the staged crate to the workspace's versions; cargo prunes it to what it needs.
    std::fs::write(stage.join("Cargo.lock"), lock).map_err(io("cannot stage Cargo.lock"))?;

    let built = cargo_build(&stage.join("Cargo.toml"), &target, label, confinement)?;
    keep_program(built, &stage, source)
}

/// Copies `from` to `to` through a hidden temporary name beside it, so that whoever runs or reads
/// `to` meanwhile sees the old file or the new one, never a part.
pub fn copy_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = to.with_file_name(format!(".{name}.incoming-{}", std::process::id()));
    std::fs::copy(from, &tmp)?;
    std::fs::rename(&tmp, to)
}

/// Programs kept per slot: a build replaces the slot's executable in place, so whoever builds two
/// files before running them (confirm: the baseline and the best) needs each kept apart.
pub const KEPT_PROGRAMS: usize = 4;

/// Copies the slot's freshly built executable to a path of its own, named by the source's hash,
/// and removes all but the newest `KEPT_PROGRAMS` such copies.
fn keep_program(built: Built, stage: &Path, source: &str) -> Result<Built, TrainerError> {
    let dir = stage.join("programs");
    std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let kept = dir.join(&harness::meta::sha256_hex(source.as_bytes())[..16]);
    // A program of the same source may be running from `kept`.
    copy_into_place(&built.binary, &kept).map_err(io(format!(
        "cannot keep the built program in {}",
        dir.display()
    )))?;
    let mut programs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(io(format!("cannot read {}", dir.display())))?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(_, p)| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    programs.sort();
    for (_, old) in programs.iter().rev().skip(KEPT_PROGRAMS) {
        let _ = std::fs::remove_file(old);
    }
    Ok(Built {
        binary: kept,
        seconds: built.seconds,
    })
}

/// Runs cargo on a staged crate, confined: it reads the toolchain, the registry's sources and the
/// harness, writes only the target folder, and has no network. The static gate is the first
/// line of defence; this is the one that holds when the gate is fooled.
fn cargo_build(
    manifest: &Path,
    target: &Path,
    label: &Path,
    confinement: Confinement,
) -> Result<Built, TrainerError> {
    let toolchain = Toolchain::find()?;
    let workspace = Path::new(WORKSPACE);
    // The harness and the fused operations it re-exports, and the manifests above them that they
    // inherit their package settings from.
    let harness = [
        workspace.join("train/harness"),
        workspace.join("train/ops"),
        workspace.join("train/Cargo.toml"),
        workspace.join("Cargo.toml"),
    ];
    let patches = workspace_patches();
    let mut read: Vec<&Path> = harness.iter().map(PathBuf::as_path).collect();
    read.extend(patches.iter().map(|(_, path)| path.as_path()));
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
        cpus: &[],
    };
    let mut cmd = crate::confine::wrap(&toolchain.cargo, &allowed, confinement).map_err(io(
        "cannot find the autoresearch binary to confine the build",
    ))?;
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
    let output = cmd.output().map_err(|source| TrainerError::Cargo {
        cargo: toolchain.cargo.clone(),
        source,
    })?;
    let seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failure(&stderr, manifest, target, label));
    }
    let binary = executable(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        TrainerError::Toolchain {
            detail: "the build succeeded but cargo reported no executable".into(),
        }
    })?;
    Ok(Built { binary, seconds })
}

/// What a failed build's log means. Only the compiler's errors in the staged crate (cargo's
/// `could not compile` names it) are the training file's; a full disk, a dependency or a source
/// that cargo cannot get are the machine's.
fn failure(stderr: &str, manifest: &Path, target: &Path, label: &Path) -> TrainerError {
    const DISK_FULL: [&str; 3] = [
        "No space left on device",
        "Disk quota exceeded",
        "Read-only file system",
    ];
    if let Some(line) = stderr
        .lines()
        .find(|l| DISK_FULL.iter().any(|m| l.contains(m)))
    {
        return TrainerError::DiskFull {
            target: target.to_path_buf(),
            detail: line.trim().to_string(),
        };
    }
    let staged = package_name(manifest);
    let the_file_failed = stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix("error: could not compile `")?
                .split('`')
                .next()
        })
        .any(|name| Some(name) == staged.as_deref());
    if the_file_failed {
        TrainerError::Compile {
            file: label.to_path_buf(),
            errors: compiler_errors(stderr),
        }
    } else {
        TrainerError::Toolchain {
            detail: stderr.trim().to_string(),
        }
    }
}

/// The `name` of the package in `manifest`.
fn package_name(manifest: &Path) -> Option<String> {
    let text = std::fs::read_to_string(manifest).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|rest| rest.trim_end_matches('"').to_string())
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
    fn find() -> Result<Self, TrainerError> {
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
            .filter(|p| p.is_file())
            .or_else(|| on_path("cargo"))
            .ok_or(TrainerError::NoCargo)?;
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
        Ok(Toolchain {
            cargo,
            cargo_home,
            rustup_home,
            read: existing(read),
            write: existing(write),
        })
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn manifest_text(slot: &str) -> String {
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

# The workspace's patched crates (vendor/): the same candle as the appliance's own build.
[patch.crates-io]
{patches}"#,
        harness = Path::new(WORKSPACE).join("train/harness").display(),
        patches = workspace_patches()
            .iter()
            .map(|(name, path)| format!("{name} = {{ path = \"{}\" }}\n", path.display()))
            .collect::<String>(),
    )
}

/// The workspace's `[patch.crates-io]` crates, by name, at absolute paths. The staged crate is a
/// workspace of its own, so it names them again, or it would build against the published crates
/// and miss `Cargo.lock`'s entries for them.
fn workspace_patches() -> Vec<(String, PathBuf)> {
    let manifest: toml::Table = toml::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/Cargo.toml"
    )))
    .expect("the workspace's Cargo.toml is valid TOML: cargo read it to build this");
    let crates = manifest
        .get("patch")
        .and_then(|p| p.get("crates-io"))
        .and_then(toml::Value::as_table);
    crates
        .into_iter()
        .flatten()
        .filter_map(|(name, spec)| {
            let path = spec.get("path")?.as_str()?;
            Some((name.clone(), Path::new(WORKSPACE).join(path)))
        })
        .collect()
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

    #[test]
    fn the_staged_crate_builds_against_the_workspaces_patched_candle() {
        let vendored = Path::new(WORKSPACE).join("vendor/candle-core");
        assert_eq!(
            workspace_patches(),
            [("candle-core".to_string(), vendored.clone())]
        );
        assert!(vendored.join("Cargo.toml").is_file());
        let manifest: toml::Table = toml::from_str(&manifest_text("slot")).unwrap();
        assert_eq!(
            manifest["patch"]["crates-io"]["candle-core"]["path"].as_str(),
            vendored.to_str()
        );
    }

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
        let err = cargo_build(
            &dir.path().join("Cargo.toml"),
            target,
            Path::new("sneaky"),
            Confinement::Required,
        )
        .err()
        .expect("the build must fail");
        assert!(err.is_agents_fault(), "{err}");
        let text = err.to_string();
        assert!(text.contains("couldn't read"), "{text}");
        assert!(text.contains("Permission denied"), "{text}");
        // The same crate reading a file it may read builds: the failure above is the confinement.
        std::fs::write(
            dir.path().join("src/main.rs"),
            main.replace(&format!("{:?}", secret.path()), "\"main.rs\""),
        )
        .unwrap();
        cargo_build(
            &dir.path().join("Cargo.toml"),
            target,
            Path::new("honest"),
            Confinement::Required,
        )
        .expect("an honest crate builds confined");
    }

    /// Only the compiler's errors about the training file are the agent's to fix; a full disk or
    /// a dependency that fails is the machine's.
    #[test]
    fn a_failed_build_is_blamed_on_the_file_only_when_the_file_is_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, manifest_text("slot")).unwrap();
        let target = Path::new("/big/target");
        let label = Path::new("train.rs");
        let ours = "error[E0425]: cannot find value `b` in this scope\n --> train.rs:2:5\n\nerror: could not compile `autoresearch-trainer-slot` (bin \"trainer-slot\") due to 1 previous error\n";
        assert!(matches!(
            failure(ours, &manifest, target, label),
            TrainerError::Compile { .. }
        ));
        let full = "   Compiling candle-core v0.11.1\nerror: failed to write /big/target/release/deps/libx.rlib: No space left on device (os error 28)\n\nerror: could not compile `candle-core` (lib)\n";
        let err = failure(full, &manifest, target, label);
        assert!(!err.is_agents_fault());
        let message = err.to_string();
        assert!(
            message.starts_with("the disk holding the build folder /big/target is full")
                && message.contains("No space left on device (os error 28)")
                && message.contains("free space there"),
            "{message}"
        );
        let dependency = "error[E0463]: can't find crate for `core`\n\nerror: could not compile `candle-core` (lib) due to 1 previous error\n";
        let err = failure(dependency, &manifest, target, label);
        assert!(matches!(err, TrainerError::Toolchain { .. }), "{err}");
        assert!(err.to_string().contains("autoresearch doctor"), "{err}");
        // A source the confined build may not read (seen when a new harness dependency was not
        // in the build's read list): cargo fails before rustc runs.
        let unreadable = "error: failed to get `autoresearch-ops` as a dependency of package `autoresearch-harness`\n\nCaused by:\n  failed to read `/work/main/train/ops/Cargo.toml`\n\nCaused by:\n  Permission denied (os error 13)\n";
        let err = failure(unreadable, &manifest, target, label);
        assert!(!err.is_agents_fault(), "{err}");
        assert!(err.to_string().contains("Permission denied"), "{err}");
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
