use anyhow::{bail, Result};

use crate::cli::{PrepareArgs, ProfileName};
use crate::data::prepare::{prepare, PrepareRequest, Prepared};

pub fn run(args: &PrepareArgs) -> Result<()> {
    let mut profile = args
        .profile
        .unwrap_or_else(ProfileName::for_this_build)
        .profile();
    if let Some(tokens) = args.eval_tokens {
        if tokens < profile.seq_len {
            bail!(
                "--eval-tokens {tokens} is less than one sequence of the {} profile ({} tokens)",
                profile.name,
                profile.seq_len
            );
        }
        profile.eval_tokens = tokens;
    }
    let req = PrepareRequest {
        data_dir: args.data.resolve(),
        profile,
        corpus: args.corpus.clone(),
        force: args.force,
    };
    let (meta, verb) = match prepare(&req)? {
        Prepared::AlreadyDone(meta) => (meta, "already prepared"),
        Prepared::Written(meta) => (meta, "prepared"),
    };
    println!(
        "{verb}: {} | profile {} | {} documents, {:.1} MB of text | {:.2}M training tokens, {:.2}M validation tokens | eval {} tokens",
        req.data_dir.display(),
        meta.profile.name,
        meta.corpus.documents,
        meta.corpus.text_bytes as f64 / 1e6,
        meta.train_tokens as f64 / 1e6,
        meta.val_tokens as f64 / 1e6,
        meta.eval_tokens,
    );
    Ok(())
}
