//! Values that reach FRR's configuration, checked when they are made: a [`Word`] is read by
//! FRR as one word, a [`Line`] as the rest of one line. A model made of them cannot carry a
//! line break or a second command into frr.conf or a vty, so nothing has to be rendered to
//! find out; the template still checks each as it prints (a last guard).

use std::fmt;
use std::ops::Deref;

use serde::Serialize;

/// Why a value cannot go into FRR's configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotFrrText {
    /// Empty, or holding whitespace or a control character where FRR reads one word.
    #[error("{0:?} is not one word and cannot go into frr.conf")]
    NotOneWord(String),
    /// Holding a line break or another control character.
    #[error("{0:?} holds a line break or control character and cannot go into frr.conf")]
    NotOneLine(String),
}

/// A value FRR reads as one word: not empty, without whitespace or control characters.
/// Shown by `{:?}` as its text is (route-map names hash that form).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Word(String);

impl Word {
    /// `value`, if it is one word.
    pub fn new(value: impl Into<String>) -> Result<Word, NotFrrText> {
        let value = value.into();
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NotFrrText::NotOneWord(value));
        }
        Ok(Word(value))
    }

    /// A value whose text is one word by construction (numbers, addresses, names joined
    /// from words with `-`): checked in debug builds.
    pub(crate) fn of(value: impl fmt::Display) -> Word {
        let value = value.to_string();
        debug_assert!(Word::new(value.as_str()).is_ok(), "{value:?}");
        Word(value)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Word {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Word {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Word {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
impl Word {
    /// Any text, unchecked: for tests of the template's own guard.
    pub(crate) fn unchecked(value: &str) -> Word {
        Word(value.to_string())
    }
}

/// Tests write model values as literals; a literal that is not a word fails the test.
#[cfg(test)]
impl From<&str> for Word {
    fn from(value: &str) -> Word {
        Word::new(value).expect("a word")
    }
}

#[cfg(test)]
impl From<&str> for Line {
    fn from(value: &str) -> Line {
        Line::new(value).expect("one line")
    }
}

impl PartialEq<&str> for Line {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The rest of one line: no line break or other control character. Shown by `{:?}` as its
/// text is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Line(String);

impl Line {
    /// `value`, if it is one line.
    pub fn new(value: impl Into<String>) -> Result<Line, NotFrrText> {
        let value = value.into();
        if value.chars().any(char::is_control) {
            return Err(NotFrrText::NotOneLine(value));
        }
        Ok(Line(value))
    }

    /// A line made of words by construction (keywords, numbers, communities): checked in
    /// debug builds.
    pub(crate) fn of(value: String) -> Line {
        debug_assert!(Line::new(value.as_str()).is_ok(), "{value:?}");
        Line(value)
    }
}

impl Deref for Line {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_lines_refuse_what_would_start_another_command() {
        assert_eq!(Word::new("tor-1").unwrap().as_str(), "tor-1");
        for bad in ["", "a b", "x\nrouter bgp 1", "tab\there", "nul\0"] {
            assert!(Word::new(bad).is_err(), "{bad:?}");
        }
        assert!(Line::new("community 64500:1 additive").is_ok());
        assert!(matches!(
            Line::new("x\nrouter bgp 1"),
            Err(NotFrrText::NotOneLine(_))
        ));
    }
}
