//! `prepare`: corpus -> documents -> tokenizer -> token shards, byte-length table and metadata.
//! Idempotent: the same corpus and profile find the work already done.

use std::fs;
use std::path::{Path, PathBuf};

use harness::meta::{self, CorpusInfo, DataMeta, FileInfo, FORMAT_VERSION, META_FILE};
use harness::profile::{Profile, BOS_ID};
use harness::rng::Rng;
use indicatif::{ProgressBar, ProgressStyle};

use super::chunk::chunk;
use super::corpus::{Corpus, Split};
use super::{tokenizer, DataError};

/// Tokens per shard file.
const SHARD_TOKENS: usize = 1 << 24;
/// One document in this many goes to validation when the corpus pins none.
const VAL_EVERY: usize = 10;
const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKEN_BYTES_FILE: &str = "token_bytes.bin";

pub struct PrepareRequest {
    pub data_dir: PathBuf,
    pub profile: Profile,
    /// Empty: the embedded default corpus.
    pub corpus: Vec<PathBuf>,
    pub force: bool,
}

pub enum Prepared {
    AlreadyDone(DataMeta),
    Written(DataMeta),
}

pub fn prepare(req: &PrepareRequest) -> Result<Prepared, DataError> {
    let corpus = if req.corpus.is_empty() {
        Corpus::embedded()?
    } else {
        Corpus::from_paths(&req.corpus)?
    };
    let fingerprint = meta::sha256_hex(
        format!(
            "{}:{}:{:?}",
            corpus.fingerprint, FORMAT_VERSION, req.profile
        )
        .as_bytes(),
    );
    if req.data_dir.join(META_FILE).exists() {
        match DataMeta::load(&req.data_dir) {
            Ok(existing) if existing.corpus.fingerprint == fingerprint => {
                return Ok(Prepared::AlreadyDone(existing))
            }
            Ok(existing) if !req.force => {
                return Err(DataError::DifferentDataset {
                    dir: req.data_dir.clone(),
                    existing: format!(
                        "profile {}, corpus {}",
                        existing.profile.name,
                        existing.corpus.sources.join(", ")
                    ),
                })
            }
            // Replaced below: forced, or corrupt metadata (which only a rebuild can mend).
            _ => {}
        }
    }
    fs::create_dir_all(&req.data_dir).map_err(|e| DataError::Unreadable {
        path: req.data_dir.clone(),
        reason: format!("cannot create the data directory: {e}"),
    })?;
    // Until the new metadata is written, the directory reads as not prepared.
    let _ = fs::remove_file(req.data_dir.join(META_FILE));

    let profile = &req.profile;
    let (train_docs, val_docs) = split_documents(&corpus, profile.max_doc_bytes)?;

    let spinner = ProgressBar::new_spinner().with_message(format!(
        "training a {}-token BPE tokenizer on {:.1} MB",
        profile.vocab_size,
        train_docs.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let tok = tokenizer::train(train_docs.iter().map(String::as_str), profile.vocab_size)?;
    spinner.finish_and_clear();
    let tokenizer_path = req.data_dir.join(TOKENIZER_FILE);
    tok.save(&tokenizer_path, false).map_err(|e| {
        DataError::Tokenizer(format!("cannot save {}: {e}", tokenizer_path.display()))
    })?;
    let tokenizer_info = file_info(&req.data_dir, TOKENIZER_FILE)?;

    let token_bytes = tokenizer::token_byte_lengths(&tok, profile.vocab_size);
    let token_bytes_info = meta::write_tokens(&req.data_dir, TOKEN_BYTES_FILE, &token_bytes)?;

    let bar = ProgressBar::new((train_docs.len() + val_docs.len()) as u64).with_style(
        ProgressStyle::with_template("tokenizing {bar:40} {pos}/{len} documents ({eta})")
            .expect("valid template"),
    );
    let train_tokens = tokenize(&tok, &train_docs, &bar)?;
    let val_tokens = tokenize(&tok, &val_docs, &bar)?;
    bar.finish_and_clear();

    let train_shards = write_shards(&req.data_dir, "train", &train_tokens)?;
    let val_shards = write_shards(&req.data_dir, "val", &val_tokens)?;

    let wanted_rows = profile.eval_tokens / profile.seq_len;
    let rows = harness::loader::validation_rows(&val_tokens, profile.seq_len, wanted_rows).len();
    if rows == 0 {
        return Err(DataError::TooSmall(format!(
            "the validation split ({} tokens) does not fill one row of {} tokens",
            val_tokens.len(),
            profile.seq_len + 1
        )));
    }
    if rows < wanted_rows {
        eprintln!(
            "note: the validation split holds {} rows of {} tokens; the {} profile asks for {}: evaluating on {} tokens",
            rows, profile.seq_len, profile.name, wanted_rows, rows * profile.seq_len
        );
    }

    let meta = DataMeta {
        format_version: FORMAT_VERSION,
        profile: profile.clone(),
        corpus: CorpusInfo {
            sources: corpus.sources.clone(),
            fingerprint,
            documents: corpus.documents.len(),
            text_bytes: corpus.text_bytes(),
        },
        tokenizer: tokenizer_info,
        token_bytes: token_bytes_info,
        train_shards,
        val_shards,
        train_tokens: train_tokens.len() as u64,
        val_tokens: val_tokens.len() as u64,
        eval_tokens: rows * profile.seq_len,
    };
    meta.save(&req.data_dir)?;
    Ok(Prepared::Written(meta))
}

/// Cuts documents into chunks and assigns each to a split: pinned by the corpus, else whole
/// documents one in ten, else (fewer than ten documents) one chunk in ten. Training chunks are
/// shuffled with a fixed seed so a short run sees the whole corpus, not its first years.
fn split_documents(
    corpus: &Corpus,
    max_bytes: usize,
) -> Result<(Vec<String>, Vec<String>), DataError> {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    let by_document = corpus.documents.len() >= VAL_EVERY;
    let mut chunk_index = 0;
    for (i, doc) in corpus.documents.iter().enumerate() {
        for piece in chunk(&doc.text, max_bytes) {
            let split = doc.split.unwrap_or(if by_document {
                if i % VAL_EVERY == VAL_EVERY - 1 {
                    Split::Val
                } else {
                    Split::Train
                }
            } else if chunk_index % VAL_EVERY == VAL_EVERY - 1 {
                Split::Val
            } else {
                Split::Train
            });
            chunk_index += 1;
            match split {
                Split::Train => train.push(piece),
                Split::Val => val.push(piece),
            }
        }
    }
    if train.is_empty() && val.is_empty() {
        return Err(DataError::EmptyCorpus(corpus.sources.join(", ")));
    }
    if train.is_empty() || val.is_empty() {
        return Err(DataError::TooSmall(format!(
            "{} training and {} validation documents after cutting; give it at least ten paragraphs of text",
            train.len(),
            val.len()
        )));
    }
    let mut rng = Rng::new(0x5eed);
    for i in (1..train.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        train.swap(i, j);
    }
    Ok((train, val))
}

/// Token ids of all documents, each preceded by BOS.
fn tokenize(
    tok: &tokenizers::Tokenizer,
    docs: &[String],
    bar: &ProgressBar,
) -> Result<Vec<u16>, DataError> {
    let mut out = Vec::new();
    for batch in docs.chunks(256) {
        let texts: Vec<&str> = batch.iter().map(String::as_str).collect();
        for ids in tokenizer::encode(tok, &texts)? {
            out.push(BOS_ID as u16);
            out.extend(ids.into_iter().map(|id| id as u16));
        }
        bar.inc(batch.len() as u64);
    }
    Ok(out)
}

fn write_shards(dir: &Path, split: &str, tokens: &[u16]) -> Result<Vec<FileInfo>, DataError> {
    tokens
        .chunks(SHARD_TOKENS)
        .enumerate()
        .map(|(i, shard)| {
            Ok(meta::write_tokens(
                dir,
                &format!("{split}_{i:03}.bin"),
                shard,
            )?)
        })
        .collect()
}

fn file_info(dir: &Path, file: &str) -> Result<FileInfo, DataError> {
    let bytes = fs::read(dir.join(file)).map_err(|e| DataError::Unreadable {
        path: dir.join(file),
        reason: e.to_string(),
    })?;
    Ok(FileInfo {
        file: file.to_string(),
        bytes: bytes.len() as u64,
        sha256: meta::sha256_hex(&bytes),
    })
}
