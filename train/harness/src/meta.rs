//! The prepared data on disk: `meta.json` describes token shards (little-endian u16 ids, each
//! document starting with BOS), the per-token byte-length table and the tokenizer, each with its
//! SHA-256 so that a corrupt or truncated file is caught before any training time is spent.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io, HarnessError, Result};
use crate::profile::Profile;

pub const META_FILE: &str = "meta.json";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name inside the data directory.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// Where the text came from (`embedded:default` or the paths given to `prepare`).
    pub sources: Vec<String>,
    /// SHA-256 over the corpus inputs, so `prepare` knows when it has nothing to do.
    pub fingerprint: String,
    pub documents: usize,
    pub text_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataMeta {
    pub format_version: u32,
    pub profile: Profile,
    pub corpus: CorpusInfo,
    pub tokenizer: FileInfo,
    /// One little-endian u16 per token id: the exact number of bytes the token stands for.
    pub token_bytes: FileInfo,
    pub train_shards: Vec<FileInfo>,
    pub val_shards: Vec<FileInfo>,
    pub train_tokens: u64,
    pub val_tokens: u64,
    /// Tokens the evaluation scores: the profile's figure, capped by the validation split.
    pub eval_tokens: usize,
}

impl DataMeta {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(META_FILE);
        if !path.exists() {
            return Err(HarnessError::NotPrepared {
                dir: dir.to_path_buf(),
            });
        }
        let text = fs::read_to_string(&path).map_err(|e| HarnessError::CorruptMeta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let meta: Self = serde_json::from_str(&text).map_err(|e| HarnessError::CorruptMeta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if meta.format_version != FORMAT_VERSION {
            return Err(HarnessError::CorruptMeta {
                path,
                reason: format!(
                    "format version {} where this build reads {FORMAT_VERSION}",
                    meta.format_version
                ),
            });
        }
        Ok(meta)
    }

    /// Written last and atomically: its presence means the whole data directory is complete.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("metadata serialises");
        write_atomic(&dir.join(META_FILE), json.as_bytes())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Writes through a temporary file and a rename, so a crash never leaves a half-written file
/// under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let what = format!("cannot write {}", path.display());
    let mut f = fs::File::create(&tmp).map_err(io(what.clone()))?;
    f.write_all(bytes).map_err(io(what.clone()))?;
    f.sync_all().map_err(io(what.clone()))?;
    fs::rename(&tmp, path).map_err(io(what))
}

/// Writes a token shard and returns its description for the metadata.
pub fn write_tokens(dir: &Path, file: &str, tokens: &[u16]) -> Result<FileInfo> {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    write_file(dir, file, &bytes)
}

pub fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> Result<FileInfo> {
    write_atomic(&dir.join(file), bytes)?;
    Ok(FileInfo {
        file: file.to_string(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    })
}

/// Reads a file named by the metadata and checks its size and checksum.
pub fn read_checked(dir: &Path, info: &FileInfo) -> Result<Vec<u8>> {
    let path: PathBuf = dir.join(&info.file);
    let bytes = fs::read(&path).map_err(|e| HarnessError::CorruptData {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if bytes.len() as u64 != info.bytes {
        return Err(HarnessError::CorruptData {
            path,
            reason: format!("{} bytes where {} were written", bytes.len(), info.bytes),
        });
    }
    if sha256_hex(&bytes) != info.sha256 {
        return Err(HarnessError::CorruptData {
            path,
            reason: "checksum mismatch".into(),
        });
    }
    Ok(bytes)
}

pub fn read_u16s(dir: &Path, info: &FileInfo) -> Result<Vec<u16>> {
    let bytes = read_checked(dir, info)?;
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// All the token shards of one split, concatenated.
pub fn read_split(dir: &Path, shards: &[FileInfo]) -> Result<Vec<u16>> {
    let mut tokens = Vec::new();
    for shard in shards {
        tokens.extend(read_u16s(dir, shard)?);
    }
    Ok(tokens)
}
