//! Crypto (STUB: being written; API fixed).
/// A key.
#[derive(Clone)]
pub struct Key([u8; 32]);
impl Key {
    /// From bytes.
    pub fn from_bytes(b: [u8; 32]) -> Key { Key(b) }
    /// Bytes.
    pub fn as_bytes(&self) -> &[u8; 32] { &self.0 }
}
/// Verifier.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Verifier(pub [u8; 32]);
/// Error.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Decrypt.
    #[error("decryption failed")]
    Decrypt,
}
/// Pake.
pub struct Pake(Vec<u8>);
impl Pake {
    /// Start.
    pub fn start(password: &str, appid: &str, seed: [u8; 32]) -> Pake { let _ = (password, appid); Pake(seed.to_vec()) }
    /// Body.
    pub fn body(&self) -> Vec<u8> { self.0.clone() }
    /// Finish.
    pub fn finish(self, peer_body: &[u8]) -> Result<Key, CryptoError> { let mut k = [0u8; 32]; for (i, b) in self.0.iter().chain(peer_body).enumerate() { k[i % 32] ^= b; } Ok(Key(k)) }
}
/// Derive key.
pub fn derive_key(key: &Key, purpose: &[u8], length: usize) -> Vec<u8> { let _ = (key, purpose); vec![0; length] }
/// Phase key.
pub fn derive_phase_key(key: &Key, side: &str, phase: &str) -> Key { let _ = (side, phase); key.clone() }
/// Verifier.
pub fn verifier(key: &Key) -> Verifier { Verifier(key.0) }
/// Seal.
pub fn seal(key: &Key, nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> { let mut v = nonce.to_vec(); v.extend_from_slice(&key.0[..16]); v.extend_from_slice(plaintext); v }
/// Open.
pub fn open(key: &Key, body: &[u8]) -> Result<Vec<u8>, CryptoError> { if body.len() < 40 || body[24..40] != key.0[..16] { return Err(CryptoError::Decrypt); } Ok(body[40..].to_vec()) }
