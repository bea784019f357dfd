//! The byte-level BPE tokenizer: trained on the training split, with the GPT-4 split pattern
//! (numbers in groups of at most two digits, as the reference does) and four special tokens, the
//! first of which is BOS.

use harness::profile::SPECIAL_TOKENS;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    SplitDelimiterBehavior, Tokenizer, TokenizerBuilder,
};

use super::DataError;

const SPLIT_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

fn err(e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer(e.to_string())
}

/// Trains a tokenizer with `vocab_size` entries (special tokens included) on `texts`.
pub fn train<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> Result<Tokenizer, DataError> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(*t, true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let split = Split::new(
        SplitPattern::Regex(SPLIT_PATTERN.into()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(err)?;
    let pre_tokenizer = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ]);
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None::<NormalizerWrapper>)
    .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre_tokenizer)))
    .with_post_processor(None::<PostProcessorWrapper>)
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())))
    .build()
    .map_err(err)?;
    tokenizer.train(&mut trainer, texts).map_err(err)?;
    let tokenizer: Tokenizer = tokenizer.into();
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(err(format!("special token {token} did not get id {id}")));
        }
    }
    Ok(tokenizer)
}

/// Encodes documents without adding special tokens.
pub fn encode(tokenizer: &Tokenizer, texts: &[&str]) -> Result<Vec<Vec<u32>>, DataError> {
    let encodings = tokenizer.encode_batch(texts.to_vec(), false).map_err(err)?;
    Ok(encodings
        .into_iter()
        .map(|e| e.get_ids().to_vec())
        .collect())
}

/// The exact number of bytes each token id stands for; 0 for special tokens and unused ids.
/// Byte-level BPE maps every byte to one character, so a token's byte length is its character
/// count, also when its bytes are an incomplete UTF-8 sequence.
pub fn token_byte_lengths(tokenizer: &Tokenizer, vocab_size: usize) -> Vec<u16> {
    (0..vocab_size as u32)
        .map(|id| match tokenizer.id_to_token(id) {
            Some(_) if (id as usize) < SPECIAL_TOKENS.len() => 0,
            Some(token) => token.chars().count() as u16,
            None => 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<String> {
        let base = "The whale, the whale! Ishmael said 12345 times. Ünïcödé naïveté — 日本語のテキスト, emoji 🐋 and ça va.\n";
        (0..50).map(|i| format!("{base} line {i}")).collect()
    }

    #[test]
    fn round_trips_arbitrary_text_including_non_ascii() {
        let texts = sample();
        let tok = train(texts.iter().map(String::as_str), 300).unwrap();
        for text in [
            "Ünïcödé 日本語 🐋🐋 mixed\twith\ttabs\n\nand   spaces",
            "numbers 1234567 and 'quotes' don't",
            "",
            "\u{0}control\u{7f} chars",
        ] {
            let ids = encode(&tok, &[text]).unwrap().remove(0);
            assert_eq!(tok.decode(&ids, false).unwrap(), text);
        }
    }

    #[test]
    fn byte_lengths_are_exact_for_partial_utf8_tokens() {
        let texts = sample();
        let tok = train(texts.iter().map(String::as_str), 300).unwrap();
        let lengths = token_byte_lengths(&tok, 300);
        assert_eq!(&lengths[..4], &[0, 0, 0, 0], "special tokens have no bytes");
        // Encoding a lone rare CJK character falls back to byte tokens: each holds a partial
        // UTF-8 sequence and counts its true length, so the lengths add up to the text's bytes.
        for text in ["語", "🐋", "ça", "hello world"] {
            let ids = encode(&tok, &[text]).unwrap().remove(0);
            let total: usize = ids.iter().map(|&id| lengths[id as usize] as usize).sum();
            assert_eq!(total, text.len(), "{text}");
        }
        // A character never seen in training is three single-byte tokens: each decodes alone to
        // U+FFFD (3 bytes, upstream's count) but stands for exactly one byte.
        let ids = encode(&tok, &["漢"]).unwrap().remove(0);
        assert_eq!(ids.len(), 3);
        for id in ids {
            assert_eq!(lengths[id as usize], 1);
            assert_eq!(tok.decode(&[id], false).unwrap(), "\u{FFFD}");
        }
    }
}
