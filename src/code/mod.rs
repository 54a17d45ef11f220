//! Wormhole codes: `NAMEPLATE-WORD-WORD…`, like `4-adroitness-aardvark`.
//!
//! The nameplate is decimal digits (the channel number on the mailbox server); the words are
//! the shared secret. The whole code string is the SPAKE2 password, so both sides must type it
//! byte for byte the same.
//!
//! * [`Code::generate`] draws words from the PGP word lists ([`wordlist`]), alternating the odd
//!   and even lists exactly like Python magic-wormhole 0.24.
//! * [`Code::parse`] accepts any words (human-chosen codes are allowed), but checks the shape:
//!   no whitespace, a numeric nameplate, at least one word, no empty words.
//! * [`completions`] completes a partly typed code, as the Python CLI's tab completion does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

pub mod wordlist;
mod wordlist_table;

/// The default number of words in a generated code (as in the Python CLI).
pub const DEFAULT_WORDS: usize = 2;

/// The longest nameplate accepted, in digits. The Python mailbox server (0.8) rejects a `claim`
/// whose nameplate is longer than 40 characters, so longer ones could never work.
pub const MAX_NAMEPLATE_LEN: usize = 40;

/// Why a code or nameplate was rejected.
///
/// The messages may show the nameplate (the part before the first `-`, which is not secret and
/// travels in clear to the server), but never the words of a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The code is empty (or only whitespace).
    #[error("the code is empty")]
    Empty,
    /// The code contains a space or other whitespace (after trimming both ends).
    #[error(
        "the code must not contain spaces: use '-' between its parts, like \"4-purple-sausages\""
    )]
    ContainsSpace,
    /// Nothing before the first `-`: the code must start with its nameplate.
    #[error("the code must start with the nameplate (decimal digits) before the first '-', like \"4-purple-sausages\"")]
    EmptyNameplate,
    /// The nameplate (the part before the first `-`) is not all ASCII decimal digits. Holds the
    /// offending text.
    #[error("the nameplate (the part before the first '-') must be decimal digits, got {0:?}")]
    BadNameplate(String),
    /// The nameplate has more than [`MAX_NAMEPLATE_LEN`] digits. Holds its length.
    #[error("the nameplate is {0} digits long; at most 40 are allowed")]
    NameplateTooLong(usize),
    /// There are no words after the nameplate (`"4"` or `"4-"`).
    #[error(
        "the code has no words after the nameplate: expected something like \"4-purple-sausages\""
    )]
    NoWords,
    /// A word is empty: two `-` in a row, or a `-` at the end.
    #[error("the code has an empty word (two '-' in a row, or a '-' at the end)")]
    EmptyWord,
}

/// A nameplate: the numeric channel id before the first `-` of a code, like `"4"`.
///
/// Always 1 to [`MAX_NAMEPLATE_LEN`] ASCII decimal digits (leading zeros are kept as typed:
/// `"04"` and `"4"` are different nameplates on the server). Serializes as a plain string and is
/// validated when deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nameplate(String);

impl Nameplate {
    /// Checks and wraps a nameplate: ASCII digits only, 1 to [`MAX_NAMEPLATE_LEN`] of them.
    ///
    /// ```
    /// use wormhole::code::Nameplate;
    /// assert_eq!(Nameplate::new("12").unwrap().as_str(), "12");
    /// assert!(Nameplate::new("x1").is_err());
    /// ```
    pub fn new(s: &str) -> Result<Nameplate, CodeError> {
        check_nameplate(s)?;
        Ok(Nameplate(s.to_owned()))
    }

    /// The nameplate text, like `"4"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_nameplate(s: &str) -> Result<(), CodeError> {
    if s.is_empty() {
        return Err(CodeError::EmptyNameplate);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeError::BadNameplate(s.to_owned()));
    }
    if s.len() > MAX_NAMEPLATE_LEN {
        return Err(CodeError::NameplateTooLong(s.len()));
    }
    Ok(())
}

impl fmt::Display for Nameplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Nameplate {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Nameplate::new(s)
    }
}

impl TryFrom<String> for Nameplate {
    type Error = CodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_nameplate(&s)?;
        Ok(Nameplate(s))
    }
}

impl From<Nameplate> for String {
    fn from(n: Nameplate) -> String {
        n.0
    }
}

/// A whole wormhole code, like `4-purple-sausages`: a [`Nameplate`], `-`, then one or more
/// non-empty words joined by `-`.
///
/// The whole string is the SPAKE2 password. [`Display`](fmt::Display) shows it (users must see
/// it), but [`Debug`](fmt::Debug) hides the words: `Code { nameplate: "4", words: "<redacted>" }`.
/// The string is zeroized when the `Code` is dropped. Serializes as the whole code string and is
/// validated (with [`Code::parse`]) when deserialized.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Code(String);

impl Code {
    /// Parses a code typed by a user.
    ///
    /// Leading and trailing whitespace is trimmed (pasted codes often carry a newline); any
    /// whitespace left inside is an error. The part before the first `-` must be a valid
    /// [`Nameplate`]; after it come one or more words separated by `-`, none of them empty. The
    /// words are **not** checked against the word list: human-chosen codes are allowed, and
    /// their case is kept (the code is a password).
    ///
    /// ```
    /// use wormhole::code::{Code, CodeError};
    ///
    /// let code = Code::parse("4-purple-sausages").unwrap();
    /// assert_eq!(code.nameplate().as_str(), "4");
    /// assert_eq!(code.words(), "purple-sausages");
    /// assert_eq!(Code::parse(" 7-guitarist-revenge\n").unwrap().as_str(), "7-guitarist-revenge");
    ///
    /// assert_eq!(Code::parse("4"), Err(CodeError::NoWords));
    /// assert_eq!(Code::parse("4 purple"), Err(CodeError::ContainsSpace));
    /// assert_eq!(Code::parse("x-purple"), Err(CodeError::BadNameplate("x".into())));
    /// ```
    pub fn parse(s: &str) -> Result<Code, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(CodeError::ContainsSpace);
        }
        match s.split_once('-') {
            None => {
                check_nameplate(s)?;
                Err(CodeError::NoWords)
            }
            Some((nameplate, words)) => {
                check_nameplate(nameplate)?;
                check_words(words)?;
                Ok(Code(s.to_owned()))
            }
        }
    }

    /// Builds a code from a nameplate and a words part like `"purple-sausages"`.
    ///
    /// The words part is checked like in [`Code::parse`] (no whitespace, at least one word, no
    /// empty word) but not trimmed.
    ///
    /// ```
    /// use wormhole::code::{Code, Nameplate};
    /// let np = Nameplate::new("4").unwrap();
    /// assert_eq!(Code::from_parts(&np, "purple-sausages").unwrap().to_string(), "4-purple-sausages");
    /// assert!(Code::from_parts(&np, "").is_err());
    /// ```
    pub fn from_parts(nameplate: &Nameplate, words: &str) -> Result<Code, CodeError> {
        if words.chars().any(char::is_whitespace) {
            return Err(CodeError::ContainsSpace);
        }
        check_words(words)?;
        let mut s = String::with_capacity(nameplate.0.len() + 1 + words.len());
        s.push_str(&nameplate.0);
        s.push('-');
        s.push_str(words);
        Ok(Code(s))
    }

    /// The nameplate: the part before the first `-`.
    pub fn nameplate(&self) -> Nameplate {
        Nameplate(self.split().0.to_owned())
    }

    /// The words part: everything after the first `-`, like `"purple-sausages"`.
    pub fn words(&self) -> &str {
        self.split().1
    }

    /// The whole code, like `"4-purple-sausages"`: the SPAKE2 password.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn split(&self) -> (&str, &str) {
        // A `Code` always holds a '-' (checked on construction); the fallback is unreachable.
        self.0.split_once('-').unwrap_or((self.0.as_str(), ""))
    }

    /// Generates a code for `nameplate` with `words` random words, exactly like Python
    /// magic-wormhole's `choose_words`.
    ///
    /// Word `i` (0-based) is taken from the **odd** list when `i` is even and from the **even**
    /// list when `i` is odd ([`wordlist`]), each indexed by one random byte drawn with
    /// `rng.fill_bytes(&mut [u8; 1])`, one call per word, in order. So every word carries 8 bits
    /// of entropy. `words == 0` is treated as 1 (a code needs at least one word); the usual
    /// value is [`DEFAULT_WORDS`]. Callers taking `words` from users should bound it (a huge
    /// count allocates accordingly).
    ///
    /// ```
    /// use wormhole::code::{Code, Nameplate, DEFAULT_WORDS};
    ///
    /// let np = Nameplate::new("4").unwrap();
    /// let code = Code::generate(&np, DEFAULT_WORDS, &mut rand::rngs::OsRng);
    /// assert_eq!(code.nameplate(), np);
    /// assert_eq!(code.words().split('-').count(), 2);
    /// assert_eq!(Code::parse(code.as_str()), Ok(code));
    /// ```
    pub fn generate<R: rand::RngCore + ?Sized>(
        nameplate: &Nameplate,
        words: usize,
        rng: &mut R,
    ) -> Code {
        let count = words.max(1);
        let mut bytes = Zeroizing::new(Vec::with_capacity(count));
        for _ in 0..count {
            let mut byte = [0u8; 1];
            rng.fill_bytes(&mut byte);
            bytes.push(byte[0]);
            byte.zeroize();
        }
        let chosen = |(i, byte): (usize, &u8)| wordlist::list_for_index(i)[usize::from(*byte)];
        let len = bytes
            .iter()
            .enumerate()
            .map(|w| chosen(w).len() + 1)
            .sum::<usize>()
            + nameplate.0.len();
        // Exact capacity, so the secret is never copied by a reallocation.
        let mut s = String::with_capacity(len);
        s.push_str(&nameplate.0);
        for w in bytes.iter().enumerate() {
            s.push('-');
            s.push_str(chosen(w));
        }
        Code(s)
    }
}

fn check_words(words: &str) -> Result<(), CodeError> {
    if words.is_empty() {
        return Err(CodeError::NoWords);
    }
    if words.split('-').any(str::is_empty) {
        return Err(CodeError::EmptyWord);
    }
    Ok(())
}

impl Drop for Code {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("nameplate", &self.split().0)
            .field("words", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Code {
    type Err = CodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::parse(s)
    }
}

impl TryFrom<String> for Code {
    type Error = CodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        // Wipe the deserialized input too: it held the secret.
        let s = Zeroizing::new(s);
        Code::parse(&s)
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Completions of a partly typed whole code, as the Python CLI offers them on Tab.
///
/// * With no `-` typed yet: every valid nameplate from `nameplates` (as listed by the server)
///   that starts with `typed`, followed by `-`.
/// * After the first `-`: the text before it must be a valid [`Nameplate`] (otherwise there are
///   no completions; it need not be in `nameplates`). The words part is completed by
///   [`wordlist::word_completions`] with `num_words`, and each result is returned as a whole
///   code, nameplate included: prefix match on lower-case words, the list chosen by the number
///   of `-` in the words part (even → odd list, odd → even list), a trailing `-` when more words
///   are expected.
///
/// The result is sorted (as strings) and has no duplicates.
///
/// ```
/// use wormhole::code::completions;
///
/// let listed = vec!["1".to_string(), "12".to_string(), "5".to_string()];
/// assert_eq!(completions("1", 2, &listed), ["1-", "12-"]);
/// assert_eq!(completions("12-arm", 2, &listed), ["12-armistice-"]);
/// assert_eq!(completions("12-armistice-bab", 2, &listed), ["12-armistice-baboon"]);
/// ```
pub fn completions(typed: &str, num_words: usize, nameplates: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match typed.split_once('-') {
        None => nameplates
            .iter()
            .filter(|n| n.starts_with(typed) && check_nameplate(n).is_ok())
            .map(|n| format!("{n}-"))
            .collect(),
        Some((nameplate, words)) => {
            if check_nameplate(nameplate).is_err() {
                return Vec::new();
            }
            wordlist::word_completions(words, num_words)
                .into_iter()
                .map(|w| format!("{nameplate}-{w}"))
                .collect()
        }
    };
    out.sort();
    out.dedup();
    out
}
