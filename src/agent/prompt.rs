//! The prompt: the protocol (`program.md`), the training file, a bounded history of experiments
//! and the last failure, with the reply format. It must fit the model's context with room for the
//! reply; when it does not, it degrades step by step (the hyperparameter section instead of the
//! whole file, less history, a shorter failure, the protocol's opening only, and last the
//! constants without their comments) instead of failing.

use serde::{Deserialize, Serialize};

use crate::research::record::Outcome;

/// One past experiment, as the agent sees it.
#[derive(Debug, Clone)]
pub struct PastExperiment {
    pub description: String,
    /// None: training now.
    pub outcome: Option<Outcome>,
    pub val_bpb: Option<f64>,
}

/// Which reply format the prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// SEARCH/REPLACE blocks against the training file.
    Replace,
    /// `SET NAME = VALUE` on the hyperparameter constants.
    Set,
}

named!(Action {
    Replace => "replace",
    Set => "set",
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
    pub history: &'a [PastExperiment],
    pub best: Option<&'a PastExperiment>,
    pub last_failure: Option<&'a str>,
    pub action: Action,
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
then one or two blocks that replace lines copied exactly from the training file. For example:\n\
IDEA: decay the learning rate over a longer part of the run\n\
<<<<<<< SEARCH\n\
const WARMDOWN_RATIO: f64 = 0.5;\n\
=======\n\
const WARMDOWN_RATIO: f64 = 0.7;\n\
>>>>>>> REPLACE\n\
Each SEARCH must match exactly one place in the file.";

const FORMAT_SET: &str =
    "Reply in exactly this format and nothing else: a line starting with IDEA:, \
then one to three lines that set constants of the training file to new values. For example:\n\
IDEA: train the block matrices with a higher learning rate\n\
SET MATRIX_LR = 0.05";

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
    let format = match input.action {
        Action::Replace => FORMAT_REPLACE,
        Action::Set => FORMAT_SET,
    };
    // Level 3 keeps only the protocol's opening paragraph.
    let program = if level >= 3 {
        input
            .program
            .split("\n\n")
            .take(2)
            .collect::<Vec<_>>()
            .join("\n\n")
    } else {
        input.program.trim().to_string()
    };
    let system = format!("{program}\n\n{format}");

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
    if let Some(best) = input.best {
        user.push_str(&format!(
            "## Best so far\nval_bpb {:.6}: {}\n\n",
            best.val_bpb.unwrap_or(f64::NAN),
            best.description
        ));
    }
    if rows > 0 && !input.history.is_empty() {
        user.push_str("## Recent experiments (newest last)\n");
        let start = input.history.len().saturating_sub(rows);
        for e in &input.history[start..] {
            let bpb = e.val_bpb.map_or("-".to_string(), |v| format!("{v:.6}"));
            let status = e.outcome.map_or("running now", Outcome::name);
            user.push_str(&format!("- {status} | {bpb} | {}\n", e.description));
        }
        user.push('\n');
    }
    if let Some(failure) = input.last_failure {
        let keep = if level >= 2 { 8 } else { 30 };
        let lines: Vec<&str> = failure.lines().collect();
        let tail = lines[lines.len().saturating_sub(keep)..].join("\n");
        user.push_str(&format!("## The last attempt failed\n{tail}\n\n"));
    }
    user.push_str("Propose the next experiment.");
    Prompt {
        system,
        user,
        level,
    }
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

    fn input<'a>(history: &'a [PastExperiment], failure: Option<&'a str>) -> PromptInput<'a> {
        PromptInput {
            program: "# Protocol\n\nLower val_bpb is better.\n\nMore rules here.",
            train_file: TRAIN,
            history,
            best: history.first(),
            last_failure: failure,
            action: Action::Set,
        }
    }

    fn chars_as_tokens(system: &str, user: &str) -> Result<usize, std::fmt::Error> {
        Ok((system.len() + user.len()) / 4)
    }

    #[test]
    fn a_roomy_context_gets_the_whole_file_and_the_history() {
        let history = [
            PastExperiment {
                description: "deeper".into(),
                outcome: Some(Outcome::CompileError),
                val_bpb: None,
            },
            PastExperiment {
                description: "wider".into(),
                outcome: None,
                val_bpb: None,
            },
        ];
        let p = fit(&input(&history, None), 100_000, 512, chars_as_tokens).unwrap();
        assert_eq!(p.level, 0);
        assert!(p.user.contains("fn main()"));
        assert!(p.system.contains("SET MATRIX_LR = 0.05"));
        assert!(
            p.user.contains("- compile_error | - | deeper\n"),
            "{}",
            p.user
        );
        assert!(p.user.contains("- running now | - | wider\n"), "{}", p.user);
    }

    #[test]
    fn a_tiny_context_still_gets_a_valid_prompt_with_the_hyperparameters() {
        let history: Vec<PastExperiment> = (0..40)
            .map(|i| PastExperiment {
                description: format!("experiment {i} with a long description of what was tried"),
                outcome: Some(Outcome::Discard),
                val_bpb: Some(1.8 + i as f64 / 1000.0),
            })
            .collect();
        let failure = "error[E0425]: x\n".repeat(100);
        let p = fit(&input(&history, Some(&failure)), 1500, 256, chars_as_tokens).unwrap();
        assert!(p.level >= 1);
        assert!(!p.user.contains("fn main()"));
        assert!(p.user.contains("const MATRIX_LR: f64"));
        assert!(p.user.contains("Propose the next experiment."));
        assert!(chars_as_tokens(&p.system, &p.user).unwrap() + 256 <= 1500);
        // Too small for even the minimum: the caller learns how much was needed.
        let err = fit(&input(&history, Some(&failure)), 100, 256, chars_as_tokens).unwrap_err();
        assert!(matches!(err, FitError::TooLong { needed, .. } if needed > 100));
    }

    /// A template that cannot be rendered is its own error, not a prompt too long to fit.
    #[test]
    fn a_failure_to_count_tokens_is_named() {
        let failing = |_: &str, _: &str| Err::<usize, _>(std::fmt::Error);
        let err = fit(&input(&[], None), 100_000, 512, failing).unwrap_err();
        assert!(matches!(err, FitError::Count(_)), "{err}");
    }

    #[test]
    fn the_last_resort_keeps_the_constants_without_their_comments() {
        let at = |level| render(&input(&[], None), level).user;
        assert!(at(3).contains("/// Transformer blocks"));
        let last = at(LEVELS - 1);
        assert!(
            last.contains("const DEPTH: Option<usize> = None;"),
            "{last}"
        );
        assert!(!last.contains("///"), "{last}");
    }

    #[test]
    fn the_hyperparameter_section_keeps_constants_and_their_docs_only() {
        let section = hyperparameter_section(TRAIN);
        assert!(section.contains("/// Transformer blocks; None takes"));
        assert!(section.contains("const DEPTH: Option<usize> = None;"));
        assert!(!section.contains("fn "));
        assert!(section
            .lines()
            .all(|l| l.starts_with("const ") || l.starts_with("///")));
    }
}
