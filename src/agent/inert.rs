//! A change of shape constants alone that builds the same model is refused before it trains.
//! The shape follows from integer rules (heads = round(width / HEAD_DIM), rows per pass clamped to
//! the step's tokens, the GPU's depth unused on the CPU), so many values of a shape constant build
//! one model: at width 42 every HEAD_DIM above 28 is one head of 42. A sampler that draws such a
//! value spends a whole run measuring noise, and a lucky one becomes a near-miss that later moves
//! combine again. The file's own account of its model (the harness's describe mode, a second or
//! two) says whether anything changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::edit::Rejection;
use super::ledger::{constants_of, skeleton_sha256};
use crate::confine::Confinement;
use crate::research::controller::Category;
use crate::trainer::{build, describe, TrainerError};

/// `NAME a -> b` for each constant that `candidate` changes, when the two files differ only in
/// the values of constants that set the model's width and depth or the batch; None otherwise
/// (another constant changed, or the code).
pub fn shape_changes(parent: &str, candidate: &str) -> Option<Vec<String>> {
    if skeleton_sha256(parent) != skeleton_sha256(candidate) {
        return None;
    }
    let before = constants_of(parent);
    let mut changes = Vec::new();
    for (name, value) in constants_of(candidate) {
        let old = before.get(&name)?;
        if *old == value {
            continue;
        }
        let category = Category::of_constant(&name);
        if !matches!(category, Some(Category::WidthDepth | Category::Batch)) {
            return None;
        }
        changes.push(format!("{name} {old} -> {value}"));
    }
    (!changes.is_empty()).then_some(changes)
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

    /// Why `candidate`, built as `binary`, is not worth a run: it changes shape constants of
    /// `parent` alone and builds the same model. The parent is built in a slot of its own
    /// (beside `slot`), so the candidate's build stays the one its run finds.
    pub fn inert(
        &mut self,
        parent: &str,
        candidate: &str,
        binary: &Path,
        slot: &str,
        confinement: Confinement,
    ) -> Result<Option<Rejection>, TrainerError> {
        let Some(changes) = shape_changes(parent, candidate) else {
            return Ok(None);
        };
        let Some(model) = self.description(candidate, Some(binary), slot, confinement)? else {
            return Ok(None);
        };
        let before = self.description(parent, None, slot, confinement)?;
        Ok((before.as_ref() == Some(&model)).then(|| Rejection::Inert {
            changes: changes.join(", "),
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

    #[test]
    fn only_changes_of_shape_and_batch_constants_are_checked() {
        let head = set(BASELINE, "HEAD_DIM", "129");
        assert_eq!(
            shape_changes(BASELINE, &head),
            Some(vec!["HEAD_DIM 128 -> 129".to_string()])
        );
        let both = set(&set(&head, "DEPTH_GPU", "6"), "DEVICE_ROWS_CPU", "20");
        assert_eq!(
            shape_changes(BASELINE, &both).map(|c| c.len()),
            Some(3),
            "width, depth and batch constants together"
        );
        let with_lr = set(&head, "MATRIX_LR", "0.05");
        assert_eq!(
            shape_changes(BASELINE, &with_lr),
            None,
            "a learning rate too"
        );
        let code = head.replace("(depth * ASPECT_RATIO)", "(depth * ASPECT_RATIO + 2)");
        assert_eq!(shape_changes(BASELINE, &code), None, "code changed");
        assert_eq!(shape_changes(BASELINE, BASELINE), None, "nothing changed");
    }
}
