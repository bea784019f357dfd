//! Reading a corpus: the embedded default, or the user's plain-text files and folders, JSONL files
//! with a `text` field, and parquet shards with a `text` column (the reference's format).

use std::fs;
use std::path::{Path, PathBuf};

use harness::meta::sha256_hex;
use sha2::{Digest, Sha256};

use super::DataError;

/// The State of the Union addresses 1790-2021 and Moby-Dick, as JSONL (zstd), with pinned
/// validation documents. See `corpus/README.md` for provenance and licence.
const DEFAULT_CORPUS: &[u8] = include_bytes!("../../corpus/default.jsonl.zst");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub text: String,
    /// A split pinned by the corpus itself; others are assigned by `prepare`.
    pub split: Option<Split>,
}

/// A corpus read into memory, with a fingerprint of exactly what was read.
pub struct Corpus {
    pub sources: Vec<String>,
    pub documents: Vec<Document>,
    pub fingerprint: String,
}

impl Corpus {
    pub fn embedded() -> Result<Self, DataError> {
        let jsonl = zstd::decode_all(DEFAULT_CORPUS).map_err(|e| DataError::Unreadable {
            path: PathBuf::from("<embedded corpus>"),
            reason: e.to_string(),
        })?;
        let text = String::from_utf8(jsonl)
            .map_err(|_| DataError::NotText(PathBuf::from("<embedded corpus>")))?;
        let documents = parse_jsonl(&text, Path::new("<embedded corpus>"))?;
        Ok(Self {
            sources: vec!["embedded:default".into()],
            documents,
            fingerprint: sha256_hex(DEFAULT_CORPUS),
        })
    }

    /// Reads every path: files by their extension, folders recursively in name order.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self, DataError> {
        let mut files = Vec::new();
        for path in paths {
            if !path.exists() {
                return Err(DataError::MissingCorpus(path.clone()));
            }
            collect_files(path, &mut files)?;
        }
        let mut hasher = Sha256::new();
        let mut documents = Vec::new();
        for file in &files {
            let bytes = fs::read(file).map_err(|e| DataError::Unreadable {
                path: file.clone(),
                reason: e.to_string(),
            })?;
            hasher.update(file.to_string_lossy().as_bytes());
            hasher.update(&bytes);
            documents.extend(read_file(file, bytes)?);
        }
        let sources: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        if documents.iter().all(|d| d.text.trim().is_empty()) {
            return Err(DataError::EmptyCorpus(sources.join(", ")));
        }
        Ok(Self {
            sources,
            documents,
            fingerprint: format!("{:x}", hasher.finalize()),
        })
    }

    pub fn text_bytes(&self) -> u64 {
        self.documents.iter().map(|d| d.text.len() as u64).sum()
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(path)
        .map_err(unreadable)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            collect_files(&entry, out)?;
        }
    }
    Ok(())
}

fn read_file(path: &Path, bytes: Vec<u8>) -> Result<Vec<Document>, DataError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "parquet" => read_parquet(path, bytes),
        "jsonl" | "ndjson" => parse_jsonl(&to_text(path, bytes)?, path),
        _ => Ok(vec![Document {
            text: to_text(path, bytes)?,
            split: None,
        }]),
    }
}

fn to_text(path: &Path, bytes: Vec<u8>) -> Result<String, DataError> {
    // A NUL byte is the usual sign of a binary file that happens to be valid UTF-8.
    if bytes.contains(&0) {
        return Err(DataError::NotText(path.to_path_buf()));
    }
    String::from_utf8(bytes).map_err(|_| DataError::NotText(path.to_path_buf()))
}

fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Document>, DataError> {
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DataError::Unreadable {
            path: path.to_path_buf(),
            reason: format!("line {}: {reason}", i + 1),
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let text = value
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("no string field \"text\"".into()))?;
        let split = match value.get("split").and_then(|s| s.as_str()) {
            Some("val") => Some(Split::Val),
            Some("train") => Some(Split::Train),
            _ => None,
        };
        docs.push(Document {
            text: text.to_string(),
            split,
        });
    }
    Ok(docs)
}

fn read_parquet(path: &Path, bytes: Vec<u8>) -> Result<Vec<Document>, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let bad = |reason: String| DataError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))
        .map_err(|e| bad(format!("not a parquet file ({e})")))?;
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let has_text = schema.columns().iter().any(|c| c.name() == "text");
    if !has_text {
        return Err(bad("no column named \"text\"".into()));
    }
    let mut docs = Vec::new();
    for row in reader.get_row_iter(None).map_err(|e| bad(e.to_string()))? {
        let row = row.map_err(|e| bad(e.to_string()))?;
        for (name, field) in row.get_column_iter() {
            if name == "text" {
                if let Field::Str(text) = field {
                    docs.push(Document {
                        text: text.clone(),
                        split: None,
                    });
                }
            }
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_corpus_has_pinned_validation_documents() {
        let corpus = Corpus::embedded().unwrap();
        assert!(corpus.documents.len() > 300);
        let val = corpus
            .documents
            .iter()
            .filter(|d| d.split == Some(Split::Val))
            .count();
        assert!(val >= 30, "{val} validation documents");
        assert!(corpus.text_bytes() > 10_000_000);
    }
}
