//! `scripts/gpu-check.sh`'s handling of kernel-check, on a machine without a GPU. kernel-check is
//! a stand-in here (a shell script: the real one needs a device to fail), which fails or dies in
//! the ways a first run of never-run kernels might; what is tested is the script's logic around
//! it: how often it runs kernel-check, with which settings, and which settings it leaves for the
//! rest of its call. The real kernel-check's lines (`RUN what | avoid: ...`, `kernel-check
//! fallback: ...`) are those its own code prints (`train/ops/examples/kernel-check.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a call of gpu-check.sh with `PARTS=kernels` left: the summary's steps, and every
/// kernel-check run's output in order.
struct Call {
    steps: String,
    runs: Vec<String>,
}

/// Packs `kernel_check` (a bash script body) as the archive's kernel-check and runs gpu-check.sh
/// on it with `env` added.
fn gpu_check(name: &str, kernel_check: &str, env: &[(&str, &str)]) -> Call {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gpu-check-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("gpu-check");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("kernel-check");
    std::fs::write(&script, format!("#!/usr/bin/env bash\n{kernel_check}")).unwrap();
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    assert!(chmod.success());
    let archive = dir.join("gpu-check.tar.xz");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cJf")
        .arg(&archive)
        .arg("gpu-check")
        .status()
        .expect("tar with xz (scripts/setup.sh installs xz-utils)");
    assert!(tar.success(), "packing the stand-in archive failed");
    let out = dir.join("out");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = Command::new("bash")
        .arg(repo.join("scripts/gpu-check.sh"))
        .arg(&archive)
        .current_dir(&repo)
        .env("OUT", &out)
        .env("PARTS", "kernels")
        .env_remove("AUTORESEARCH_COMPOSITE")
        .env_remove("AUTORESEARCH_ATTENTION")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "gpu-check.sh failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    // A step's seconds vary from machine to machine: "NAME: exit RC in Ns" keeps "NAME: exit RC".
    let steps = summary
        .split("## steps\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .map(|line| match line.find(": exit ") {
            Some(_) => line.rsplit_once(" in ").map_or(line, |(head, _)| head),
            None => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let all = std::fs::read_to_string(out.join("all-steps.txt")).unwrap();
    let runs = all
        .split("===== ")
        .filter(|part| part.starts_with("kernel-check"))
        .map(String::from)
        .collect();
    Call { steps, runs }
}

/// The settings a stand-in run was given, as it prints them first.
fn given(run: &str) -> &str {
    run.lines().nth(1).unwrap_or("")
}

const ECHO_SETTINGS: &str =
    r#"echo "settings: ${AUTORESEARCH_COMPOSITE:-none} ${AUTORESEARCH_ATTENTION:-none}""#;

#[test]
fn failed_kernels_are_avoided_by_the_rest_of_the_call() {
    let call = gpu_check(
        "fails",
        &format!(
            "{ECHO_SETTINGS}
echo 'RUN rms_norm [37, 130] F32 | avoid: AUTORESEARCH_COMPOSITE=rms_norm'
echo 'FAIL rms_norm [37, 130] F32: value'
echo 'kernel-check fallback: AUTORESEARCH_COMPOSITE=rms_norm,value_gate'
echo 'kernel-check: 101 checks, 3 failed'
exit 1"
        ),
        &[],
    );
    assert_eq!(call.runs.len(), 1);
    assert_eq!(given(&call.runs[0]), "settings: none none");
    assert!(
        call.steps.ends_with(
            "kernel-check: exit 1\nkernels failed kernel-check: the rest of this call runs \
             the composite code for rms_norm,value_gate\n"
        ),
        "{}",
        call.steps
    );
}

#[test]
fn a_death_is_avoided_and_kernel_check_runs_again() {
    // Dies in rms_norm until it is avoided, then in the flash kernels until they are, then ends
    // with relu_sq failing.
    let call = gpu_check(
        "dies",
        &format!(
            r#"{ECHO_SETTINGS}
echo 'RUN relu_sq [37, 129] F32 | avoid: AUTORESEARCH_COMPOSITE=relu_sq'
echo 'FAIL relu_sq [37, 129] F32: value'
if [[ ${{AUTORESEARCH_COMPOSITE:-}} != *rms_norm* ]]; then
    echo 'RUN rms_norm [37, 130] F32 | avoid: AUTORESEARCH_COMPOSITE=rms_norm'
    echo 'Error: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS)'; exit 1
fi
if [[ ${{AUTORESEARCH_ATTENTION:-}} != interim ]]; then
    echo 'RUN attention [2, 150, 2, 128] window 37 BF16 | avoid: AUTORESEARCH_ATTENTION=interim'
    kill -SEGV $$
fi
echo 'RUN model 2x64, width 64, depth 2, BF16 | avoid: '
echo 'kernel-check fallback: AUTORESEARCH_COMPOSITE=relu_sq'
echo 'kernel-check: 101 checks, 1 failed'
exit 1"#
        ),
        &[],
    );
    let given: Vec<&str> = call.runs.iter().map(|r| given(r)).collect();
    assert_eq!(
        given,
        [
            "settings: none none",
            "settings: rms_norm none",
            "settings: rms_norm interim"
        ]
    );
    let lines: Vec<&str> = call.steps.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "kernel-check: exit 1",
            "kernel-check died in: RUN rms_norm [37, 130] F32 | avoid: AUTORESEARCH_COMPOSITE=rms_norm",
            "kernel-check-2: exit 139",
            "kernel-check died in: RUN attention [2, 150, 2, 128] window 37 BF16 | avoid: \
             AUTORESEARCH_ATTENTION=interim",
            "kernel-check-3: exit 1",
            "kernels failed kernel-check: the rest of this call runs the composite code for \
             rms_norm,relu_sq",
            "the flash kernels failed kernel-check: the rest of this call runs the interim attention",
        ]
    );
}

#[test]
fn a_death_outside_the_ops_kernels_ends_the_reruns() {
    let call = gpu_check(
        "dies-in-model",
        &format!(
            "{ECHO_SETTINGS}
echo 'RUN model 2x64, width 64, depth 2, F32 | avoid: '
exit 1"
        ),
        &[],
    );
    assert_eq!(call.runs.len(), 1);
    assert!(call
        .steps
        .ends_with("kernel-check died in: RUN model 2x64, width 64, depth 2, F32 | avoid: \n"));
}

#[test]
fn the_callers_settings_are_kept_from_kernel_check_and_win_afterwards() {
    let call = gpu_check(
        "caller",
        &format!(
            "{ECHO_SETTINGS}
echo 'kernel-check fallback: AUTORESEARCH_COMPOSITE=rms_norm AUTORESEARCH_ATTENTION=interim'
echo 'kernel-check: 101 checks, 2 failed'
exit 1"
        ),
        &[
            ("AUTORESEARCH_COMPOSITE", "embedding"),
            ("AUTORESEARCH_ATTENTION", "flash"),
        ],
    );
    // kernel-check checks every kernel, whatever the caller chose for training.
    assert_eq!(given(&call.runs[0]), "settings: none none");
    assert!(
        !call.steps.contains("the rest of this call"),
        "{}",
        call.steps
    );
}
