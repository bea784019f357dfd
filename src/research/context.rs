//! What the agent is shown of the run so far, built once from the history for a proposal and
//! for a draft written beside a training run alike: the recent experiments, the best, and the
//! last failure (with a reset to the best file after a streak of them).

use super::history::History;
use super::record::Record;
use crate::agent::prompt::{Action, PastExperiment, PromptInput};

/// Records the agent sees in its prompt.
const RECENT: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Context {
    pub recent: Vec<PastExperiment>,
    pub best: Option<PastExperiment>,
    pub last_failure: Option<String>,
    /// After `reset_after` failures in a row the agent starts over from the best file, told
    /// what failed.
    pub reset: bool,
}

impl Context {
    pub fn new(history: &History, reset_after: usize) -> Self {
        let (last_failure, reset) = failure_note(history, reset_after);
        Context {
            recent: history.recent(RECENT).map(past).collect(),
            best: history.last_kept().map(past),
            last_failure,
            reset,
        }
    }

    /// The experiment training now shown as running, so that a draft written beside it tries
    /// something else.
    pub fn with_running(mut self, description: &str) -> Self {
        self.recent.push(PastExperiment {
            description: description.to_string(),
            outcome: None,
            val_bpb: None,
        });
        self
    }

    pub fn prompt<'a>(
        &'a self,
        program: &'a str,
        train_file: &'a str,
        action: Action,
    ) -> PromptInput<'a> {
        PromptInput {
            program,
            train_file,
            history: &self.recent,
            best: self.best.as_ref(),
            last_failure: self.last_failure.as_deref(),
            action,
        }
    }
}

fn past(record: &Record) -> PastExperiment {
    PastExperiment {
        description: record.description.clone(),
        outcome: Some(record.outcome),
        val_bpb: record.val_bpb,
    }
}

/// What went wrong lately, for the prompt; true when the agent is reset after a streak.
fn failure_note(history: &History, reset_after: usize) -> (Option<String>, bool) {
    let streak = history.failure_streak();
    let Some(last) = streak.first() else {
        return (None, false);
    };
    if streak.len() % reset_after.max(1) == 0 {
        let list: Vec<String> = streak
            .iter()
            .rev()
            .map(|r| {
                format!(
                    "- {} ({}): {}",
                    r.description,
                    r.outcome,
                    r.error
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                )
            })
            .collect();
        let note = format!(
            "The last {} experiments failed:\n{}\nThe training file is back at the best version. \
             Try a different and smaller change.",
            streak.len(),
            list.join("\n")
        );
        return (Some(note), true);
    }
    let note = format!(
        "The last experiment ({}) failed: {}\n{}",
        last.description,
        last.outcome,
        last.error.as_deref().unwrap_or("")
    );
    (Some(note), false)
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::super::record::Outcome;
    use super::*;

    #[test]
    fn a_streak_of_failures_resets_the_agent_with_a_summary() {
        let mut records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Discard, Some(2.0)),
        ];
        let context = Context::new(&History::new(&records), 3);
        assert_eq!(context.last_failure, None);
        assert!(!context.reset);
        // The baseline is not among the recent experiments; the best is.
        assert_eq!(context.recent.len(), 1);
        assert_eq!(context.best.as_ref().unwrap().val_bpb, Some(1.9));

        for n in 2..=4 {
            let mut failed = record(n, Outcome::CompileError, None);
            failed.error = Some(format!("error[E0425]: x{n}\n  --> train.rs:1:1"));
            records.push(failed);
            let context = Context::new(&History::new(&records), 3);
            let note = context.last_failure.unwrap();
            if n < 4 {
                assert!(!context.reset);
                assert!(
                    note.starts_with(&format!("The last experiment (idea {n}")),
                    "{note}"
                );
                assert!(note.contains("compile_error"), "{note}");
            } else {
                assert!(context.reset);
                assert!(note.starts_with("The last 3 experiments failed:"), "{note}");
                assert!(note.contains("(compile_error): error[E0425]: x2"), "{note}");
                assert!(!note.contains("-->"), "only the first line of each: {note}");
            }
        }
    }

    #[test]
    fn a_draft_sees_the_running_experiment() {
        let records = vec![record(0, Outcome::Keep, Some(1.9))];
        let context = Context::new(&History::new(&records), 3).with_running("deeper");
        let running = context.recent.last().unwrap();
        assert_eq!(
            (running.description.as_str(), running.outcome),
            ("deeper", None)
        );
    }
}
