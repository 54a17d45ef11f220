//! NaCl secretbox (XSalsa20-Poly1305) in the PyNaCl layout `nonce ‖ MAC ‖ ciphertext`
//! (protocol.md §7.4).

use super::{CryptoError, Key};
use crypto_secretbox::aead::{AeadInPlace, KeyInit};
use crypto_secretbox::{Nonce, Tag, XSalsa20Poly1305};

/// Length of the nonce at the start of a sealed body.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 MAC that follows the nonce.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed body adds to the plaintext: nonce plus MAC (40).
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Encrypts `plaintext` with `key` and `nonce`. The result is
/// `nonce(24) ‖ MAC(16) ‖ ciphertext`, exactly PyNaCl's `SecretBox(key).encrypt(pt, nonce)`.
///
/// The nonce must never be reused with the same key; use 24 random bytes.
pub fn seal(key: &Key, nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(key.as_bytes().into());
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.extend_from_slice(plaintext);
    let (head, ct) = out.split_at_mut(OVERHEAD);
    match cipher.encrypt_in_place_detached(Nonce::from_slice(nonce), b"", ct) {
        Ok(tag) => head[NONCE_LEN..].copy_from_slice(&tag),
        // Unreachable: encryption only fails for non-empty associated data. Return an empty
        // body (which `open` rejects) rather than leak the plaintext.
        Err(_) => return Vec::new(),
    }
    out
}

/// Decrypts a body produced by [`seal`] (or by PyNaCl): the first 24 bytes are the nonce,
/// the next 16 the MAC. Returns [`CryptoError::Decrypt`] if the body is shorter than 40 bytes
/// or the MAC does not verify (wrong key or tampering). Never panics.
pub fn open(key: &Key, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if body.len() < OVERHEAD {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (tag, ct) = rest.split_at(TAG_LEN);
    let cipher = XSalsa20Poly1305::new(key.as_bytes().into());
    let mut buf = ct.to_vec();
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            b"",
            &mut buf,
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(buf)
}
