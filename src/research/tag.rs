//! A run's tag: it names a branch (`autoresearch/<tag>`), a folder (`runs/<tag>`) and a staging
//! crate, so it is checked once, where it is read.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag(String);

impl Tag {
    /// Today's date, the default tag.
    pub fn today() -> Self {
        Tag(jiff::Zoned::now().strftime("%Y%m%d").to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(Tag(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a valid run tag: use 1 to 64 letters, digits, '-' or '_'"
            ))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_a_branch_and_a_folder_safely() {
        assert_eq!("night-1_b".parse::<Tag>().unwrap().as_str(), "night-1_b");
        for bad in ["", "a b", "../x", "x/y", &"a".repeat(65)] {
            let err = bad.parse::<Tag>().unwrap_err();
            assert!(err.contains("is not a valid run tag"), "{err}");
        }
        assert_eq!(Tag::today().as_str().len(), 8);
    }
}
