//! Wormhole codes: `NAMEPLATE-WORD-WORD…` (STUB: being written; API fixed).
use serde::{Deserialize, Serialize};
/// Errors from parsing a code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// stub
    #[error("the code is empty")]
    Empty,
}
/// A nameplate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nameplate(String);
impl Nameplate {
    /// Validates.
    pub fn new(s: &str) -> Result<Nameplate, CodeError> { Ok(Nameplate(s.to_string())) }
    /// Text.
    pub fn as_str(&self) -> &str { &self.0 }
}
impl std::fmt::Display for Nameplate { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
/// A code.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Code(String);
impl Code {
    /// Parse.
    pub fn parse(s: &str) -> Result<Code, CodeError> { Ok(Code(s.to_string())) }
    /// Nameplate.
    pub fn nameplate(&self) -> Nameplate { Nameplate(self.0.split('-').next().unwrap_or("").to_string()) }
    /// Words.
    pub fn words(&self) -> &str { self.0.split_once('-').map(|x| x.1).unwrap_or("") }
    /// Whole.
    pub fn as_str(&self) -> &str { &self.0 }
    /// Generate.
    pub fn generate<R: rand::RngCore + ?Sized>(nameplate: &Nameplate, words: usize, rng: &mut R) -> Code { let _ = (words, rng.next_u32()); Code(format!("{nameplate}-a-b")) }
}
impl std::fmt::Display for Code { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
