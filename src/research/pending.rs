//! The experiment in flight, saved after each step as the record it would become if the appliance
//! died now (outcome `interrupted`, finished runs included). On the next start it is appended to
//! the journal, so a kill -9 loses only the run that was going on. With several workers, a
//! round's experiments are in flight together: the file then holds a list of them.

use std::path::Path;

use super::journal::Journal;
use super::record::Record;
use super::{io, ResearchError};

pub const PENDING_FILE: &str = "pending.json";

/// One experiment in flight, or a round of them.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum InFlight {
    One(Box<Record>),
    Round(Vec<Record>),
}

impl InFlight {
    fn records(self) -> Vec<Record> {
        match self {
            InFlight::One(record) => vec![*record],
            InFlight::Round(records) => records,
        }
    }
}

pub fn save(dir: &Path, record: &Record) -> Result<(), ResearchError> {
    write(dir, &InFlight::One(Box::new(record.clone())))
}

/// A round's experiments in flight together.
pub fn save_round(dir: &Path, records: &[Record]) -> Result<(), ResearchError> {
    write(dir, &InFlight::Round(records.to_vec()))
}

fn write(dir: &Path, in_flight: &InFlight) -> Result<(), ResearchError> {
    let path = dir.join(PENDING_FILE);
    let json = serde_json::to_vec_pretty(in_flight).expect("records serialise");
    super::write_atomic(&path, &json).map_err(|source| ResearchError::JournalWrite { path, source })
}

/// The saved record, if an experiment was in flight (the first of a round).
pub fn load(dir: &Path) -> Result<Option<Record>, ResearchError> {
    Ok(load_all(dir)?.into_iter().next())
}

/// The saved records, if experiments were in flight. An unreadable file (a crash inside the
/// rename cannot make one, but a full disk can) is kept aside and ignored.
pub fn load_all(dir: &Path) -> Result<Vec<Record>, ResearchError> {
    let path = dir.join(PENDING_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
    };
    match serde_json::from_str::<InFlight>(&text) {
        Ok(in_flight) => Ok(in_flight.records()),
        Err(e) => {
            let aside = dir.join(format!("{PENDING_FILE}.unreadable"));
            tracing::warn!(
                "{} is unreadable ({e}); moved to {}",
                path.display(),
                aside.display()
            );
            std::fs::rename(&path, &aside)
                .map_err(io(format!("cannot move {} aside", path.display())))?;
            Ok(Vec::new())
        }
    }
}

/// The saved record, read without changing anything: for a watcher beside the loop, which leaves
/// an unreadable file to the loop to set aside.
pub fn peek(dir: &Path) -> Option<Record> {
    let text = std::fs::read(dir.join(PENDING_FILE)).ok()?;
    let in_flight: InFlight = serde_json::from_slice(&text).ok()?;
    in_flight.records().into_iter().next()
}

/// Puts the experiments a crash left in flight into the journal, as interrupted at `now`, unless
/// they got there already; returns the numbers of those it put there now.
pub fn recover(
    dir: &Path,
    journal: &mut Journal,
    now: String,
) -> Result<Vec<usize>, ResearchError> {
    let mut recovered = Vec::new();
    for mut record in load_all(dir)? {
        let recorded = journal.history().records().iter().any(|r| r.n == record.n);
        if !recorded {
            recovered.push(record.n);
            record.finished = now.clone();
            journal.append(record)?;
        }
    }
    clear(dir)?;
    Ok(recovered)
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
