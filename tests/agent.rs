//! The agent through the real binary with the default small model (Gemma 3 270M, fetched by
//! scripts/fetch-default-model.sh): llama.cpp in-process, grammar-constrained proposals, real
//! builds of the proposed training files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{autoresearch, run, scratch};

fn default_model() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "run scripts/fetch-default-model.sh first ({} is missing)",
        path.display()
    );
    path
}

#[test]
fn propose_with_the_default_model_yields_edits_that_apply_and_compile() {
    default_model();
    let guard = scratch();
    let saved = guard.path();
    let (ok, stdout, stderr) = run(autoresearch(&[
        "propose",
        "--count",
        "5",
        "--ctx",
        "2048",
        "--max-tokens",
        "256",
        "--save",
    ])
    .arg(saved));
    assert!(ok, "{stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("valid edits: "))
        .expect(&stdout);
    let valid: usize = summary["valid edits: ".len()..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    println!("{summary}");
    assert!(valid >= 1, "no valid edit in 5 proposals:\n{stdout}");
    assert!(summary.contains("/5 "), "{summary}");
    // Each valid proposal was saved, differs from the baseline and passes the gate.
    let baseline =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("train/src/train.rs"))
            .unwrap();
    let files: Vec<_> = std::fs::read_dir(saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), valid);
    for f in files {
        assert_ne!(std::fs::read_to_string(f).unwrap(), baseline);
    }
}

/// One SET proposal in a 1024-token context: the cheapest real call to the model.
fn tiny_set_proposal() -> Command {
    autoresearch(&[
        "propose",
        "--count",
        "1",
        "--action",
        "set",
        "--ctx",
        "1024",
        "--max-tokens",
        "96",
    ])
}

#[test]
fn a_tiny_context_still_gets_a_prompt() {
    default_model();
    let (ok, stdout, stderr) = run(&mut tiny_set_proposal());
    assert!(ok, "{stdout}\n{stderr}");
    let level: usize = stderr
        .lines()
        .find_map(|l| l.split("(level ").nth(1))
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .expect(&stderr);
    assert!(
        level >= 1,
        "a 1024-token context cannot hold the whole file:\n{stderr}"
    );
    assert!(stdout.contains("valid edits: "), "{stdout}");
}

fn propose_with(model: &Path) -> String {
    let (ok, stdout, stderr) =
        run(autoresearch(&["propose", "--count", "1", "--model"]).arg(model));
    assert!(!ok, "loading {} should fail:\n{stdout}", model.display());
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_model_files_are_clear_errors() {
    let guard = scratch();
    let dir = guard.path();
    let stderr = propose_with(&dir.join("nothing.gguf"));
    assert!(
        stderr.contains("does not exist") && stderr.contains("fetch-default-model.sh"),
        "{stderr}"
    );

    let text = dir.join("notes.gguf");
    std::fs::write(&text, "these are my notes, not a model\n").unwrap();
    let stderr = propose_with(&text);
    assert!(
        stderr.contains("is not a GGUF model file (it looks like text)"),
        "{stderr}"
    );

    let model = std::fs::read(default_model()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &model[..model.len() / 2]).unwrap();
    let stderr = propose_with(&truncated);
    assert!(
        stderr.contains("is truncated") && stderr.contains("download it again"),
        "{stderr}"
    );

    let header_only = dir.join("header.gguf");
    std::fs::write(&header_only, &model[..4096]).unwrap();
    let stderr = propose_with(&header_only);
    assert!(
        stderr.contains("is truncated (it ends inside its metadata)"),
        "{stderr}"
    );
}

#[test]
fn hub_models_come_from_the_hugging_face_cache_when_offline() {
    // The standard cache layout, as huggingface_hub writes it.
    let guard = scratch();
    let cache = guard.path();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = cache.join("models--someone--tiny-GGUF");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(default_model(), snapshot.join("model.gguf")).unwrap();

    let (ok, stdout, stderr) = run(tiny_set_proposal()
        .args(["--model", "hf:someone/tiny-GGUF/model.gguf"])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("valid edits: "), "{stdout}");

    let (ok, _, stderr) =
        run(
            autoresearch(&["propose", "--model", "hf:someone/tiny-GGUF/other.gguf"])
                .env("HF_HUB_OFFLINE", "1")
                .env("HF_HUB_CACHE", cache),
        );
    assert!(!ok);
    assert!(
        stderr.contains("cannot get hf:someone/tiny-GGUF/other.gguf")
            && stderr.contains("HF_HUB_OFFLINE is set"),
        "{stderr}"
    );
}

#[test]
fn a_swap_cycle_gives_the_memory_back() {
    let (ok, stdout, stderr) = run(&mut autoresearch(&[
        "bench", "swap", "--cycles", "1", "--ctx", "2048",
    ]));
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cycle 1: evict"))
        .unwrap_or_else(|| panic!("{stdout}"));
    // "(N MiB above before loading)": what the unload left behind, at most a few MiB of caches.
    let above: f64 = line
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(above < 64.0, "{line}");
}
