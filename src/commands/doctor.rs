//! `doctor`: what this machine and this checkout have, and what is missing, in one screen.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use harness::meta::DataMeta;

use crate::agent::gguf;
use crate::cli::DoctorArgs;

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

    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found");
    }
    Ok(())
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
