//! Units with their checks. Memory has one unit inside the appliance: bytes, in a type that says
//! so; MiB and GiB exist only where a figure is read or shown (`--vram-budget MIB`, results.tsv's
//! `memory_gb`, the harness's `peak_vram_mb`). A time budget or limit is a positive, finite
//! number of seconds.

use std::fmt;
use std::ops::{Add, Sub};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;

/// An amount of memory. Serialised as a plain number of bytes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const ZERO: Bytes = Bytes(0);

    pub const fn mib(mib: u64) -> Self {
        Bytes(mib * MIB)
    }

    /// A figure given in MiB as a float (the harness's summary), rounded to the byte.
    pub fn from_mib_f64(mib: f64) -> Self {
        Bytes((mib.max(0.0) * MIB as f64).round() as u64)
    }

    pub fn as_mib(self) -> f64 {
        self.0 as f64 / MIB as f64
    }

    /// The reference's `memory_gb` column: GiB, as `peak_vram_mb / 1024` is there.
    pub fn as_gib(self) -> f64 {
        self.as_mib() / 1024.0
    }

    /// Whole MiB, rounded down: for messages.
    pub fn whole_mib(self) -> u64 {
        self.0 / MIB
    }

    pub fn saturating_sub(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_sub(other.0))
    }

    /// This amount scaled by `factor`, for shares and margins.
    pub fn scaled(self, factor: f64) -> Bytes {
        Bytes((self.0 as f64 * factor.max(0.0)) as u64)
    }
}

impl Add for Bytes {
    type Output = Bytes;
    fn add(self, other: Bytes) -> Bytes {
        Bytes(self.0.saturating_add(other.0))
    }
}

impl Sub for Bytes {
    type Output = Bytes;
    /// Saturating: a memory figure is never negative.
    fn sub(self, other: Bytes) -> Bytes {
        self.saturating_sub(other)
    }
}

impl std::iter::Sum for Bytes {
    fn sum<I: Iterator<Item = Bytes>>(iter: I) -> Bytes {
        iter.fold(Bytes::ZERO, Add::add)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB", self.whole_mib())
    }
}

/// The longest budget or limit a run takes: about 115 days, far past any useful run, but finite.
const MAX_SECONDS: f64 = 1e7;

/// A positive, finite number of seconds (a budget, a timeout).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(f64);

impl Seconds {
    pub fn new(seconds: f64) -> Result<Self, String> {
        if seconds > 0.0 && seconds <= MAX_SECONDS {
            Ok(Seconds(seconds))
        } else {
            Err(Self::expected())
        }
    }

    fn expected() -> String {
        format!("must be a positive number of seconds, at most {MAX_SECONDS}")
    }

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl FromStr for Seconds {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let seconds = text.parse::<f64>().map_err(|_| Seconds::expected())?;
        Seconds::new(seconds)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0}s", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_only_at_the_edges() {
        assert_eq!(Bytes::mib(3), Bytes(3 << 20));
        assert_eq!(Bytes::from_mib_f64(1.5), Bytes(3 << 19));
        assert_eq!(Bytes::from_mib_f64(-2.0), Bytes::ZERO);
        assert_eq!(Bytes::mib(2048).as_gib(), 2.0);
        assert_eq!(Bytes::mib(5) - Bytes::mib(7), Bytes::ZERO);
        assert_eq!(Bytes::mib(5).to_string(), "5 MiB");
        assert_eq!(serde_json::to_string(&Bytes(42)).unwrap(), "42");
    }

    #[test]
    fn seconds_are_positive_and_finite() {
        assert_eq!("30".parse::<Seconds>().unwrap().get(), 30.0);
        assert_eq!(
            "0.5".parse::<Seconds>().unwrap().duration(),
            Duration::from_millis(500)
        );
        for bad in ["0", "-3", "inf", "NaN", "1e8", "soon", ""] {
            let err = bad.parse::<Seconds>().unwrap_err();
            assert_eq!(
                err, "must be a positive number of seconds, at most 10000000",
                "{bad}"
            );
        }
    }
}
