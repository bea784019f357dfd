//! Value parsers for the command line: each says what is wrong with a value and what it must
//! be. clap prefixes the message with the option and the value it was given.

use std::path::PathBuf;
use std::time::Duration;

use crate::units::Bytes;

/// The longest night `--hours` takes: about eleven years, far past any useful run, but finite.
const MAX_HOURS: f64 = 100_000.0;

/// A whole number of at least 1 (runs, proposals, rounds, tokens).
pub fn count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number of at least 1".into()),
        Ok(n) => Ok(n),
    }
}

/// Runs of each file in a confirmation: an interval needs two.
pub fn at_least_two(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(
            "must be a whole number of at least 2 (an interval needs two runs of each file)".into(),
        ),
    }
}

/// A context size: the prompt and a reply must fit, so at least 256 tokens.
pub fn context(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 256 => Ok(n),
        _ => Err("must be a whole number of tokens, at least 256".into()),
    }
}

/// A finite number of zero or more (the least improvement to keep).
pub fn zero_or_more(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err("must be a number of zero or more".into()),
    }
}

/// A sampling temperature: 0 (greedy) to 5.
pub fn temperature(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if (0.0..=5.0).contains(&v) => Ok(v),
        _ => Err("must be a number from 0 (always the likeliest token) to 5".into()),
    }
}

/// `--hours`: a positive number of hours.
pub fn hours(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(h) if h > 0.0 && h <= MAX_HOURS => Ok(Duration::from_secs_f64(h * 3600.0)),
        _ => Err(format!(
            "must be a positive number of hours, at most {MAX_HOURS}"
        )),
    }
}

/// `--vram-budget`: a positive whole number of MiB.
pub fn mib(text: &str) -> Result<Bytes, String> {
    match text.parse::<u64>() {
        Ok(m) if m > 0 && m < 1 << 40 => Ok(Bytes::mib(m)),
        _ => Err("must be a positive whole number of MiB (1024 = 1 GiB)".into()),
    }
}

/// `--trainer-bin`: a training program built earlier, which must exist.
pub fn trainer_bin(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_file() {
        Ok(path)
    } else {
        Err("does not exist: pass a training program built by `autoresearch train`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_says_what_it_must_be() {
        assert_eq!(count("3"), Ok(3));
        for bad in ["0", "-1", "two", ""] {
            assert_eq!(
                count(bad).unwrap_err(),
                "must be a whole number of at least 1"
            );
        }
        assert_eq!(context("4096"), Ok(4096));
        assert!(context("100").unwrap_err().contains("at least 256"));
        assert_eq!(zero_or_more("0"), Ok(0.0));
        for bad in ["-0.1", "NaN", "inf"] {
            assert_eq!(
                zero_or_more(bad).unwrap_err(),
                "must be a number of zero or more"
            );
        }
        assert_eq!(temperature("0.8"), Ok(0.8));
        assert!(temperature("7")
            .unwrap_err()
            .starts_with("must be a number from 0"));
        assert_eq!(hours("0.5"), Ok(Duration::from_secs(1800)));
        for bad in ["0", "-2", "inf", "NaN", "1e9"] {
            assert!(hours(bad)
                .unwrap_err()
                .starts_with("must be a positive number of hours"));
        }
        assert_eq!(mib("1024"), Ok(Bytes::mib(1024)));
        assert!(mib("0").unwrap_err().contains("MiB"));
        assert!(trainer_bin("/no/such/trainer")
            .unwrap_err()
            .contains("pass a training program built by `autoresearch train`"));
        assert_eq!(trainer_bin("/bin/sh"), Ok(PathBuf::from("/bin/sh")));
    }
}
