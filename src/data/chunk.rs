//! Cuts documents into pieces no longer than a row of the profile holds, at paragraph, then word,
//! then character boundaries. The loader crops a document that fits nowhere and drops the rest,
//! so documents much longer than a row would waste most of their text.

/// Splits `text` into chunks of at most `max_bytes` bytes, packing whole paragraphs greedily.
pub fn chunk(text: &str, max_bytes: usize) -> Vec<String> {
    let pieces = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| split_long(p, max_bytes));
    let mut chunks = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        if !current.is_empty() && current.len() + 2 + piece.len() > max_bytes {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(piece);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A paragraph longer than `max_bytes`, cut at spaces (or inside a word that is itself too long).
fn split_long(paragraph: &str, max_bytes: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = paragraph;
    while rest.len() > max_bytes {
        let mut cut = floor_char_boundary(rest, max_bytes);
        if let Some(space) = rest[..cut].rfind(' ') {
            if space > 0 {
                cut = space;
            }
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(rest[..cut].trim_end());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_limit_and_keep_all_words() {
        let text = "First paragraph here.\n\nSecond one, a little longer than the first.\n\n\
                    A very long paragraph that goes on and on past any reasonable limit of bytes \
                    for one chunk, with naïve ünïcödé words — and dashes.";
        let chunks = chunk(text, 40);
        assert!(chunks.iter().all(|c| c.len() <= 40), "{chunks:?}");
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(words(&chunks.join(" ")), words(text));
    }

    #[test]
    fn short_paragraphs_are_packed_together() {
        let chunks = chunk("a\n\nb\n\nc", 100);
        assert_eq!(chunks, vec!["a\n\nb\n\nc".to_string()]);
    }

    #[test]
    fn an_overlong_word_is_cut_at_character_boundaries() {
        let chunks = chunk(&"é".repeat(10), 5);
        assert!(chunks.iter().all(|c| c.len() <= 5 && !c.is_empty()));
        assert_eq!(chunks.concat(), "é".repeat(10));
    }
}
