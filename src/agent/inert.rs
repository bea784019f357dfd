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
use super::ledger::{constants_of, skeleton_sha256};
use crate::confine::Confinement;
use crate::research::controller::Category;
use crate::trainer::{build, describe, TrainerError};

/// A constant's value in the parent and in the candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// Each width, depth or batch constant that `candidate` changes, when the two files have the same
/// code (skeleton); none when the code differs.
pub fn shape_changes(parent: &str, candidate: &str) -> Vec<Change> {
    if skeleton_sha256(parent) != skeleton_sha256(candidate) {
        return Vec::new();
    }
    let before = constants_of(parent);
    constants_of(candidate)
        .into_iter()
        .filter(|(name, _)| {
            matches!(
                Category::of_constant(name),
                Some(Category::WidthDepth | Category::Batch)
            )
        })
        .filter_map(|(name, to)| {
            let from = before.get(&name)?.clone();
            (from != to).then_some(Change { name, from, to })
        })
        .collect()
}

/// Shape changes that build the parent's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Inert {
    pub changes: Vec<Change>,
    /// The last line of the model's description (the baseline's model line).
    pub model: String,
}

impl Inert {
    /// `NAME a -> b, ...`
    pub fn words(&self) -> String {
        let changes: Vec<String> = self
            .changes
            .iter()
            .map(|c| format!("{} {} -> {}", c.name, c.from, c.to))
            .collect();
        changes.join(", ")
    }

    /// `candidate` with these constants back at the parent's values.
    pub fn undone(&self, candidate: &str) -> String {
        let back = Proposal {
            idea: String::new(),
            edits: self
                .changes
                .iter()
                .map(|c| Edit::Set {
                    name: c.name.clone(),
                    value: c.from.clone(),
                })
                .collect(),
        };
        edit::apply(candidate, &back).expect("the constants were read from this file")
    }
}

/// Describes candidates and their parents, each file once.
pub struct ShapeCheck {
    data_dir: PathBuf,
    /// What each file (by hash) printed before its first batch; None: it could not be described.
    known: HashMap<String, Option<Vec<String>>>,
}

impl ShapeCheck {
    /// Descriptions run on this machine with the prepared data in `data_dir`: only where the
    /// training runs do too (a cluster's nodes may have another device, and a GPU's depth).
    pub fn new(data_dir: &Path) -> Self {
        ShapeCheck {
            data_dir: data_dir.to_path_buf(),
            known: HashMap::new(),
        }
    }

    /// The shape constants that `candidate`, built as `binary`, changes without changing the
    /// model `parent` builds (other constants do not shape it). The parent is built in a slot of
    /// its own (beside `slot`), so the candidate's build stays the one its run finds.
    pub fn inert(
        &mut self,
        parent: &str,
        candidate: &str,
        binary: &Path,
        slot: &str,
        confinement: Confinement,
    ) -> Result<Option<Inert>, TrainerError> {
        let changes = shape_changes(parent, candidate);
        if changes.is_empty() {
            return Ok(None);
        }
        let Some(model) = self.description(candidate, Some(binary), slot, confinement)? else {
            return Ok(None);
        };
        let before = self.description(parent, None, slot, confinement)?;
        Ok((before.as_ref() == Some(&model)).then(|| Inert {
            changes,
            model: model.last().cloned().unwrap_or_default(),
        }))
    }

    fn description(
        &mut self,
        text: &str,
        binary: Option<&Path>,
        slot: &str,
        confinement: Confinement,
    ) -> Result<Option<Vec<String>>, TrainerError> {
        let key = harness::meta::sha256_hex(text.as_bytes());
        if let Some(known) = self.known.get(&key) {
            return Ok(known.clone());
        }
        let scratch = build::target_dir()
            .join("trainer-src")
            .join(format!("{slot}-describe"));
        let described = match binary {
            Some(binary) => describe::describe(binary, &self.data_dir, &scratch, confinement)?,
            None => {
                let label = Path::new("train.rs (the file it changes)");
                let built =
                    build::build_source(text, label, &format!("{slot}-parent"), confinement)?;
                describe::describe(&built.binary, &self.data_dir, &scratch, confinement)?
            }
        };
        self.known.insert(key, described.clone());
        Ok(described)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::edit;

    const BASELINE: &str = include_str!("../../train/src/train.rs");

    fn set(text: &str, name: &str, value: &str) -> String {
        let reply = format!("IDEA: a test\nSET {name} = {value}\n");
        edit::apply(text, &edit::parse(&reply).unwrap()).unwrap()
    }

    fn change(name: &str, from: &str, to: &str) -> Change {
        Change {
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
                change("DEVICE_ROWS_CPU", "16", "20"),
                change("HEAD_DIM", "128", "129"),
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
        assert_eq!(inert.undone(&with_lr), set(BASELINE, "MATRIX_LR", "0.05"));
    }
}
