//! `doctor`: what this machine and this checkout have, and what is missing, in one screen.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use harness::meta::DataMeta;

use crate::agent::gguf;
use crate::cli::executor_args::Config;
use crate::cli::DoctorArgs;
use crate::executor::Executor;

pub fn run(args: &DoctorArgs) -> Result<()> {
    let mut problems = 0;
    let mut report = |ok: bool, what: &str, detail: String| {
        if !ok {
            problems += 1;
        }
        println!("{} {what:<12} {detail}", if ok { "ok " } else { "-- " });
    };

    let features = if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "cpu only (build with --features cuda for a GPU)"
    };
    report(
        true,
        "build",
        format!("autoresearch {} ({features})", env!("CARGO_PKG_VERSION")),
    );

    let devices = llama_cpp_2::list_llama_ggml_backend_devices();
    let gpus: Vec<String> = devices
        .iter()
        .filter(|d| !d.backend.eq_ignore_ascii_case("cpu"))
        .map(|d| {
            format!(
                "{} ({}): {:.1} GiB free of {:.1} GiB",
                d.description,
                d.backend,
                d.memory_free as f64 / (1u64 << 30) as f64,
                d.memory_total as f64 / (1u64 << 30) as f64
            )
        })
        .collect();
    let threads = crate::agent::engine::threads();
    if gpus.is_empty() {
        report(
            true,
            "gpu",
            format!("none: agent and training run on the CPU ({threads} threads)"),
        );
    } else {
        for gpu in gpus {
            report(true, "gpu", gpu);
        }
    }

    let model = args.model.resolve()?;
    match gguf::check(&model) {
        Ok(info) => report(
            true,
            "model",
            format!(
                "{} ({}, {} tensors)",
                model.display(),
                info.architecture
                    .as_deref()
                    .unwrap_or("unknown architecture"),
                info.tensors
            ),
        ),
        Err(e) => report(false, "model", e.to_string()),
    }

    let data_dir = args.data.resolve();
    match DataMeta::load(&data_dir) {
        Ok(meta) => report(
            true,
            "data",
            format!(
                "{}: profile {}, {:.2}M training tokens, eval {} tokens",
                data_dir.display(),
                meta.profile.name,
                meta.train_tokens as f64 / 1e6,
                meta.eval_tokens
            ),
        ),
        Err(e) => report(false, "data", e.to_string()),
    }

    for tool in ["cargo", "rustc"] {
        let version = Command::new(tool).arg("--version").output();
        match version {
            Ok(out) if out.status.success() => report(
                true,
                tool,
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ),
            _ => report(
                false,
                tool,
                format!(
                    "{tool} not found: every experiment compiles its training file, install Rust"
                ),
            ),
        }
    }

    // Builds and training programs run confined: try the same confinement on /bin/true.
    match crate::confine::probe(args.confinement.confinement()) {
        Ok(()) => report(true, "confinement", "Landlock file and TCP rules, scrubbed environment, own network namespace where allowed".into()),
        Err(why) => report(false, "confinement", why),
    }

    let target = crate::trainer::build::target_dir();
    for (what, path) in [
        ("disk (data)", data_dir.as_path()),
        ("disk (build)", target.as_path()),
    ] {
        match free_bytes(path) {
            Some(free) => {
                let gib = free as f64 / (1u64 << 30) as f64;
                report(
                    gib >= 2.0,
                    what,
                    format!("{gib:.1} GiB free at {}", path.display()),
                )
            }
            None => report(false, what, format!("cannot stat {}", path.display())),
        }
    }

    for (ok, what, detail) in executor(args, &data_dir) {
        report(ok, what, detail);
    }

    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    Ok(())
}

/// The executor as the loop would take it, and for SLURM: the clients, and a job that reads the
/// prepared data and writes the shared folder from a node.
fn executor(args: &DoctorArgs, data_dir: &Path) -> Vec<(bool, &'static str, String)> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let checkout = crate::research::git::checkout_root(&cwd).unwrap_or(cwd);
    let program = args
        .program
        .clone()
        .unwrap_or_else(|| checkout.join("program.md"));
    let executor = Config::beside(&program)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let runs = checkout.join("runs").join("doctor");
            Ok(args.executor.executor(&config, &runs)?)
        });
    let (mode, options, shared) = match executor {
        Err(e) => return vec![(false, "executor", format!("{e:#}"))],
        Ok(Executor::Local) => {
            return vec![(true, "executor", "local: runs train on this machine".into())]
        }
        Ok(Executor::Slurm {
            mode,
            options,
            shared,
        }) => (mode, options, shared),
    };
    let mut lines = vec![(
        true,
        "executor",
        format!(
            "slurm, {mode} mode, partition {}, gres {}, time {}, {} CPU(s) per job{}; shared folder {}",
            options.partition.as_deref().unwrap_or("(default)"),
            options.gres.as_deref().unwrap_or("(none)"),
            options.time.as_deref().unwrap_or("(default)"),
            options.cpus,
            match options.extra.is_empty() {
                true => String::new(),
                false => format!(", sbatch {}", options.extra.join(" ")),
            },
            shared.display()
        ),
    )];
    match Command::new("sbatch").arg("--version").output() {
        Ok(out) if out.status.success() => lines.push((
            true,
            "sbatch",
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )),
        _ => {
            lines.push((false, "sbatch", "not found: install SLURM's client commands (Debian: slurm-client) or run on a login node".into()));
            return lines;
        }
    }
    lines.push(
        match crate::executor::probe::shared_path(&options, &shared, data_dir) {
            Ok(detail) => (true, "shared path", detail),
            Err(e) => (false, "shared path", format!("{e:#}")),
        },
    );
    lines
}

/// Free bytes on the file system holding `path` (or its nearest existing ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(3) writes into the struct we own; the path is a valid C string.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}
