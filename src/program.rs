//! `program.md`, the research protocol the human edits.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The protocol next to the appliance's sources.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("program.md")
}

/// The protocol as last read: re-read before every proposal (the human may edit it during the
/// night), and kept when a new read fails.
pub struct Protocol(String);

impl Protocol {
    /// Reads it a first time; a missing or empty one is an error.
    pub fn load(path: &Path) -> Result<Self> {
        load(Some(path)).map(Protocol)
    }

    /// The protocol read anew, or the last one with the reason the read failed.
    pub fn reread(&mut self, path: &Path) -> (String, Option<anyhow::Error>) {
        match load(Some(path)) {
            Ok(text) => {
                self.0 = text;
                (self.0.clone(), None)
            }
            Err(e) => (self.0.clone(), Some(e)),
        }
    }
}

/// Reads the protocol; a missing or empty one is an error that says what to do.
pub fn load(path: Option<&Path>) -> Result<String> {
    let path = path.map_or_else(default_path, Path::to_path_buf);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the research protocol {}: restore program.md or pass --program",
            path.display()
        )
    })?;
    if text.trim().is_empty() {
        bail!(
            "the research protocol {} is empty: write the agent's instructions in it",
            path.display()
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_protocols_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("program.md");
        let err = load(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("restore program.md or pass --program"),
            "{err}"
        );
        std::fs::write(&missing, " \n").unwrap();
        let err = load(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        assert!(load(None).unwrap().contains("val_bpb"));
    }
}
