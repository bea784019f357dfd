//! Every training file tried, so that no training time goes to one twice: the same file (by
//! hash), or a near-duplicate of one, which has the same code (skeleton) and every constant equal
//! to the tried file's or, for real numbers, within `FLOAT_TOLERANCE` of it. The reason goes back
//! to the agent like any other rejection.

use std::collections::{BTreeMap, HashSet};

use super::edit::{constants, Rejection};

/// Real-valued constants closer than this, relatively, count as the same value: a learning rate
/// of 0.041 after 0.04 is no new experiment. Whole numbers must match exactly.
pub const FLOAT_TOLERANCE: f64 = 0.05;

/// A training file's constants by name.
pub type Constants = BTreeMap<String, String>;

pub fn constants_of(text: &str) -> Constants {
    constants(text)
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect()
}

/// The file with every top-level constant's value blanked, hashed: two files with the same
/// skeleton differ in constant values only.
pub fn skeleton_sha256(text: &str) -> String {
    let names: Vec<String> = constants(text).into_iter().map(|c| c.name).collect();
    let skeleton: String = text
        .lines()
        .map(|line| {
            let blanked = names
                .iter()
                .find(|n| line.starts_with(&format!("const {n}:")))
                .map(|n| format!("const {n} = _;"));
            blanked.unwrap_or_else(|| line.trim_end().to_string()) + "\n"
        })
        .collect();
    harness::meta::sha256_hex(skeleton.as_bytes())
}

/// A tried file, as the journal keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    /// How the agent is told of it: `e0012`, `the baseline`, `an earlier proposal`.
    pub label: String,
    pub sha256: String,
    /// With the constants, for near-duplicates; None for a file known only by its hash.
    pub skeleton: Option<String>,
    pub constants: Constants,
}

impl Tried {
    pub fn of(label: &str, text: &str) -> Self {
        Tried {
            label: label.to_string(),
            sha256: harness::meta::sha256_hex(text.as_bytes()),
            skeleton: Some(skeleton_sha256(text)),
            constants: constants_of(text),
        }
    }
}

#[derive(Default, Clone)]
pub struct Ledger {
    hashes: HashSet<String>,
    files: Vec<Tried>,
}

impl Ledger {
    pub fn insert(&mut self, tried: Tried) {
        self.hashes.insert(tried.sha256.clone());
        if tried.skeleton.is_some() {
            self.files.push(tried);
        }
    }

    /// Why `text` is not worth training: already tried, or too close to a tried file.
    pub fn check(&self, text: &str) -> Result<(), Rejection> {
        if self
            .hashes
            .contains(&harness::meta::sha256_hex(text.as_bytes()))
        {
            return Err(Rejection::AlreadyTried);
        }
        let skeleton = skeleton_sha256(text);
        let values = constants_of(text);
        for tried in &self.files {
            if tried.skeleton.as_deref() != Some(skeleton.as_str()) {
                continue;
            }
            if let Some(detail) = near(&values, &tried.constants) {
                return Err(Rejection::NearDuplicate {
                    of: tried.label.clone(),
                    detail,
                });
            }
        }
        Ok(())
    }

    /// Checks `text` and records it as tried under `label`.
    pub fn claim(&mut self, text: &str, label: &str) -> Result<(), Rejection> {
        self.check(text)?;
        self.insert(Tried::of(label, text));
        Ok(())
    }

    /// Whether `text` itself was tried (tests check a draft leaves no trace).
    #[cfg(test)]
    pub fn contains(&self, text: &str) -> bool {
        self.hashes
            .contains(&harness::meta::sha256_hex(text.as_bytes()))
    }
}

/// When every constant of `a` is `b`'s or close to it: the closest pairs, described.
fn near(a: &Constants, b: &Constants) -> Option<String> {
    if a.len() != b.len() {
        return None;
    }
    let mut close = Vec::new();
    for (name, value) in a {
        let other = b.get(name)?;
        if value == other {
            continue;
        }
        let (x, y) = (value.parse::<f64>().ok()?, other.parse::<f64>().ok()?);
        let is_float = value.contains(['.', 'e']) || other.contains(['.', 'e']);
        if !is_float || (x - y).abs() > FLOAT_TOLERANCE * x.abs().max(y.abs()) {
            return None;
        }
        close.push(format!("{name} {value} is within 5% of {other}"));
    }
    Some(if close.is_empty() {
        "every constant is the same".into()
    } else {
        close.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str =
        "const LR: f64 = 0.04;\nconst ROWS: usize = 16;\n\nfn f() {\n    let a = 1;\n}\n";

    #[test]
    fn the_same_file_and_near_duplicates_are_refused_with_the_reason() {
        let mut ledger = Ledger::default();
        ledger.claim(FILE, "the baseline").unwrap();
        assert_eq!(ledger.check(FILE), Err(Rejection::AlreadyTried));
        // 0.041 is within 5% of 0.04.
        let close = FILE.replace("0.04", "0.041");
        let Err(Rejection::NearDuplicate { of, detail }) = ledger.check(&close) else {
            panic!("a near-duplicate")
        };
        assert_eq!(of, "the baseline");
        assert_eq!(detail, "LR 0.041 is within 5% of 0.04");
        assert!(ledger.check(&FILE.replace("0.04", "0.05")).is_ok());
        // Whole numbers must match exactly; code changes are new whatever the values.
        assert!(ledger.check(&FILE.replace("16", "17")).is_ok());
        assert!(ledger
            .check(&close.replace("let a = 1;", "let a = 2;"))
            .is_ok());
        // A file known by its hash only (an older journal) refuses that file only.
        let mut old = Ledger::default();
        old.insert(Tried {
            skeleton: None,
            ..Tried::of("e0003", FILE)
        });
        assert_eq!(old.check(FILE), Err(Rejection::AlreadyTried));
        assert!(old.check(&close).is_ok());
    }

    #[test]
    fn the_skeleton_ignores_values_only() {
        let set = FILE.replace("16", "32");
        assert_eq!(skeleton_sha256(FILE), skeleton_sha256(&set));
        assert_ne!(
            skeleton_sha256(FILE),
            skeleton_sha256(&FILE.replace("a = 1", "a = 3"))
        );
        assert_eq!(constants_of(&set)["ROWS"], "32");
    }
}
