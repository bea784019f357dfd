//! What the user sees while the loop runs: a spinner with tokens/s while the agent writes, a
//! spinner while a candidate compiles, the training budget as a bar with step, loss and tokens/s,
//! and one line per finished experiment. Bars are drawn only on a terminal; `--quiet` keeps
//! plain lines only, with a line when the agent starts writing and when an evaluation starts
//! (what a script watching the loop waits for). The training program's own lines go to its log
//! file, not here.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::live::{LiveFile, Phase};
use super::record::{Outcome, Record};
use crate::agent::propose::Event;
use crate::units::Seconds;

pub struct Ui {
    quiet: bool,
    bar: Option<ProgressBar>,
    /// The same events for watchers (the dashboard), when the loop is watched.
    live: Option<LiveFile>,
}

/// Step, progress, loss and tokens/s from one of the harness's step lines, for display only.
pub fn parse_step_line(line: &str) -> Option<(usize, f64, f64, f64)> {
    let rest = line.strip_prefix("step ")?;
    let (step, rest) = rest.split_once(' ')?;
    let percent = rest.split_once('(')?.1.split_once('%')?.0.trim();
    let field = |name: &str| -> Option<f64> {
        rest.split('|')
            .find_map(|part| part.trim().strip_prefix(name))?
            .trim()
            .parse()
            .ok()
    };
    Some((
        step.parse().ok()?,
        percent.parse::<f64>().ok()? / 100.0,
        field("loss ")?,
        field("tok/s ")?,
    ))
}

impl Ui {
    pub fn new(quiet: bool) -> Self {
        Ui {
            quiet,
            bar: None,
            live: None,
        }
    }

    /// Also keeps the run folder's live.json up to date.
    pub fn watch(&mut self, live: LiveFile) {
        self.live = Some(live);
    }

    fn phase(&mut self, phase: Phase, n: usize, run: Option<usize>) {
        if let Some(live) = &mut self.live {
            live.phase(phase, Some(n), run);
        }
    }

    /// A line above any bar.
    pub fn say(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => println!("{message}"),
        }
    }

    fn spinner(&mut self, message: String) {
        if self.quiet {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").unwrap());
        bar.set_length(0);
        bar.set_message(message);
    }

    pub fn agent_begin(&mut self, n: usize) {
        self.phase(Phase::Proposing, n, None);
        if self.quiet {
            println!("e{n:04}: the agent writes");
        }
        self.spinner(format!("e{n:04}: the agent reads the prompt"));
    }

    pub fn agent_event(&mut self, n: usize, event: &Event) {
        if let Event::Building = event {
            self.phase(Phase::Compiling, n, None);
        }
        let Some(bar) = &self.bar else { return };
        match event {
            Event::Writing { tokens, seconds } => bar.set_message(format!(
                "e{n:04}: the agent writes: {tokens} tokens, {:.1} tokens/s",
                *tokens as f64 / seconds.max(1e-9)
            )),
            Event::Building => bar.set_message(format!("e{n:04}: compiling the candidate")),
            Event::Finished(_) => {}
        }
    }

    /// The loop compiles experiment `n`'s training program.
    pub fn compiling(&mut self, n: usize) {
        self.phase(Phase::Compiling, n, None);
    }

    pub fn training_begin(&mut self, n: usize, run: usize, budget: Seconds) {
        self.phase(Phase::Training, n, Some(run));
        if self.quiet {
            println!("e{n:04} run {run}: training");
            return;
        }
        self.spinner(String::new());
        let Some(bar) = &self.bar else { return };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% of {len}s {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("e{n:04} run {run}"));
        bar.set_length(budget.get().round() as u64);
        bar.set_position(0);
        bar.set_message("starting");
    }

    /// One line the training program printed during run `run` of experiment `n`.
    pub fn training_line(&mut self, n: usize, run: usize, line: &str) {
        let evaluating = line.starts_with(harness::EVALUATING);
        if self.quiet && evaluating {
            println!("e{n:04} run {run}: evaluating");
        }
        let step = parse_step_line(line);
        match (&mut self.live, step) {
            (Some(live), Some((step, progress, loss, tokens_per_second))) => {
                live.step(step, progress, loss, tokens_per_second)
            }
            (Some(live), None) if evaluating => live.phase(Phase::Evaluating, Some(n), Some(run)),
            _ => {}
        }
        let Some(bar) = &self.bar else { return };
        if let Some((step, progress, loss, tokens_per_second)) = step {
            let len = bar.length().unwrap_or(0) as f64;
            bar.set_position((progress * len).round() as u64);
            bar.set_message(format!(
                "step {step} | loss {loss:.4} | {tokens_per_second:.0} tok/s"
            ));
        } else if evaluating {
            bar.set_message("evaluating");
        }
    }

    /// The line for a finished experiment; `best` is the best val_bpb before it.
    pub fn experiment_done(&mut self, record: &Record, best: Option<f64>) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let outcome = record.outcome.name();
        let score = match (record.val_bpb, best) {
            (Some(v), Some(b)) if record.outcome != Outcome::Interrupted => {
                format!("val_bpb {v:.6} ({:+.6} vs best {b:.6})", v - b)
            }
            (Some(v), _) => format!("val_bpb {v:.6}"),
            _ => "no result".to_string(),
        };
        println!(
            "e{:04} {outcome:<13} {score} | {:.0}s | {}",
            record.n, record.timing.total_seconds, record.description
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harness_step_line_is_read_for_display() {
        let line = "step 00012 ( 34.5%) | loss 6.123456 | dt 250ms | tok/s 16000 | epoch 1";
        assert_eq!(parse_step_line(line), Some((12, 0.345, 6.123456, 16000.0)));
        assert_eq!(parse_step_line("val_bpb: 1.2"), None);
    }
}
