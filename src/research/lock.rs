//! One loop per run tag. The lock is an flock(2) on a file in the run folder: the kernel drops it
//! when the holder exits, however it exits, so a crash can never leave a tag locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{io, ResearchError};

pub const LOCK_FILE: &str = "lock";

/// Held for as long as it lives.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(dir: &Path, tag: &str) -> Result<Self, ResearchError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        // SAFETY: flock(2) on a descriptor we own; it touches no memory.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(ResearchError::Locked {
                tag: tag.to_string(),
                holder: holder.trim().to_string(),
            });
        }
        // Who holds it, for the message a second loop gets.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "pid {}", std::process::id());
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path(), "t").unwrap();
        let err = RunLock::acquire(dir.path(), "t").err().unwrap().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        RunLock::acquire(dir.path(), "t").unwrap();
    }
}
