//! Changes of shape constants that build the same model are taken out before a run. The shape
//! follows from integer rules (heads = round(width / HEAD_DIM), rows per pass clamped to the
//! step's tokens, the GPU's depth unused on the CPU), so many values of a shape constant build
//! one model: at width 42 every HEAD_DIM above 28 is one head of 42. A run of such a value alone
//! measures only noise, and a lucky one becomes a near-miss that later moves combine again; mixed
//! with a real change it is credited with that change's result. The file's own account of its
//! model (the harness's describe mode, a second or two) says whether anything changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::edit::{self, Edit, Proposal};
use super::ledger::skeleton_sha256;
use crate::confine::Confinement;
use crate::research::changes::{changes, Change};
use crate::research::stop::Stop;
use crate::trainer::{build, describe};

/// The constants that set the baseline's width, depth and batch, and nothing else: the baseline
/// uses them only to build its model and print it (`model: depth ..., width ...`).
const SHAPE_CONSTANTS: [&str; 8] = [
    "DEPTH_GPU",
    "DEPTH_CPU",
    "ASPECT_RATIO",
    "HEAD_DIM",
    "TOKENS_PER_STEP_GPU",
    "DEVICE_ROWS_GPU",
    "TOKENS_PER_STEP_CPU",
    "DEVICE_ROWS_CPU",
];

/// The baseline training file, whose uses of the shape constants the check relies on.
const BASELINE: &str = include_str!("../../train/src/train.rs");

/// Each shape constant that `candidate` changes, when the two files have the same code
/// (skeleton) and that code uses the constant as the baseline does (every line naming it is a
/// line of the baseline: kept code that used it elsewhere could make it more than a shape);
/// none otherwise.
pub fn shape_changes(parent: &str, candidate: &str) -> Vec<Change> {
    if skeleton_sha256(parent) != skeleton_sha256(candidate) {
        return Vec::new();
    }
    changes(parent, candidate)
        .into_iter()
        .filter(|c| {
            c.set().is_some_and(|(name, _)| {
                SHAPE_CONSTANTS.contains(&name) && used_as_in_baseline(parent, name)
            })
        })
        .collect()
}

/// Whether every line of `text` that names `constant` (its definition aside) is a baseline line.
fn used_as_in_baseline(text: &str, constant: &str) -> bool {
    let definition = format!("const {constant}:");
    text.lines()
        .map(str::trim)
        .filter(|l| l.contains(constant) && !l.starts_with(&definition) && !l.starts_with("//"))
        .all(|l| BASELINE.lines().any(|b| b.trim() == l))
}

/// Shape changes that build the parent's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Inert {
    pub changes: Vec<Change>,
    /// The model's line of the description (the baseline's `model: ...`), else its last line.
    pub model: String,
}

impl Inert {
    /// `NAME a -> b, ...`
    pub fn words(&self) -> String {
        let changes: Vec<String> = self.changes.iter().map(Change::to_string).collect();
        changes.join(", ")
    }

    /// `candidate` with these constants back at the parent's values (None where the file
    /// defines one twice and a SET cannot say which).
    pub fn undone(&self, candidate: &str) -> Option<String> {
        let back = Proposal {
            idea: String::new(),
            edits: self
                .changes
                .iter()
                .filter_map(|c| match c {
                    Change::Set { name, from, .. } => Some(Edit::Set {
                        name: name.clone(),
                        value: from.clone(),
                    }),
                    Change::Code { .. } => None,
                })
                .collect(),
        };
        edit::apply(candidate, &back).ok()
    }
}

/// Describes candidates and their parents, each file once.
pub struct ShapeCheck {
    data_dir: PathBuf,
    stop: Stop,
    /// What each file (by hash) printed before its first batch, in order.
    known: HashMap<String, Vec<String>>,
}

impl ShapeCheck {
    /// Descriptions run on this machine with the prepared data in `data_dir`: only where the
    /// training runs do too (a cluster's nodes may have another device, and a GPU's depth).
    /// `stop` ends a description in progress (Ctrl-C).
    pub fn new(data_dir: &Path, stop: Stop) -> Self {
        ShapeCheck {
            data_dir: data_dir.to_path_buf(),
            stop,
            known: HashMap::new(),
        }
    }

    /// The shape constants that `candidate`, built as `binary`, changes without changing the
    /// model `parent` builds (other constants do not shape it). The parent is built in a slot of
    /// its own (beside `slot`), so the candidate's build stays the one its run finds. The check
    /// is a saving, not a judgement: where it cannot be made (a file that says nothing of its
    /// model, a description or build that fails) the candidate goes on to its run.
    pub fn inert(
        &mut self,
        parent: &str,
        candidate: &str,
        binary: &Path,
        slot: &str,
        confinement: Confinement,
    ) -> Option<Inert> {
        let changes = shape_changes(parent, candidate);
        if changes.is_empty() {
            return None;
        }
        let theirs = self.description(candidate, Some(binary), slot, confinement)?;
        let before = self.description(parent, None, slot, confinement)?;
        // Lines from the program's stdout and stderr arrive in either order; the first is the
        // harness's own, so a file that prints nothing of its model cannot be compared.
        let sorted = |lines: &[String]| {
            let mut lines = lines.to_vec();
            lines.sort();
            lines
        };
        if theirs.len() < 2 || sorted(&theirs) != sorted(&before) {
            return None;
        }
        let model = theirs
            .iter()
            .find(|l| l.starts_with("model"))
            .or(theirs.last());
        Some(Inert {
            changes,
            model: model.cloned().unwrap_or_default(),
        })
    }

    fn description(
        &mut self,
        text: &str,
        binary: Option<&Path>,
        slot: &str,
        confinement: Confinement,
    ) -> Option<Vec<String>> {
        let key = harness::meta::sha256_hex(text.as_bytes());
        if let Some(known) = self.known.get(&key) {
            return Some(known.clone());
        }
        let scratch = build::target_dir()
            .join("trainer-src")
            .join(format!("{slot}-describe"));
        let stop = || self.stop.requested();
        let described = match binary {
            Some(binary) => {
                describe::describe(binary, &self.data_dir, &scratch, confinement, &stop)
            }
            None => {
                let label = Path::new("train.rs (the file it changes)");
                build::build_source(text, label, &format!("{slot}-parent"), confinement).and_then(
                    |built| {
                        describe::describe(
                            &built.binary,
                            &self.data_dir,
                            &scratch,
                            confinement,
                            &stop,
                        )
                    },
                )
            }
        };
        match described {
            Ok(Some(lines)) => {
                self.known.insert(key, lines.clone());
                Some(lines)
            }
            // Not kept: a file that could not be described now (its GPU memory taken by the
            // agent's model, say) may be later.
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("no shape check: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::edit;

    fn set(text: &str, name: &str, value: &str) -> String {
        let reply = format!("IDEA: a test\nSET {name} = {value}\n");
        edit::apply(text, &edit::parse(&reply).unwrap()).unwrap()
    }

    fn change(name: &str, from: &str, to: &str) -> Change {
        Change::Set {
            name: name.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn the_width_depth_and_batch_constants_changed_are_checked_when_the_code_is_the_same() {
        let head = set(BASELINE, "HEAD_DIM", "129");
        assert_eq!(
            shape_changes(BASELINE, &head),
            [change("HEAD_DIM", "128", "129")]
        );
        let more = set(&set(&head, "DEPTH_GPU", "6"), "DEVICE_ROWS_CPU", "20");
        let with_lr = set(&more, "MATRIX_LR", "0.05");
        assert_eq!(
            shape_changes(BASELINE, &with_lr),
            [
                change("DEPTH_GPU", "8", "6"),
                change("HEAD_DIM", "128", "129"),
                change("DEVICE_ROWS_CPU", "16", "20"),
            ],
            "not the learning rate"
        );
        let code = head.replace("(depth * ASPECT_RATIO)", "(depth * ASPECT_RATIO + 2)");
        assert_eq!(shape_changes(BASELINE, &code), [], "code changed");
        assert_eq!(
            shape_changes(BASELINE, &set(BASELINE, "MATRIX_LR", "0.05")),
            []
        );
    }

    #[test]
    fn inert_changes_are_undone_and_the_rest_stays() {
        let with_lr = set(&set(BASELINE, "HEAD_DIM", "129"), "MATRIX_LR", "0.05");
        let inert = Inert {
            changes: shape_changes(BASELINE, &with_lr),
            model: "model: depth 4".into(),
        };
        assert_eq!(inert.words(), "HEAD_DIM 128 -> 129");
        assert_eq!(
            inert.undone(&with_lr),
            Some(set(BASELINE, "MATRIX_LR", "0.05"))
        );
    }
}
