//! Cryptography for magic-wormhole: SPAKE2 key agreement, HKDF key derivation and
//! NaCl secretbox encryption, wire-compatible with the Python client 0.24
//! (protocol.md §7).
//!
//! * [`Pake`] runs symmetric SPAKE2 over Ed25519 with the whole code as the password and the
//!   appid as the symmetric identity. Its [`Pake::body`] is the plaintext body of the `pake`
//!   phase; [`Pake::finish`] consumes the peer's body and yields the shared [`Key`].
//! * [`derive_key`], [`derive_phase_key`] and [`verifier`] derive subkeys with HKDF-SHA256
//!   (no salt, `info` = purpose).
//! * [`seal`] and [`open`] encrypt and decrypt phase messages with XSalsa20-Poly1305; the body
//!   layout is `nonce(24) ‖ MAC(16) ‖ ciphertext`.
//!
//! A wrong code does **not** make [`Pake::finish`] fail: the two sides simply get different
//! keys, and the first [`open`] of a peer message fails with [`CryptoError::Decrypt`].
//!
//! # Example: a two-party handshake
//!
//! ```
//! use wormhole::crypto::{derive_phase_key, open, seal, verifier, Pake};
//!
//! let appid = "lothar.com/wormhole/text-or-file-xfer";
//! // Each side uses its own random seed (fixed here for the example).
//! let alice = Pake::start("4-purple-sausages", appid, [1u8; 32]);
//! let bob = Pake::start("4-purple-sausages", appid, [2u8; 32]);
//!
//! // The bodies are exchanged through the mailbox as the `pake` phase.
//! let (alice_body, bob_body) = (alice.body(), bob.body());
//! let alice_key = alice.finish(&bob_body)?;
//! let bob_key = bob.finish(&alice_body)?;
//! assert_eq!(alice_key.as_bytes(), bob_key.as_bytes());
//! assert_eq!(verifier(&alice_key), verifier(&bob_key));
//!
//! // Alice (side "aaaaaaaaaa") sends phase "0"; Bob decrypts with the key for Alice's side.
//! let nonce = [7u8; 24]; // use 24 random bytes in real code
//! let body = seal(&derive_phase_key(&alice_key, "aaaaaaaaaa", "0"), &nonce, b"hello");
//! let plain = open(&derive_phase_key(&bob_key, "aaaaaaaaaa", "0"), &body)?;
//! assert_eq!(plain, b"hello");
//! # Ok::<(), wormhole::crypto::CryptoError>(())
//! ```

mod keys;
mod pake;
mod secretbox;

#[cfg(test)]
mod tests;

pub use keys::{derive_key, derive_phase_key, verifier, MAX_DERIVED_KEY_LEN};
pub use pake::{build_pake_body, parse_pake_body, Pake, PAKE_MSG_LEN};
pub use secretbox::{open, seal, NONCE_LEN, OVERHEAD, TAG_LEN};

use std::fmt;
use zeroize::Zeroize;

/// A 32-byte symmetric key: the SPAKE2 shared key or a key derived from it.
///
/// The bytes are zeroized when the value is dropped, and [`Debug`](fmt::Debug) never shows
/// them (it prints `Key(<redacted>)`).
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    /// Wraps 32 raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Key {
        Key(b)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The 32-byte verifier, HKDF of the shared key with purpose `b"wormhole:verifier"`.
///
/// Both sides get the same verifier exactly when they share the same key; users can compare
/// it out of band (the Python CLI prints it as 64 hex characters with `--verify`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Verifier(pub [u8; 32]);

impl Verifier {
    /// The verifier as 64 lower-case hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Errors from this module. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Decryption failed: the MAC did not verify (wrong key, usually a mistyped code, or a
    /// corrupted message), or the body is shorter than nonce plus MAC.
    #[error("decryption failed (wrong key or corrupted message)")]
    Decrypt,
    /// The peer's `pake` body is malformed (not JSON, no `pake_v1`, bad hex, wrong length,
    /// wrong side byte, or not a curve point). The string describes what was wrong.
    #[error("bad pake message: {0}")]
    BadPakeMessage(String),
    /// The peer's `pake` message is identical to ours: it was reflected back to us.
    #[error("pake message reflected back to us")]
    Reflection,
}
