//! The experiment in flight, saved after each step as the record it would become if the appliance
//! died now (outcome `interrupted`, finished runs included). On the next start it is appended to
//! the journal, so a kill -9 loses only the run that was going on.

use std::path::Path;

use super::journal::Journal;
use super::record::Record;
use super::{io, ResearchError};

pub const PENDING_FILE: &str = "pending.json";

pub fn save(dir: &Path, record: &Record) -> Result<(), ResearchError> {
    let path = dir.join(PENDING_FILE);
    let json = serde_json::to_vec_pretty(record).expect("records serialise");
    super::write_atomic(&path, &json).map_err(|source| ResearchError::JournalWrite { path, source })
}

/// The saved record, if an experiment was in flight. An unreadable file (a crash inside the
/// rename cannot make one, but a full disk can) is kept aside and ignored.
pub fn load(dir: &Path) -> Result<Option<Record>, ResearchError> {
    let path = dir.join(PENDING_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
    };
    match serde_json::from_str(&text) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            let aside = dir.join(format!("{PENDING_FILE}.unreadable"));
            tracing::warn!(
                "{} is unreadable ({e}); moved to {}",
                path.display(),
                aside.display()
            );
            std::fs::rename(&path, &aside)
                .map_err(io(format!("cannot move {} aside", path.display())))?;
            Ok(None)
        }
    }
}

/// The saved record, read without changing anything: for a watcher beside the loop, which leaves
/// an unreadable file to the loop to set aside.
pub fn peek(dir: &Path) -> Option<Record> {
    let text = std::fs::read(dir.join(PENDING_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Puts the experiment a crash left in flight into the journal, as interrupted at `now`, unless
/// it got there already; returns its number when it did now.
pub fn recover(
    dir: &Path,
    journal: &mut Journal,
    now: String,
) -> Result<Option<usize>, ResearchError> {
    let Some(mut record) = load(dir)? else {
        return Ok(None);
    };
    let recorded = journal.history().records().iter().any(|r| r.n == record.n);
    let n = record.n;
    if !recorded {
        record.finished = now;
        journal.append(record)?;
    }
    clear(dir)?;
    Ok((!recorded).then_some(n))
}

pub fn clear(dir: &Path) -> Result<(), ResearchError> {
    let path = dir.join(PENDING_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io(format!("cannot remove {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}
