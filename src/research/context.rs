//! What the agent is shown of the run so far, built once from the history for a proposal and
//! for a draft written beside a training run alike: the recent experiments with what each changed
//! and how it did against the best of its time, the values tried of every constant that was
//! changed, the kept experiments that made the best file, and the last failure (with a reset to
//! the best file after a streak of them).

use super::changes::Change;
use super::history::History;
use super::record::{Outcome, Record};
use crate::agent::ledger::constants_of;
use crate::agent::prompt::{Action, Memory, PastExperiment, PromptInput, ValuesTried};

/// Records the agent sees in its prompt.
const RECENT: usize = 8;

#[derive(Debug, Clone, Default)]
pub struct Context {
    pub memory: Memory,
    /// After `reset_after` failures in a row the agent starts over from the best file, told
    /// what failed.
    pub reset: bool,
}

impl Context {
    /// The context of the next proposal, made on `best_file` (the best commit's training file).
    pub fn new(history: &History, reset_after: usize, best_file: &str) -> Self {
        let (last_failure, reset) = failure_note(history, reset_after);
        let memory = Memory {
            recent: history.recent(RECENT).map(past).collect(),
            best: history.last_kept().map(past),
            values: values_tried(history, best_file),
            lineage: history.lineage().map(past).collect(),
            last_failure,
        };
        Context { memory, reset }
    }

    /// The experiment training now shown as running, so that a draft written beside it tries
    /// something else.
    pub fn with_running(mut self, record: &Record) -> Self {
        self.memory.recent.push(PastExperiment {
            outcome: None,
            val_bpb: None,
            improvement: None,
            ..past(record)
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
            memory: &self.memory,
            ..PromptInput::plain(program, train_file, action)
        }
    }
}

fn past(record: &Record) -> PastExperiment {
    PastExperiment {
        n: record.n,
        description: record.description.clone(),
        outcome: Some(record.outcome),
        val_bpb: record.val_bpb,
        changes: record.changes.iter().map(Change::to_string).collect(),
        improvement: record
            .decision
            .as_ref()
            .filter(|_| !record.is_baseline())
            .map(|d| (d.improvement, d.margin)),
    }
}

/// Every constant some experiment changed, with the values it was tried at and how each did.
fn values_tried(history: &History, best_file: &str) -> Vec<ValuesTried> {
    let best = constants_of(best_file);
    let mut out: Vec<ValuesTried> = Vec::new();
    for record in history.experiments() {
        let informative = record.outcome.is_judged()
            || record.outcome.is_failure()
            || record.outcome == Outcome::StoppedEarly;
        if !informative {
            continue;
        }
        for change in &record.changes {
            let Change::Set { name, to, .. } = change else {
                continue;
            };
            let tried = (to.clone(), record.val_bpb, record.outcome);
            match out.iter_mut().find(|v| &v.name == name) {
                Some(v) => v.tried.push(tried),
                None => out.push(ValuesTried {
                    name: name.clone(),
                    best: best.get(name).cloned().unwrap_or_default(),
                    tried: vec![tried],
                }),
            }
        }
    }
    out
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
    use super::super::record::Decision;
    use super::*;

    const FILE: &str = "const MATRIX_LR: f64 = 0.06;\n";

    #[test]
    fn a_streak_of_failures_resets_the_agent_with_a_summary() {
        let mut records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            record(1, Outcome::Discard, Some(2.0)),
        ];
        let context = Context::new(&History::new(&records), 3, FILE);
        assert_eq!(context.memory.last_failure, None);
        assert!(!context.reset);
        // The baseline is not among the recent experiments; the best is.
        assert_eq!(context.memory.recent.len(), 1);
        assert_eq!(context.memory.best.as_ref().unwrap().val_bpb, Some(1.9));

        for n in 2..=4 {
            let mut failed = record(n, Outcome::CompileError, None);
            failed.error = Some(format!("error[E0425]: x{n}\n  --> train.rs:1:1"));
            records.push(failed);
            let context = Context::new(&History::new(&records), 3, FILE);
            let note = context.memory.last_failure.unwrap();
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
    fn the_memory_has_changes_results_values_and_the_lineage() {
        let set = |n, outcome, val_bpb: Option<f64>, to: &str| {
            let mut r = record(n, outcome, val_bpb);
            r.changes = vec![Change::Set {
                name: "MATRIX_LR".into(),
                from: "0.04".into(),
                to: to.into(),
            }];
            r.decision = val_bpb.map(|v| Decision {
                best_before: 1.9,
                candidate: v,
                improvement: 1.9 - v,
                margin: 0.01,
                noise_sigma: 0.005,
                noise_prior: None,
                baseline_runs: vec![],
                reference_runs: vec![],
                rule: String::new(),
            });
            r
        };
        let records = vec![
            record(0, Outcome::Keep, Some(1.9)),
            set(1, Outcome::Keep, Some(1.85), "0.06"),
            set(2, Outcome::Crash, None, "0.5"),
            set(3, Outcome::Discard, Some(1.86), "0.08"),
        ];
        let context = Context::new(&History::new(&records), 3, FILE).with_running(&records[3]);
        let m = &context.memory;
        assert_eq!(m.recent[0].changes, ["MATRIX_LR 0.04 -> 0.06"]);
        assert_eq!(m.recent[0].improvement, Some((1.9 - 1.85, 0.01)));
        assert_eq!(m.recent.last().unwrap().outcome, None, "the running one");
        let values = &m.values[0];
        assert_eq!(
            (values.name.as_str(), values.best.as_str()),
            ("MATRIX_LR", "0.06")
        );
        let tried: Vec<&str> = values.tried.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(tried, ["0.06", "0.5", "0.08"]);
        assert_eq!(values.tried[1].2, Outcome::Crash);
        assert_eq!(m.lineage.iter().map(|e| e.n).collect::<Vec<_>>(), [1]);
    }
}
