//! The prompt: the protocol (`program.md`), the training file, the run's memory (recent
//! experiments with what each changed and how it did against the best, the values tried of each
//! constant, the best file's lineage, the last failure), the controller's task and the reply
//! format. The protocol and the file come first and change rarely, so the agent's engine can keep
//! its state for them across proposals. It must fit the model's context with room for the reply;
//! when it does not, it degrades step by step (the hyperparameter section instead of the whole
//! file, less memory, a shorter failure, the protocol's opening only, and last the constants
//! without their comments) instead of failing.

use serde::{Deserialize, Serialize};

use crate::research::record::Outcome;

/// One past experiment, as the agent sees it.
#[derive(Debug, Clone, Default)]
pub struct PastExperiment {
    pub n: usize,
    pub description: String,
    /// None: training now.
    pub outcome: Option<Outcome>,
    pub val_bpb: Option<f64>,
    /// One line per edit (`MATRIX_LR 0.04 -> 0.25`, `code: ...`).
    pub changes: Vec<String>,
    /// Its improvement over the best of its time (positive is better) and the margin it needed.
    pub improvement: Option<(f64, f64)>,
}

/// The values one constant was tried at, oldest first: the value, its val_bpb (None for a run
/// without a result) and the outcome.
#[derive(Debug, Clone, Default)]
pub struct ValuesTried {
    pub name: String,
    pub best: String,
    pub tried: Vec<(String, Option<f64>, Outcome)>,
}

/// What the agent remembers of the run.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub recent: Vec<PastExperiment>,
    pub best: Option<PastExperiment>,
    pub values: Vec<ValuesTried>,
    /// The kept experiments that made the best file, oldest first.
    pub lineage: Vec<PastExperiment>,
    pub last_failure: Option<String>,
}

/// Which reply format the prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SEARCH/REPLACE blocks against the training file.
    Replace,
    /// `SET NAME = VALUE` on the hyperparameter constants.
    Set,
    /// `TUNE NAME`: constants whose values the sampler chooses.
    Tune,
}

named!(Action {
    Replace => "replace",
    Set => "set",
    Tune => "tune",
});

/// Why no prompt fits.
#[derive(Debug, thiserror::Error)]
pub enum FitError<E: std::error::Error + 'static> {
    #[error("the prompt needs {needed} tokens but the context holds {context}, even cut to its minimum: use a model with a longer context or a larger --ctx")]
    TooLong { needed: usize, context: usize },
    /// Counting a prompt's tokens failed (its chat template could not be rendered).
    #[error("cannot count the prompt's tokens")]
    Count(#[source] E),
}

pub struct PromptInput<'a> {
    pub program: &'a str,
    pub train_file: &'a str,
    pub memory: &'a Memory,
    /// What the controller asks this experiment to do, in words.
    pub task: Option<&'a str>,
    /// The constants a SET or TUNE reply may name (None: all).
    pub names: Option<&'a [String]>,
    pub action: Action,
}

impl<'a> PromptInput<'a> {
    /// A prompt with nothing remembered and no task: a file's first proposal.
    pub fn plain(program: &'a str, train_file: &'a str, action: Action) -> Self {
        static EMPTY: Memory = Memory {
            recent: Vec::new(),
            best: None,
            values: Vec::new(),
            lineage: Vec::new(),
            last_failure: None,
        };
        PromptInput {
            program,
            train_file,
            memory: &EMPTY,
            task: None,
            names: None,
            action,
        }
    }
}

/// A rendered prompt and how much of the input it carries.
#[derive(Debug)]
pub struct Prompt {
    pub system: String,
    pub user: String,
    /// 0 = everything; higher = more cut to fit.
    pub level: usize,
}

const FORMAT_REPLACE: &str =
    "Reply in exactly this format and nothing else: a line starting with IDEA:, \
then one or two blocks that replace lines copied exactly from the training file:\n\
IDEA: <what you change and why, in one line>\n\
<<<<<<< SEARCH\n\
<lines copied exactly from the file>\n\
=======\n\
<the lines that replace them>\n\
>>>>>>> REPLACE\n\
Each SEARCH must match exactly one place in the file.";

const FORMAT_SET: &str =
    "Reply in exactly this format and nothing else: a line starting with IDEA:, \
then one to three lines that set constants of the training file to new values:\n\
IDEA: <what you change and why, in one line>\n\
SET <NAME> = <value>";

const FORMAT_TUNE: &str =
    "Reply in exactly this format and nothing else: a line starting with IDEA:, \
then one to three lines naming constants of the training file to tune. You choose which \
constants; their values are chosen for you from every result so far:\n\
IDEA: <why these constants, in one line>\n\
TUNE <NAME>";

/// The cheapest ways to cut, in the order they are tried.
const LEVELS: usize = 5;

/// Builds the richest prompt whose token count (by `count_tokens`, chat markup included by the
/// caller's closure) leaves `reply_tokens` free in a context of `context` tokens.
pub fn fit<E: std::error::Error + 'static>(
    input: &PromptInput,
    context: usize,
    reply_tokens: usize,
    count_tokens: impl Fn(&str, &str) -> Result<usize, E>,
) -> Result<Prompt, FitError<E>> {
    let mut smallest = usize::MAX;
    for level in 0..LEVELS {
        let prompt = render(input, level);
        let tokens = count_tokens(&prompt.system, &prompt.user).map_err(FitError::Count)?;
        if tokens + reply_tokens <= context {
            return Ok(prompt);
        }
        smallest = smallest.min(tokens + reply_tokens);
    }
    Err(FitError::TooLong {
        needed: smallest,
        context,
    })
}

fn render(input: &PromptInput, level: usize) -> Prompt {
    // Level 3 keeps only the protocol's opening paragraph.
    let system = if level >= 3 {
        input
            .program
            .split("\n\n")
            .take(2)
            .collect::<Vec<_>>()
            .join("\n\n")
    } else {
        input.program.trim().to_string()
    };

    // The file first: with the protocol, the part of the prompt that changes only with a keep.
    let mut user = String::new();
    if level == 0 {
        user.push_str("## The training file (train.rs)\n```rust\n");
        user.push_str(input.train_file);
        user.push_str("```\n\n");
    } else {
        user.push_str(
            "## The hyperparameters of the training file (the rest is not shown)\n```rust\n",
        );
        let section = hyperparameter_section(input.train_file);
        if level >= 4 {
            // The last resort: the constants alone, without their doc comments.
            section
                .lines()
                .filter(|l| !l.starts_with("///"))
                .for_each(|l| user.push_str(&format!("{l}\n")));
        } else {
            user.push_str(&section);
        }
        user.push_str("```\n\n");
    }
    let rows = match level {
        0 | 1 => 10,
        2 => 3,
        _ => 0,
    };
    memory(&mut user, input.memory, rows);
    if let Some(failure) = &input.memory.last_failure {
        let keep = if level >= 2 { 8 } else { 30 };
        let lines: Vec<&str> = failure.lines().collect();
        let tail = lines[lines.len().saturating_sub(keep)..].join("\n");
        user.push_str(&format!("## The last attempt failed\n{tail}\n\n"));
    }
    if let Some(task) = input.task {
        user.push_str(&format!("## This experiment\n{task}\n"));
        // The names bound SET and TUNE replies; shown beside a code format they read as an
        // invitation to edit those constants' lines.
        if let (Some(names), Action::Set | Action::Tune) = (input.names, input.action) {
            user.push_str(&format!("Constants you may name: {}\n", names.join(", ")));
        }
        user.push('\n');
    }
    let format = match input.action {
        Action::Replace => FORMAT_REPLACE,
        Action::Set => FORMAT_SET,
        Action::Tune => FORMAT_TUNE,
    };
    user.push_str(format);
    user.push_str("\n\nPropose the next experiment.");
    Prompt {
        system,
        user,
        level,
    }
}

/// The run's memory, `rows` experiments of it (none at 0).
fn memory(user: &mut String, memory: &Memory, rows: usize) {
    if let Some(best) = &memory.best {
        user.push_str(&format!(
            "## Best so far\nval_bpb {:.6}: {}\n\n",
            best.val_bpb.unwrap_or(f64::NAN),
            best.description
        ));
    }
    if rows == 0 {
        return;
    }
    if !memory.lineage.is_empty() {
        user.push_str("## How the best file was made (kept experiments, oldest first)\n");
        for e in &memory.lineage {
            user.push_str(&format!("- {}\n", experiment_line(e)));
        }
        user.push('\n');
    }
    if !memory.recent.is_empty() {
        user.push_str("## Recent experiments (newest last)\n");
        let start = memory.recent.len().saturating_sub(rows);
        for e in &memory.recent[start..] {
            user.push_str(&format!("- {}\n", experiment_line(e)));
        }
        user.push('\n');
    }
    if !memory.values.is_empty() {
        user.push_str("## Values tried (val_bpb, outcome)\n");
        for v in &memory.values {
            let tried: Vec<String> = v.tried[v.tried.len().saturating_sub(rows)..]
                .iter()
                .map(|(value, bpb, outcome)| match bpb {
                    Some(bpb) => format!("{value}: {bpb:.4} {outcome}"),
                    None => format!("{value}: {outcome}"),
                })
                .collect();
            user.push_str(&format!(
                "- {} (best file: {}): {}\n",
                v.name,
                v.best,
                tried.join("; ")
            ));
        }
        user.push('\n');
    }
}

/// `e0012 discard | 1.812345, 0.004000 worse than the best (a keep needed 0.010000 better) |
/// MATRIX_LR 0.04 -> 0.25 | idea`.
fn experiment_line(e: &PastExperiment) -> String {
    let status = e.outcome.map_or("running now", Outcome::name);
    let result = match (e.val_bpb, e.improvement) {
        (Some(v), Some((gain, margin))) if gain >= 0.0 => {
            format!("{v:.6}, {gain:.6} better than the best (a keep needed {margin:.6})")
        }
        (Some(v), Some((gain, margin))) => format!(
            "{v:.6}, {:.6} worse than the best (a keep needed {margin:.6} better)",
            -gain
        ),
        (Some(v), None) => format!("{v:.6}"),
        (None, _) => "no result".into(),
    };
    let changes = if e.changes.is_empty() {
        String::new()
    } else {
        format!(" | {}", e.changes.join(", "))
    };
    format!(
        "e{:04} {status} | {result}{changes} | {}",
        e.n, e.description
    )
}

/// The top-level `const` lines of the training file, each with its doc comment.
pub fn hyperparameter_section(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut kept = String::new();
    for (i, line) in lines.iter().enumerate() {
        let documents_a_constant = line.starts_with("///")
            && lines[i + 1..]
                .iter()
                .find(|l| !l.starts_with("///"))
                .is_some_and(|l| l.starts_with("const "));
        if line.starts_with("const ") || documents_a_constant {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: &str = include_str!("../../train/src/train.rs");
    const PROGRAM: &str = "# Protocol\n\nLower val_bpb is better.\n\nMore rules here.";

    fn input<'a>(memory: &'a Memory, action: Action) -> PromptInput<'a> {
        PromptInput {
            memory,
            ..PromptInput::plain(PROGRAM, TRAIN, action)
        }
    }

    fn chars_as_tokens(system: &str, user: &str) -> Result<usize, std::fmt::Error> {
        Ok((system.len() + user.len()) / 4)
    }

    fn past(n: usize, outcome: Option<Outcome>, val_bpb: Option<f64>) -> PastExperiment {
        PastExperiment {
            n,
            description: format!("idea {n}"),
            outcome,
            val_bpb,
            changes: vec![format!("MATRIX_LR 0.04 -> 0.0{n}")],
            improvement: val_bpb.map(|v| (1.8 - v, 0.01)),
        }
    }

    #[test]
    fn a_roomy_context_gets_the_file_and_the_memory() {
        let memory = Memory {
            recent: vec![
                past(3, Some(Outcome::Discard), Some(1.812)),
                past(4, Some(Outcome::CompileError), None),
                PastExperiment {
                    n: 5,
                    description: "wider".into(),
                    ..PastExperiment::default()
                },
            ],
            best: Some(past(2, Some(Outcome::Keep), Some(1.79))),
            values: vec![ValuesTried {
                name: "MATRIX_LR".into(),
                best: "0.02".into(),
                tried: vec![
                    ("0.02".into(), Some(1.79), Outcome::Keep),
                    ("0.25".into(), None, Outcome::Crash),
                ],
            }],
            lineage: vec![past(2, Some(Outcome::Keep), Some(1.79))],
            last_failure: None,
        };
        let p = fit(&input(&memory, Action::Set), 100_000, 512, chars_as_tokens).unwrap();
        assert_eq!(p.level, 0);
        assert!(p.user.starts_with("## The training file (train.rs)"));
        assert!(p.user.contains("fn main()"));
        assert!(
            p.user.contains("- e0003 discard | 1.812000, 0.012000 worse than the best (a keep needed 0.010000 better) | MATRIX_LR 0.04 -> 0.03 | idea 3\n"),
            "{}",
            p.user
        );
        assert!(p
            .user
            .contains("- e0004 compile_error | no result | MATRIX_LR 0.04 -> 0.04 | idea 4\n"));
        assert!(p.user.contains("- e0005 running now | no result | wider\n"));
        assert!(p
            .user
            .contains("- MATRIX_LR (best file: 0.02): 0.02: 1.7900 keep; 0.25: crash\n"));
        assert!(p.user.contains("## How the best file was made"));
        // The examples show the format, not values to copy.
        assert!(p.user.contains("SET <NAME> = <value>"));
        assert!(!p.user.contains("SET MATRIX_LR = 0.05"));
    }

    #[test]
    fn the_task_and_the_names_come_with_the_format() {
        let memory = Memory::default();
        let names = ["MATRIX_LR".to_string(), "EMBEDDING_LR".to_string()];
        let p = render(
            &PromptInput {
                task: Some("Tune the optimizer."),
                names: Some(&names),
                ..input(&memory, Action::Tune)
            },
            0,
        );
        assert!(p.user.contains("## This experiment\nTune the optimizer.\nConstants you may name: MATRIX_LR, EMBEDDING_LR\n"));
        assert!(p.user.contains("TUNE <NAME>"));
        assert!(p.user.ends_with("Propose the next experiment."));
        // The protocol is the whole system prompt, so the prefix stays the same across actions.
        assert_eq!(p.system, PROGRAM);
        assert_eq!(render(&input(&memory, Action::Replace), 0).system, PROGRAM);
    }

    #[test]
    fn a_tiny_context_still_gets_a_valid_prompt_with_the_hyperparameters() {
        let memory = Memory {
            recent: (0..40)
                .map(|i| past(i, Some(Outcome::Discard), Some(1.8 + i as f64 / 1000.0)))
                .collect(),
            last_failure: Some("error[E0425]: x\n".repeat(100)),
            ..Memory::default()
        };
        let p = fit(&input(&memory, Action::Set), 1500, 256, chars_as_tokens).unwrap();
        assert!(p.level >= 1);
        assert!(!p.user.contains("fn main()"));
        assert!(p.user.contains("const MATRIX_LR: f64"));
        assert!(p.user.contains("Propose the next experiment."));
        assert!(chars_as_tokens(&p.system, &p.user).unwrap() + 256 <= 1500);
        // Too small for even the minimum: the caller learns how much was needed.
        let err = fit(&input(&memory, Action::Set), 100, 256, chars_as_tokens).unwrap_err();
        assert!(matches!(err, FitError::TooLong { needed, .. } if needed > 100));
    }

    /// A template that cannot be rendered is its own error, not a prompt too long to fit.
    #[test]
    fn a_failure_to_count_tokens_is_named() {
        let failing = |_: &str, _: &str| Err::<usize, _>(std::fmt::Error);
        let memory = Memory::default();
        let err = fit(&input(&memory, Action::Set), 100_000, 512, failing).unwrap_err();
        assert!(matches!(err, FitError::Count(_)), "{err}");
    }

    #[test]
    fn the_last_resort_keeps_the_constants_without_their_comments() {
        let memory = Memory::default();
        let at = |level| render(&input(&memory, Action::Set), level).user;
        assert!(at(3).contains("/// Transformer blocks"));
        let last = at(LEVELS - 1);
        assert!(last.contains("const DEPTH_CPU: usize = 4;"), "{last}");
        assert!(!last.contains("///"), "{last}");
    }

    #[test]
    fn the_hyperparameter_section_keeps_constants_and_their_docs_only() {
        let section = hyperparameter_section(TRAIN);
        assert!(section.contains("/// Transformer blocks on the CPU."));
        assert!(section.contains("const DEPTH_CPU: usize = 4;"));
        assert!(!section.contains("fn "));
        assert!(section
            .lines()
            .all(|l| l.starts_with("const ") || l.starts_with("///")));
    }
}
