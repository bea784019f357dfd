//! What a candidate changed in its parent, in the words the agent and the people reading the
//! journal need: one line per edit (`MATRIX_LR 0.04 -> 0.25`, or the first changed line of a
//! code edit).

use serde::{Deserialize, Serialize};

use crate::agent::edit::constants;
use crate::agent::ledger::{constants_of, skeleton_sha256};

/// One edit of a candidate, as the prompt and the report show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Change {
    /// A constant's value: `NAME from -> to`.
    Set {
        name: String,
        from: String,
        to: String,
    },
    /// Code: the first line the edit added (or removed, when it only removed).
    Code { line: String },
}

impl Change {
    /// The constant and its new value, when this is a change of a value.
    pub fn set(&self) -> Option<(&str, &str)> {
        match self {
            Change::Set { name, to, .. } => Some((name, to)),
            Change::Code { .. } => None,
        }
    }
}

/// The constants `changes` set a value of.
pub fn set_names(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(Change::set)
        .map(|(name, _)| name.to_string())
        .collect()
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Set { name, from, to } => write!(f, "{name} {from} -> {to}"),
            Change::Code { line } => write!(f, "code: {line}"),
        }
    }
}

/// The edits that turn `before` into `after`: every constant whose value changed (in the file's
/// order), then the first changed line outside the constants, if any.
pub fn changes(before: &str, after: &str) -> Vec<Change> {
    let old = constants_of(before);
    let mut out: Vec<Change> = constants(after)
        .into_iter()
        .filter_map(|c| {
            let from = old.get(&c.name)?;
            (*from != c.value).then(|| Change::Set {
                name: c.name,
                from: from.clone(),
                to: c.value,
            })
        })
        .collect();
    if skeleton_sha256(before) != skeleton_sha256(after) {
        if let Some(line) = first_code_change(before, after) {
            out.push(Change::Code { line });
        }
    }
    out
}

/// The first added line of the diff that is not a constant's (else the first removed one),
/// trimmed.
fn first_code_change(before: &str, after: &str) -> Option<String> {
    let diff = similar::TextDiff::from_lines(before, after);
    let mut removed = None;
    for change in diff.iter_all_changes() {
        let line = change.value().trim();
        if line.is_empty() || line.starts_with("const ") {
            continue;
        }
        match change.tag() {
            similar::ChangeTag::Insert => return Some(line.to_string()),
            similar::ChangeTag::Delete if removed.is_none() => {
                removed = Some(format!("removed: {line}"));
            }
            _ => {}
        }
    }
    removed
}

/// An experiment in one line, for results.tsv, the commit and the live display: its constants'
/// changes when that is all it changed (what a reader wants, and what a small model's idea often
/// fails to say), otherwise its idea.
pub fn describe(idea: &str, changes: &[Change]) -> String {
    let only_values =
        !changes.is_empty() && changes.iter().all(|c| matches!(c, Change::Set { .. }));
    if only_values {
        let edits: Vec<String> = changes.iter().map(Change::to_string).collect();
        edits.join(", ")
    } else {
        idea.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "const LR: f64 = 0.04;\nconst DEPTH: Option<usize> = None;\n\nfn f() {\n    let a = 1;\n}\n";

    #[test]
    fn a_change_is_a_line_per_edit() {
        let set = FILE.replace("0.04", "0.25");
        assert_eq!(
            changes(FILE, &set),
            [Change::Set {
                name: "LR".into(),
                from: "0.04".into(),
                to: "0.25".into()
            }]
        );
        assert_eq!(changes(FILE, &set)[0].to_string(), "LR 0.04 -> 0.25");
        let both = set.replace("let a = 1;", "let a = 2;\n    let b = a;");
        let edits = changes(FILE, &both);
        assert_eq!(edits.len(), 2);
        assert_eq!(edits[1].to_string(), "code: let a = 2;");
        // Values alone describe themselves; code needs the idea.
        assert_eq!(
            describe("2023-01-16", &changes(FILE, &set)),
            "LR 0.04 -> 0.25"
        );
        assert_eq!(describe("a second variable", &edits), "a second variable");
        assert_eq!(describe("nothing", &[]), "nothing");
        let removed = FILE.replace("    let a = 1;\n", "");
        assert_eq!(
            changes(FILE, &removed)[0].to_string(),
            "code: removed: let a = 1;"
        );
    }
}
