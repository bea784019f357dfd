//! The journal of a research run: `experiments.jsonl`, append-only and fsync'd, one full record
//! per experiment, is the single source of truth; `results.tsv`, in the reference's exact format
//! (so its analysis tools read it), is rebuilt from it after every record.
//!
//! One parser reads it, for the loop and for `report` alike: a bad line in the middle is an
//! error (nothing writes one, so it is damage to look at, not to skip); a torn last line is what
//! a crash during a write leaves, or a write in progress. The loop moves a torn line aside
//! (nothing is deleted) and goes on with the complete records; `report` reads past it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::history::History;
use super::record::Record;
use super::{io, ResearchError};

pub const JOURNAL_FILE: &str = "experiments.jsonl";
pub const RESULTS_FILE: &str = "results.tsv";
pub const RESULTS_HEADER: &str = "commit\tval_bpb\tmemory_gb\tstatus\tdescription";

/// A journal's text, parsed.
struct Parsed {
    records: Vec<Record>,
    /// Bytes of the complete lines.
    good_len: usize,
    /// A last line without its newline or that does not parse.
    torn: Option<Vec<u8>>,
}

fn parse(path: &Path, text: &[u8]) -> Result<Parsed, ResearchError> {
    let mut records = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let complete = line.ends_with(b"\n");
        let parsed = std::str::from_utf8(line)
            .ok()
            .and_then(|l| Record::from_line(l.trim_end()).ok());
        match parsed {
            Some(record) if complete => {
                records.push(record);
                offset += line.len();
            }
            _ if offset + line.len() == text.len() => {
                return Ok(Parsed {
                    records,
                    good_len: offset,
                    torn: Some(line.to_vec()),
                });
            }
            _ => {
                return Err(ResearchError::CorruptJournal {
                    path: path.to_path_buf(),
                    line: records.len() + 1,
                })
            }
        }
    }
    Ok(Parsed {
        records,
        good_len: offset,
        torn: None,
    })
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, ResearchError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Reads a journal without repairing it (for `report`, which may run beside a live loop).
pub fn read(dir: &Path) -> Result<Vec<Record>, ResearchError> {
    let path = dir.join(JOURNAL_FILE);
    let bytes = read_bytes(&path)?.ok_or_else(|| ResearchError::NoJournal(dir.to_path_buf()))?;
    Ok(parse(&path, &bytes)?.records)
}

pub struct Journal {
    dir: PathBuf,
    file: File,
    records: Vec<Record>,
}

impl Journal {
    /// Opens (or starts) the journal in `dir`. A torn last line is moved to a side file, whose
    /// path is returned.
    pub fn open(dir: &Path) -> Result<(Self, Option<PathBuf>), ResearchError> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let path = dir.join(JOURNAL_FILE);
        let bytes = read_bytes(&path)?.unwrap_or_default();
        let parsed = parse(&path, &bytes)?;
        let torn_path = match parsed.torn {
            Some(line) => Some(set_aside(dir, &path, &line, parsed.good_len)?),
            None => None,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            file,
            records: parsed.records,
        };
        journal.write_results()?;
        Ok((journal, torn_path))
    }

    pub fn history(&self) -> History<'_> {
        History::new(&self.records)
    }

    /// Appends a record durably, then rebuilds results.tsv from the whole journal.
    pub fn append(&mut self, record: Record) -> Result<(), ResearchError> {
        let mut line = serde_json::to_string(&record).expect("records serialise");
        line.push('\n');
        let path = self.dir.join(JOURNAL_FILE);
        // One write call, then fsync: a crash leaves at most a torn last line, which `open` repairs.
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|source| ResearchError::JournalWrite {
                path: path.clone(),
                source,
            })?;
        self.records.push(record);
        self.write_results()
    }

    /// results.tsv, written to a temporary file and renamed, so readers never see half of it.
    fn write_results(&self) -> Result<(), ResearchError> {
        let mut text = format!("{RESULTS_HEADER}\n");
        for row in self.records.iter().filter_map(Record::tsv_row) {
            text.push_str(&row);
            text.push('\n');
        }
        let path = self.dir.join(RESULTS_FILE);
        super::write_atomic(&path, text.as_bytes())
            .map_err(|source| ResearchError::JournalWrite { path, source })
    }
}

/// Saves a torn last line to a side file and cuts the journal back to its complete lines.
fn set_aside(
    dir: &Path,
    path: &Path,
    line: &[u8],
    good_len: usize,
) -> Result<PathBuf, ResearchError> {
    let side = dir.join(format!(
        "{JOURNAL_FILE}.torn-{}",
        jiff::Timestamp::now().as_second()
    ));
    std::fs::write(&side, line).map_err(io(format!(
        "cannot save the torn line to {}",
        side.display()
    )))?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(format!("cannot open {}", path.display())))?;
    f.set_len(good_len as u64)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("cannot repair {}", path.display())))?;
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::record;
    use super::super::record::Outcome;
    use super::*;

    #[test]
    fn results_tsv_is_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, torn) = Journal::open(dir.path()).unwrap();
        assert!(torn.is_none());
        journal
            .append(record(0, Outcome::Keep, Some(1.79306712)))
            .unwrap();
        journal.append(record(1, Outcome::Crash, None)).unwrap();
        journal
            .append(record(2, Outcome::Discard, Some(1.8)))
            .unwrap();
        let tsv = std::fs::read_to_string(dir.path().join(RESULTS_FILE)).unwrap();
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(
            lines,
            [
                RESULTS_HEADER,
                "0000000\t1.793067\t2.0\tkeep\tbaseline",
                "0000001\t0.000000\t0.0\tcrash\tidea 1 with a tab",
                "0000002\t1.800000\t2.0\tdiscard\tidea 2 with a tab",
            ]
        );
    }

    #[test]
    fn a_torn_last_line_is_set_aside_by_the_loop_and_read_past_by_the_report() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _) = Journal::open(dir.path()).unwrap();
            journal.append(record(0, Outcome::Keep, Some(1.9))).unwrap();
            journal
                .append(record(1, Outcome::Discard, Some(2.0)))
                .unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"n\":2,\"outcome\":\"ke").unwrap();
        drop(f);
        // The reader reads past it while a loop may be writing.
        assert_eq!(read(dir.path()).unwrap().len(), 2);
        let (mut journal, torn) = Journal::open(dir.path()).unwrap();
        let torn = torn.expect("the torn line is reported");
        assert_eq!(
            std::fs::read_to_string(torn).unwrap(),
            "{\"n\":2,\"outcome\":\"ke"
        );
        assert_eq!(journal.history().records().len(), 2);
        journal.append(record(2, Outcome::Keep, Some(1.8))).unwrap();
        let (journal, torn) = Journal::open(dir.path()).unwrap();
        assert!(torn.is_none());
        assert_eq!(
            journal
                .history()
                .records()
                .iter()
                .map(|r| r.n)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    /// The same policy for the loop and the report: damage in the middle is named, not skipped.
    #[test]
    fn a_bad_line_in_the_middle_is_an_error_for_the_loop_and_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&record(0, Outcome::Keep, Some(1.9))).unwrap();
        std::fs::write(
            dir.path().join(JOURNAL_FILE),
            format!("{good}\ngarbage\n{good}\n"),
        )
        .unwrap();
        let err = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = read(dir.path()).err().unwrap().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
