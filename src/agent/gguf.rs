//! A GGUF sanity check that runs before llama.cpp sees the file: is it there, is it GGUF at all,
//! is it whole? llama.cpp answers all three with one null pointer; the user deserves the reason.
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::AgentError;

/// What the header says about the file.
#[derive(Debug)]
pub struct GgufInfo {
    pub tensors: u64,
    pub architecture: Option<String>,
}

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// (bytes per block, elements per block) of the ggml tensor types whose layout this check knows.
fn type_size(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (4, 1),      // F32
        1 => (2, 1),      // F16
        2 => (18, 32),    // Q4_0
        3 => (20, 32),    // Q4_1
        6 => (22, 32),    // Q5_0
        7 => (24, 32),    // Q5_1
        8 => (34, 32),    // Q8_0
        10 => (84, 256),  // Q2_K
        11 => (110, 256), // Q3_K
        12 => (144, 256), // Q4_K
        13 => (176, 256), // Q5_K
        14 => (210, 256), // Q6_K
        30 => (2, 1),     // BF16
        _ => return None,
    })
}

pub fn check(path: &Path) -> Result<GgufInfo, AgentError> {
    let model = || path.to_path_buf();
    if !path.exists() {
        return Err(AgentError::ModelMissing(model()));
    }
    let file = File::open(path).map_err(|e| AgentError::ModelUnreadable {
        path: model(),
        reason: e.to_string(),
    })?;
    let file_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 20, file),
        pos: 0,
    };
    let mut magic = [0u8; 4];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        let looks = if magic
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            "it looks like text"
        } else {
            "its first bytes are not the GGUF magic"
        };
        return Err(AgentError::NotGguf {
            path: model(),
            reason: looks.into(),
        });
    }
    let truncated = |what: &str| AgentError::Truncated {
        path: model(),
        reason: format!("it ends inside its {what}"),
    };
    let version = r.u32().map_err(|_| truncated("header"))?;
    if !(2..=3).contains(&version) {
        return Err(AgentError::NotGguf {
            path: model(),
            reason: format!("GGUF version {version}; this build reads versions 2 and 3"),
        });
    }
    let tensors = r.u64().map_err(|_| truncated("header"))?;
    let kv_count = r.u64().map_err(|_| truncated("header"))?;
    if tensors > 1 << 24 || kv_count > 1 << 24 {
        return Err(AgentError::NotGguf {
            path: model(),
            reason: "its header counts are implausible (corrupt file)".into(),
        });
    }
    let mut architecture = None;
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kv_count {
        let key = r.string().map_err(|_| truncated("metadata"))?;
        let value_type = r.u32().map_err(|_| truncated("metadata"))?;
        if key == "general.architecture" && value_type == 8 {
            architecture = Some(r.string().map_err(|_| truncated("metadata"))?);
        } else if key == "general.alignment" && value_type == 4 {
            alignment = r.u32().map_err(|_| truncated("metadata"))? as u64;
        } else {
            r.skip_value(value_type)
                .map_err(|_| truncated("metadata"))?;
        }
    }
    // The data section must hold every tensor: at least up to the last tensor's start, and to its
    // end when its type's layout is known.
    let mut needed = 0u64;
    for _ in 0..tensors {
        r.string().map_err(|_| truncated("tensor table"))?;
        let dims = r.u32().map_err(|_| truncated("tensor table"))?;
        let mut elements = 1u64;
        for _ in 0..dims {
            elements = elements.saturating_mul(r.u64().map_err(|_| truncated("tensor table"))?);
        }
        let ggml_type = r.u32().map_err(|_| truncated("tensor table"))?;
        let offset = r.u64().map_err(|_| truncated("tensor table"))?;
        let size = type_size(ggml_type).map_or(0, |(bytes, block)| elements / block * bytes);
        needed = needed.max(offset.saturating_add(size));
    }
    let data_start = r.pos.div_ceil(alignment.max(1)) * alignment.max(1);
    let expected = data_start.saturating_add(needed);
    if file_bytes < expected {
        return Err(AgentError::Truncated {
            path: model(),
            reason: format!(
                "it holds {file_bytes} bytes where its tensors need at least {expected}"
            ),
        });
    }
    Ok(GgufInfo {
        tensors,
        architecture,
    })
}

struct Reader<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Reader<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        self.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        self.pos += copied;
        if copied < n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn string(&mut self) -> std::io::Result<String> {
        let len = self.u64()?;
        if len > 1 << 30 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip_value(&mut self, value_type: u32) -> std::io::Result<()> {
        match value_type {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let len = self.u64()?;
                self.skip(len)
            }
            9 => {
                let item_type = self.u32()?;
                let n = self.u64()?;
                for _ in 0..n {
                    self.skip_value(item_type)?;
                }
                Ok(())
            }
            _ => Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
}
