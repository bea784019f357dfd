//! The dashboard in a real browser (Debian's headless Chromium): the served page follows a run
//! as its files change, and `report --html` opens from a file with no network. The run is a real
//! recorded night (docs/runs/cpu60-full). Screenshots at a fixed size go to
//! `<target>/tmp/dashboard/` (README: "Watching a night").

mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use autoresearch::research::history::History;
use autoresearch::research::journal::JOURNAL_FILE;
use autoresearch::research::live::{LiveFile, Phase, RunInfo};
use autoresearch::research::pending::PENDING_FILE;
use autoresearch::research::record::Record;
use browser::Browser;
use common::{autoresearch, run, scratch};

/// How long a change may take to show: the page must follow within 2 s; the rest is slack for a
/// loaded CI machine, and each wait prints what it took.
const FOLLOW: Duration = Duration::from_secs(6);
const ROWS: &str = "document.querySelectorAll('#experiments tbody tr').length";

/// The recorded night's journal lines.
fn night() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runs/cpu60-full/experiments.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn shots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard")
}

/// `serve` on a free port; kills it when dropped.
struct Server {
    child: Child,
    url: String,
    /// Held open: it says more after the address.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    fn start(runs: &Path, tag: &str) -> Server {
        let mut child = autoresearch(&["serve", "--tag", tag, "--listen", "127.0.0.1:0"])
            .arg("--runs-dir")
            .arg(runs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("dashboard: ")
            .unwrap_or_else(|| panic!("serve said {line:?}"))
            .to_string();
        Server {
            child,
            url,
            _stdout: stdout,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_follows_a_live_run_without_a_reload() {
    let lines = night();
    let (so_far, next) = (&lines[..20], &lines[20]);
    let next_record = Record::from_line(next.trim_end()).unwrap();
    let scratch = scratch();
    let dir = scratch.path().join("runs").join("night");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(JOURNAL_FILE), so_far.concat()).unwrap();
    // The experiment in flight: its pending record (as the loop saves it) and the live state.
    let mut in_flight = next_record.clone();
    in_flight.runs.clear();
    std::fs::write(
        dir.join(PENDING_FILE),
        serde_json::to_vec(&in_flight).unwrap(),
    )
    .unwrap();
    let mut live = LiveFile::new(
        &dir,
        RunInfo {
            tag: "night".into(),
            model: "gemma-3-270m-q4_k_m.gguf".into(),
            device: "host RAM".into(),
            profile: "cpu".into(),
            budget_seconds: 60.0,
            // This test process plays the loop: the page shows the run as live while it exists.
            pid: std::process::id(),
            started: "2026-12-02T03:27:04Z".into(),
        },
    );
    live.phase(Phase::Training, Some(next_record.n), Some(1));
    // Half of a real run's curve, as its step lines arrive.
    let curve = &next_record.runs[0].curve;
    let last_step = curve.len() / 2 - 1;
    let mut step = 0;
    // The last line repeats, as a slow step would be printed: a line within the write interval
    // of the one before reaches the file with the next.
    let mut feed = |live: &mut LiveFile| {
        let [progress, loss] = curve[step];
        live.step(step, progress as f64, loss as f64, 4000.0);
        step = (step + 1).min(last_step);
    };

    let server = Server::start(&scratch.path().join("runs"), "night");
    let mut browser = Browser::launch(1280, 1800, false);
    browser.open(&server.url);
    assert_eq!(
        browser.eval("location.pathname"),
        "/run/night/",
        "/ leads to the run"
    );
    browser.wait_for(&format!("{ROWS} === 20"), FOLLOW, || {});
    let records: Vec<Record> = so_far
        .iter()
        .map(|l| Record::from_line(l.trim_end()).unwrap())
        .collect();
    let done = History::new(&records).experiments_done();
    assert_eq!(
        browser.eval("document.getElementById('count').textContent"),
        done.to_string()
    );
    browser.wait_for(
        "document.getElementById('phase')?.textContent === 'training'",
        FOLLOW,
        || {},
    );
    browser.wait_for(
        &format!(
            "document.getElementById('flight-step').textContent.includes('step {last_step},')"
        ),
        FOLLOW,
        || feed(&mut live),
    );
    let idea = in_flight
        .idea
        .clone()
        .unwrap_or(in_flight.description.clone());
    assert_eq!(
        browser.eval("document.getElementById('flight-idea').textContent"),
        idea
    );
    // The progress chart: one point per experiment with a result, the keeps highlighted, and
    // whole numbers on its x axis.
    let keeps = records
        .iter()
        .filter(|r| r.outcome.name() == "keep")
        .count();
    assert_eq!(
        browser.eval("document.querySelectorAll('#progress circle[fill=\"var(--keep)\"], #progress circle[fill=\"var(--base)\"]').length"),
        keeps
    );
    let ticks = browser.eval(
        "[...document.querySelectorAll('#progress svg text')].map(t => t.textContent).filter(t => /^-?[0-9.]+$/.test(t))",
    );
    assert!(
        ticks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t.as_str().unwrap().starts_with('-')),
        "no negative tick: {ticks}"
    );
    browser.screenshot(&shots().join("live.png"));

    // Opening an experiment shows its diff, coloured, and its curve against the best's.
    browser.eval("document.querySelector('#experiments tbody tr[data-n=\"5\"]').click()");
    browser.wait_for(
        "!!document.querySelector('#detail pre.diff .add') && document.querySelector('#detail pre.diff').textContent.includes('+const ASPECT_RATIO: usize = 48;')",
        FOLLOW,
        || {},
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#detail .chart path[stroke]').length >= 2"),
        true,
        "the run's curve and the best's"
    );
    browser.eval("document.getElementById('detail').scrollIntoView()");
    browser.screenshot(&shots().join("experiment.png"));

    // A phase change, then step lines, then the record: each reaches the page without a reload.
    browser.eval("window.notReloaded = true");
    live.phase(Phase::Evaluating, Some(next_record.n), Some(1));
    let took = browser.wait_for(
        "document.getElementById('phase').textContent === 'evaluating'",
        FOLLOW,
        || {},
    );
    println!("a phase change reached the page in {took:?}");
    live.phase(Phase::Training, Some(next_record.n), Some(2));
    let mut points = curve.iter().cycle();
    let took = browser.wait_for(
        "document.getElementById('flight-step').textContent.includes('step 7')",
        FOLLOW,
        || {
            let [progress, loss] = points.next().unwrap();
            live.step(7, *progress as f64, *loss as f64, 4100.0);
        },
    );
    println!("a step line reached the page in {took:?}");
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(JOURNAL_FILE))
        .unwrap();
    std::io::Write::write_all(&mut journal, next.as_bytes()).unwrap();
    std::fs::remove_file(dir.join(PENDING_FILE)).unwrap();
    let took = browser.wait_for(&format!("{ROWS} === 21"), FOLLOW, || {});
    println!("a new record reached the page in {took:?}");
    assert_eq!(browser.eval("window.notReloaded === true"), true);

    // A journal line being written (half of it so far) does not break the page.
    std::io::Write::write_all(&mut journal, &lines[21].as_bytes()[..100]).unwrap();
    live.phase(Phase::Ended, Some(next_record.n), Some(2));
    browser.wait_for(
        "document.getElementById('status').textContent.startsWith('not running')",
        FOLLOW,
        || {},
    );
    assert_eq!(browser.eval(ROWS), 21);
    assert_eq!(
        browser.eval("document.getElementById('problem').hidden"),
        true
    );
}

#[test]
fn the_html_report_opens_from_a_file_with_no_network() {
    let lines = night();
    let scratch = scratch();
    let runs = scratch.path().join("runs");
    std::fs::create_dir_all(runs.join("night")).unwrap();
    std::fs::write(runs.join("night").join(JOURNAL_FILE), lines.concat()).unwrap();
    let html = scratch.path().join("night.html");
    let (ok, stdout, stderr) = run(autoresearch(&["report", "--tag", "night"])
        .arg("--runs-dir")
        .arg(&runs)
        .arg("--png")
        .arg(scratch.path().join("progress.png"))
        .arg("--html")
        .arg(&html));
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("page: "), "{stdout}");
    // No server is running, and the browser has no network.
    let mut browser = Browser::launch(1280, 1800, true);
    browser.open(&format!("file://{}", html.display()));
    browser.wait_for(&format!("{ROWS} === {}", lines.len()), FOLLOW, || {});
    assert_eq!(
        browser.eval("performance.getEntriesByType('resource').length"),
        0,
        "the page fetched something"
    );
    // The night's latest confirmation (e0032) confirmed its best.
    let confirmed = browser.eval("document.getElementById('confirmed').textContent");
    assert!(
        confirmed
            .as_str()
            .unwrap()
            .starts_with("yes: confirm e0026"),
        "{confirmed}"
    );
    browser.eval("document.querySelector('#experiments tbody tr[data-n=\"26\"]').click()");
    browser.wait_for(
        "document.querySelector('#detail pre.diff')?.textContent.includes('+++')",
        FOLLOW,
        || {},
    );
    // Sorting by val_bpb puts the best first.
    browser.eval("document.querySelector('#experiments th[data-key=\"val_bpb\"]').click()");
    let first = browser.eval("document.querySelector('#experiments tbody tr').dataset.n");
    let records: Vec<Record> = lines
        .iter()
        .map(|l| Record::from_line(l.trim_end()).unwrap())
        .collect();
    let best = records
        .iter()
        .filter(|r| r.val_bpb.is_some())
        .min_by(|a, b| a.val_bpb.partial_cmp(&b.val_bpb).unwrap())
        .unwrap();
    assert_eq!(first, best.n.to_string());
    browser.screenshot(&shots().join("report.png"));
}

#[test]
fn serve_refuses_a_run_that_is_not_there_and_a_port_in_use() {
    let scratch = scratch();
    let runs = scratch.path().join("runs");
    std::fs::create_dir_all(runs.join("night")).unwrap();
    let (ok, _, stderr) = run(autoresearch(&["serve", "--tag", "day"])
        .arg("--runs-dir")
        .arg(&runs));
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "no run day in {}: name one that is there with --tag, or leave it out to show the latest",
            runs.display()
        )),
        "{stderr}"
    );
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let (ok, _, stderr) = run(autoresearch(&["serve", "--listen", &taken])
        .arg("--runs-dir")
        .arg(&runs));
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "the dashboard cannot listen on {taken}: pass another --listen"
        )),
        "{stderr}"
    );
}
