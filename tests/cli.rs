//! End-to-end tests of `prepare` and `train` through the real binary: the embedded corpus, a real
//! tokenizer, real candle training on the CPU, real builds of training files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{autoresearch, baseline, run, scratch};
use tempfile::TempDir;

use harness::meta::{read_split, read_u16s, DataMeta};
use harness::summary::Summary;

fn prepared() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::prepare_once("prepared-cpu", &[]))
}

/// A variant of the baseline training file in a scratch folder (kept alive by the guard).
fn variant(name: &str, from: &str, to: &str) -> (TempDir, PathBuf) {
    let source = baseline();
    assert!(
        source.contains(from),
        "the baseline no longer contains {from:?}"
    );
    let dir = scratch();
    let path = dir.path().join(name);
    std::fs::write(&path, source.replacen(from, to, 1)).unwrap();
    (dir, path)
}

#[test]
fn prepare_is_idempotent() {
    let dir = prepared();
    let (ok, stdout, _) =
        run(autoresearch(&["prepare", "--profile", "cpu", "--data-dir"]).arg(dir));
    assert!(ok);
    assert!(stdout.starts_with("already prepared:"), "{stdout}");
    // Another profile on the same directory is refused, naming the fix.
    let (ok, _, stderr) =
        run(autoresearch(&["prepare", "--profile", "gpu", "--data-dir"]).arg(dir));
    assert!(!ok);
    assert!(stderr.contains("--force"), "{stderr}");
}

/// Uniform prediction costs log2(V) bits per scored token: its bpb on the exact eval tokens.
fn uniform_bpb(dir: &Path) -> f64 {
    let meta = DataMeta::load(dir).unwrap();
    let token_bytes = read_u16s(dir, &meta.token_bytes).unwrap();
    let val = read_split(dir, &meta.val_shards).unwrap();
    let seq = meta.profile.seq_len;
    let rows = harness::loader::validation_rows(&val, seq, meta.eval_tokens / seq);
    let (mut tokens, mut bytes) = (0u64, 0u64);
    for row in &rows {
        for &t in &row[1..] {
            let b = token_bytes[t as usize] as u64;
            if b > 0 {
                tokens += 1;
                bytes += b;
            }
        }
    }
    (meta.profile.vocab_size as f64).log2() * tokens as f64 / bytes as f64
}

#[test]
fn train_end_to_end_on_the_default_corpus() {
    let dir = prepared();
    let scratch_dir = scratch();
    let run_dir = scratch_dir.path().join("run");
    let (ok, stdout, stderr) = run(autoresearch(&["train", "--budget", "10", "--data-dir"])
        .arg(dir)
        .arg("--run-dir")
        .arg(&run_dir)
        .env(harness::ENV_CHECK_GRADIENTS, "1"));
    assert!(ok, "train failed:\n{stdout}\n{stderr}");

    // Every variable of the baseline trains.
    assert!(stdout.contains("gradient check: all"), "{stdout}");

    // The printed block has every key, and the JSON copy agrees with it.
    let printed = Summary::parse_block(&stdout);
    let keys: Vec<&str> = printed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "val_bpb",
            "training_seconds",
            "total_seconds",
            "peak_vram_mb",
            "mfu_percent",
            "total_tokens_M",
            "num_steps",
            "num_params_M",
            "depth"
        ]
    );
    let json: Summary =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("result.json")).unwrap())
            .unwrap();
    assert_eq!(Summary::parse_block(&json.block()), printed);

    // It learned something: finite and below uniform prediction.
    let uniform = uniform_bpb(dir);
    assert!(
        json.val_bpb.is_finite() && json.val_bpb < uniform,
        "val_bpb {} vs uniform {uniform}",
        json.val_bpb
    );
    assert!(json.training_seconds >= 10.0 && json.num_steps > 2);

    // The program it built runs again without a build, as on a machine without Rust.
    let built = stderr
        .lines()
        .find_map(|l| l.strip_prefix("built ")?.split(" in ").next())
        .expect(&stderr);
    let again = scratch();
    let (ok, stdout2, stderr2) = run(autoresearch(&["train", "--budget", "3", "--data-dir"])
        .arg(dir)
        .arg("--run-dir")
        .arg(again.path())
        .args(["--trainer-bin", built]));
    assert!(ok, "{stdout2}\n{stderr2}");
    assert!(
        stderr2.contains("running the prebuilt") && !stderr2.contains("building"),
        "{stderr2}"
    );
    assert!(again.path().join("result.json").exists());

    // The output went to the log as well as the screen, and the weights were saved.
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains("val_bpb:"));
    assert!(run_dir.join("model.safetensors").exists());
}

#[test]
fn a_training_file_that_does_not_compile_is_reported_with_the_compiler_message() {
    let (_guard, file) = variant(
        "broken.rs",
        "let progress = h.progress();",
        "let progress = h.progress() + undefined_value;",
    );
    let (ok, _, stderr) = run(autoresearch(&["train", "--budget", "2", "--data-dir"])
        .arg(prepared())
        .arg("--train-file")
        .arg(&file));
    assert!(!ok);
    assert!(stderr.contains("does not compile"), "{stderr}");
    assert!(
        stderr.contains("error[E0425]: cannot find value `undefined_value`"),
        "{stderr}"
    );
}

#[test]
fn a_training_file_that_produces_nan_fails_fast() {
    let (_guard, file) = variant(
        "nan.rs",
        "model.loss(&x, &y)? / micro_steps as f64",
        "model.loss(&x, &y)? * f64::NAN",
    );
    let scratch_dir = scratch();
    let run_dir = scratch_dir.path().join("run");
    let (ok, stdout, stderr) = run(autoresearch(&["train", "--budget", "30", "--data-dir"])
        .arg(prepared())
        .arg("--run-dir")
        .arg(&run_dir)
        .arg("--train-file")
        .arg(&file));
    assert!(!ok);
    assert!(stdout.lines().any(|l| l == "FAIL"), "{stdout}");
    assert!(stderr.contains("FAIL: the loss became NaN"), "{stderr}");
    assert!(!run_dir.join("result.json").exists());
}

#[test]
fn train_without_prepared_data_says_how_to_prepare() {
    let (ok, _, stderr) =
        run(autoresearch(&["train", "--data-dir"]).arg(scratch().path().join("nothing")));
    assert!(!ok);
    assert!(stderr.contains("run `autoresearch prepare`"), "{stderr}");
}

#[test]
fn corrupt_shards_are_caught_before_training() {
    let src = prepared();
    let scratch_dir = scratch();
    let dir = scratch_dir.path().join("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let shard = dir.join("val_000.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&shard, bytes).unwrap();
    let (ok, stdout, stderr) =
        run(autoresearch(&["train", "--budget", "2", "--data-dir"]).arg(&dir));
    assert!(!ok);
    assert!(
        format!("{stdout}{stderr}").contains("val_000.bin is corrupt"),
        "{stdout}\n{stderr}"
    );

    std::fs::write(
        dir.join("meta.json"),
        "{\"format_version\": 1, \"profile\":",
    )
    .unwrap();
    let (ok, _, stderr) = run(autoresearch(&["train", "--budget", "2", "--data-dir"]).arg(&dir));
    assert!(!ok);
    assert!(
        stderr.contains("meta.json") && stderr.contains("prepare --force"),
        "{stderr}"
    );
}

#[test]
fn missing_empty_and_binary_corpora_are_clear_errors() {
    let guard = scratch();
    let dir = guard.path();
    let data = dir.join("data");
    let missing = dir.join("no-such-corpus.txt");
    let (ok, _, stderr) = run(autoresearch(&["prepare", "--corpus"])
        .arg(&missing)
        .arg("--data-dir")
        .arg(&data));
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let (ok, _, stderr) = run(autoresearch(&["prepare", "--corpus"])
        .arg(&empty)
        .arg("--data-dir")
        .arg(&data));
    assert!(!ok);
    assert!(stderr.contains("holds no text"), "{stderr}");

    let binary = dir.join("blob.bin");
    std::fs::write(&binary, [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    let (ok, _, stderr) = run(autoresearch(&["prepare", "--corpus"])
        .arg(&binary)
        .arg("--data-dir")
        .arg(&data));
    assert!(!ok);
    assert!(stderr.contains("is not UTF-8 text"), "{stderr}");
    assert!(!data.join("meta.json").exists());
}

/// Documents from the embedded corpus, written as the user formats `prepare` reads.
#[test]
fn user_corpora_in_text_jsonl_and_parquet() {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    let jsonl = zstd::decode_all(
        std::fs::File::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/default.jsonl.zst"))
            .unwrap(),
    )
    .unwrap();
    let texts: Vec<String> = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .take(60)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let guard = scratch();
    let dir = guard.path();
    let folder = dir.join("texts");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, t) in texts[..20].iter().enumerate() {
        std::fs::write(folder.join(format!("{i:02}.txt")), t).unwrap();
    }
    let jsonl_path = dir.join("docs.jsonl");
    let lines: Vec<String> = texts[20..40]
        .iter()
        .map(|t| serde_json::json!({ "text": t }).to_string())
        .collect();
    std::fs::write(&jsonl_path, lines.join("\n")).unwrap();

    let parquet_path = dir.join("shard_00000.parquet");
    let schema =
        Arc::new(parse_message_type("message doc { REQUIRED BYTE_ARRAY text (UTF8); }").unwrap());
    let mut writer = SerializedFileWriter::new(
        std::fs::File::create(&parquet_path).unwrap(),
        schema,
        Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = group.next_column().unwrap().unwrap();
    let values: Vec<ByteArray> = texts[40..]
        .iter()
        .map(|t| ByteArray::from(t.as_str()))
        .collect();
    column
        .typed::<ByteArrayType>()
        .write_batch(&values, None, None)
        .unwrap();
    column.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();

    let data = dir.join("data");
    let (ok, stdout, stderr) = run(autoresearch(&["prepare", "--profile", "cpu", "--data-dir"])
        .arg(&data)
        .args(["--corpus".as_ref(), folder.as_os_str()])
        .args(["--corpus".as_ref(), jsonl_path.as_os_str()])
        .args(["--corpus".as_ref(), parquet_path.as_os_str()]));
    assert!(ok, "{stdout}\n{stderr}");
    let meta = DataMeta::load(&data).unwrap();
    assert_eq!(meta.corpus.documents, 60);
    assert_eq!(meta.corpus.sources.len(), 3);
    assert!(meta.train_tokens > 0 && meta.eval_tokens > 0);

    // A JSONL line without text is named.
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"fine\"}\n{\"body\": \"no text field\"}\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(autoresearch(&["prepare", "--corpus"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.join("d2")));
    assert!(!ok);
    assert!(
        stderr.contains("line 2: no string field \"text\""),
        "{stderr}"
    );
}

#[test]
fn a_training_file_that_reads_files_at_compile_time_is_refused_before_building() {
    let (_guard, file) = variant(
        "include.rs",
        "fn main() {",
        "const SECRET: &str = include_str!(\"/etc/passwd\");\n\nfn main() {",
    );
    let (ok, _, stderr) = run(autoresearch(&["train", "--budget", "2", "--data-dir"])
        .arg(prepared())
        .arg("--train-file")
        .arg(&file));
    assert!(!ok);
    assert!(stderr.contains("was refused before compiling"), "{stderr}");
    assert!(
        stderr.contains("`include_str!` (compile-time file access)"),
        "{stderr}"
    );
}

#[test]
fn doctor_reports_what_is_there_and_what_is_missing() {
    let (ok, stdout, _) = run(autoresearch(&["doctor", "--data-dir"]).arg(prepared()));
    assert!(
        stdout.contains("ok  data") && stdout.contains("profile cpu"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok  cargo") && stdout.contains("disk (build)"),
        "{stdout}"
    );
    let model_ok = stdout.contains("ok  model");
    assert_eq!(ok, model_ok, "{stdout}");

    let (ok, stdout, stderr) = run(autoresearch(&["doctor", "--data-dir"])
        .arg(scratch().path().join("none"))
        .args(["--model", "/nonexistent/model.gguf"]));
    assert!(!ok);
    assert!(
        stdout.contains("--  model") && stdout.contains("does not exist"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--  data") && stdout.contains("autoresearch prepare"),
        "{stdout}"
    );
    assert!(stderr.contains("2 problem(s) found"), "{stderr}");
}

/// The confinement the training program runs in, tried with ordinary programs.
#[test]
fn confined_programs_cannot_read_write_or_connect_outside_their_folder() {
    let guard = scratch();
    let run_dir = guard.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let secret = guard.path().join("secret.txt");
    std::fs::write(&secret, "not for the agent").unwrap();
    let confined = |script: &str| {
        let mut cmd = autoresearch(&["confine", "--write"]);
        cmd.arg(&run_dir)
            .args(["--", "/bin/bash", "-c", script])
            .env("SECRET_TOKEN", "hunter2");
        run(&mut cmd)
    };

    let (ok, stdout, stderr) = confined("echo ok > \"$TMPDIR/inside\" && cat \"$TMPDIR/inside\"");
    assert!(ok, "{stdout}{stderr}");
    assert!(run_dir.join("inside").exists());

    // Its own /proc entries are its to write: the CUDA driver names its threads there.
    let (ok, stdout, stderr) = confined(
        "echo trainer > /proc/self/task/$$/comm && read -r name < /proc/$$/comm && echo $name",
    );
    assert!(ok && stdout.trim() == "trainer", "{stdout}{stderr}");

    let (ok, _, stderr) = confined(&format!("cat {}", secret.display()));
    assert!(!ok && stderr.contains("Permission denied"), "{stderr}");
    let (ok, _, stderr) = confined(&format!("echo x > {}/outside", guard.path().display()));
    assert!(!ok && stderr.contains("Permission denied"), "{stderr}");
    assert!(!guard.path().join("outside").exists());

    let (_, stdout, _) = confined("env");
    assert!(
        !stdout.contains("hunter2"),
        "the environment is scrubbed:\n{stdout}"
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let (ok, stdout, _) = confined(&connect);
    assert!(!ok && !stdout.contains("connected"));
    // The same connection unconfined goes through: the listener was there to be reached.
    let (ok, stdout, _) = run(Command::new("/bin/bash").args(["-c", &connect]));
    assert!(ok && stdout.contains("connected"));
}

#[test]
fn a_hanging_training_program_is_killed_with_its_children_at_the_timeout() {
    let guard = scratch();
    let script = guard.path().join("hang.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\nsleep 1000 &\necho $! > \"$AUTORESEARCH_RUN_DIR/child.pid\"\nsleep 1000\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run_dir = guard.path().join("run");
    let start = std::time::Instant::now();
    let (ok, _, stderr) =
        run(
            autoresearch(&["train", "--budget", "1", "--timeout", "3", "--data-dir"])
                .arg(prepared())
                .arg("--trainer-bin")
                .arg(&script)
                .arg("--run-dir")
                .arg(&run_dir),
        );
    assert!(
        !ok && stderr.contains("did not finish within 3s"),
        "{stderr}"
    );
    assert!(start.elapsed().as_secs() < 30);
    let pid = std::fs::read_to_string(run_dir.join("child.pid")).unwrap();
    // SIGKILL is delivered asynchronously: the child has exited within a few seconds.
    assert!(
        common::wait_exit(
            pid.trim().parse().unwrap(),
            std::time::Duration::from_secs(5)
        ),
        "the training program's child {pid} survived the timeout"
    );
}

/// The benchmark's trainer-only path, as CI can run it (no torch): tokens/s and the step split
/// of the baseline, which times its parts.
#[test]
fn bench_trainer_reports_the_speed_and_the_step_split() {
    let (ok, stdout, stderr) =
        run(autoresearch(&["bench", "trainer", "--budget", "2", "--data-dir"]).arg(prepared()));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "trainer: depth 4, width 256, heads of 128, 16 rows of 256 tokens per forward: "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("step split (timed steps): forward "),
        "{stdout}"
    );
    // Without --torch there is no PyTorch line; a script that is not there is named.
    assert!(!stdout.contains("PyTorch"), "{stdout}");
    let (ok, _, stderr) = run(autoresearch(&[
        "bench",
        "trainer",
        "--torch",
        "python3",
        "--torch-script",
        "/no/such.py",
        "--data-dir",
    ])
    .arg(prepared()));
    assert!(!ok);
    assert!(
        stderr.contains("/no/such.py does not exist: pass its path with --torch-script"),
        "{stderr}"
    );
}
