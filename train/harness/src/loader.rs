//! The data loader. Every row starts with BOS and holds exactly `seq_len + 1` tokens with no
//! padding: documents are packed best-fit from a buffer of about a thousand, and when none fits
//! the space left, the shortest is cropped to fill it (the reference's rule).

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{Device, Tensor};

use crate::profile::BOS_ID;

/// Documents buffered for best-fit packing.
pub const PACK_BUFFER_DOCS: usize = 1000;

/// Splits a token stream into documents, each starting at a BOS token.
pub fn documents(tokens: &[u16]) -> Vec<Range<usize>> {
    let mut starts: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, &t)| t as u32 == BOS_ID)
        .map(|(i, _)| i)
        .collect();
    if starts.first() != Some(&0) && !tokens.is_empty() {
        starts.insert(0, 0);
    }
    let ends = starts.iter().skip(1).copied().chain([tokens.len()]);
    starts.iter().zip(ends).map(|(&s, e)| s..e).collect()
}

/// Packs documents into rows. Cycles through the documents forever when `cycle` is set (training),
/// and stops at the last complete row otherwise (validation).
pub struct Packer {
    docs: Vec<Range<usize>>,
    next_doc: usize,
    cycle: bool,
    epoch: usize,
    /// Buffered documents by length; the Vec keeps arrival order among equal lengths.
    buffer: BTreeMap<usize, Vec<Range<usize>>>,
    buffered: usize,
    row_len: usize,
}

impl Packer {
    pub fn new(docs: Vec<Range<usize>>, row_len: usize, cycle: bool) -> Self {
        Self {
            docs,
            next_doc: 0,
            cycle,
            epoch: 0,
            buffer: BTreeMap::new(),
            buffered: 0,
            row_len,
        }
    }

    /// Completed passes over the documents.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    fn refill(&mut self) {
        while self.buffered < PACK_BUFFER_DOCS && !self.docs.is_empty() {
            if self.next_doc == self.docs.len() {
                if !self.cycle {
                    return;
                }
                self.next_doc = 0;
                self.epoch += 1;
            }
            let doc = self.docs[self.next_doc].clone();
            self.next_doc += 1;
            self.buffer.entry(doc.len()).or_default().push(doc);
            self.buffered += 1;
        }
    }

    fn take(&mut self, len: usize) -> Range<usize> {
        let list = self.buffer.get_mut(&len).expect("length is buffered");
        let doc = list.remove(0);
        if list.is_empty() {
            self.buffer.remove(&len);
        }
        self.buffered -= 1;
        doc
    }

    /// The token ranges that make up the next row, or None when the documents are exhausted.
    pub fn next_row(&mut self) -> Option<Vec<Range<usize>>> {
        let mut parts = Vec::new();
        let mut filled = 0;
        while filled < self.row_len {
            self.refill();
            if self.buffered == 0 {
                return None;
            }
            let remaining = self.row_len - filled;
            let part = match self.buffer.range(..=remaining).next_back().map(|(&l, _)| l) {
                Some(len) => self.take(len),
                None => {
                    let shortest = *self.buffer.keys().next().expect("buffer is not empty");
                    let doc = self.take(shortest);
                    doc.start..doc.start + remaining
                }
            };
            filled += part.len();
            parts.push(part);
        }
        Some(parts)
    }
}

/// Batches of (inputs, targets), each `[rows, seq_len]` u32, from the training split.
pub struct TrainLoader {
    tokens: Vec<u16>,
    packer: Packer,
    seq_len: usize,
    device: Device,
}

impl TrainLoader {
    pub fn new(tokens: Vec<u16>, seq_len: usize, device: Device) -> Self {
        let packer = Packer::new(documents(&tokens), seq_len + 1, true);
        Self {
            tokens,
            packer,
            seq_len,
            device,
        }
    }

    pub fn epoch(&self) -> usize {
        self.packer.epoch()
    }

    /// The next `rows` rows of `seq_len + 1` tokens, flattened.
    pub fn next_rows(&mut self, rows: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(rows * (self.seq_len + 1));
        for _ in 0..rows {
            let parts = self
                .packer
                .next_row()
                .expect("a cycling packer over a non-empty split always yields rows");
            for part in parts {
                out.extend(self.tokens[part].iter().map(|&t| t as u32));
            }
        }
        out
    }

    /// Inputs and targets for `rows` rows: targets are the inputs shifted left by one.
    pub fn next_batch(&mut self, rows: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let flat = self.next_rows(rows);
        rows_to_batch(flat, rows, self.seq_len, &self.device)
    }
}

pub fn rows_to_batch(
    flat: Vec<u32>,
    rows: usize,
    seq_len: usize,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let all = Tensor::from_vec(flat, (rows, seq_len + 1), device)?;
    let x = all.narrow(1, 0, seq_len)?.contiguous()?;
    let y = all.narrow(1, 1, seq_len)?.contiguous()?;
    Ok((x, y))
}

/// The fixed validation rows: the first `max_rows` complete rows packed from the validation split.
/// Deterministic, so every experiment is scored on the same tokens.
pub fn validation_rows(tokens: &[u16], seq_len: usize, max_rows: usize) -> Vec<Vec<u32>> {
    let mut packer = Packer::new(documents(tokens), seq_len + 1, false);
    let mut rows = Vec::new();
    while rows.len() < max_rows {
        let Some(parts) = packer.next_row() else {
            break;
        };
        rows.push(
            parts
                .into_iter()
                .flat_map(|p| tokens[p].iter().map(|&t| t as u32))
                .collect(),
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<u16> {
        // Documents of assorted lengths, each starting with BOS (0).
        let mut tokens = Vec::new();
        for (i, len) in [5usize, 40, 3, 17, 9, 60, 2, 33, 11, 8, 25, 70, 4]
            .iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            tokens.push(0);
            tokens.extend((0..*len).map(|j| 1 + ((i * 7 + j) % 500) as u16));
        }
        tokens
    }

    #[test]
    fn rows_start_with_bos_are_full_and_have_no_padding() {
        let tokens = corpus();
        let mut loader = TrainLoader::new(tokens, 31, Device::Cpu);
        for _ in 0..50 {
            let flat = loader.next_rows(4);
            assert_eq!(flat.len(), 4 * 32);
            for row in flat.chunks(32) {
                assert_eq!(row[0], BOS_ID, "row does not start with BOS: {row:?}");
            }
        }
        assert!(loader.epoch() >= 1, "the loader cycles through the split");
    }

    #[test]
    fn packing_prefers_the_largest_document_that_fits() {
        // Row of 10: the 6-token doc fits first, then the 4-token doc fills it exactly.
        let tokens = [
            0, 1, 1, 1, 1, 1, 0, 2, 2, 2, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
        ];
        let mut packer = Packer::new(documents(&tokens), 10, false);
        let row = packer.next_row().unwrap();
        let lens: Vec<usize> = row.iter().map(|r| r.len()).collect();
        // The 12-token doc does not fit; best fit takes 6 then 4.
        assert_eq!(lens, vec![6, 4]);
        // The long document is cropped to fill the next row.
        let row = packer.next_row().unwrap();
        assert_eq!(row, vec![10..20]);
        assert!(packer.next_row().is_none());
    }

    #[test]
    fn validation_stream_is_deterministic() {
        let tokens = corpus();
        let a = validation_rows(&tokens, 63, 1000);
        let b = validation_rows(&tokens, 63, 1000);
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert!(a.iter().all(|r| r.len() == 64 && r[0] == BOS_ID));
    }

    #[test]
    fn batches_shift_targets_by_one() {
        let tokens = corpus();
        let mut loader = TrainLoader::new(tokens, 15, Device::Cpu);
        let (x, y) = loader.next_batch(2).unwrap();
        assert_eq!(x.dims(), &[2, 15]);
        let x: Vec<Vec<u32>> = x.to_vec2().unwrap();
        let y: Vec<Vec<u32>> = y.to_vec2().unwrap();
        assert_eq!(x[0][1..], y[0][..14]);
    }
}
