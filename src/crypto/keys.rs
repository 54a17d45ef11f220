//! HKDF-SHA256 key derivation (protocol.md §7.3).

use super::{Key, Verifier};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// The largest output of [`derive_key`]: HKDF-SHA256 can expand to at most 255 blocks of
/// 32 bytes (8160 bytes). Longer requests are clamped to this length.
pub const MAX_DERIVED_KEY_LEN: usize = 255 * 32;

/// HKDF-SHA256 with no salt, `info` = `purpose`; `length` is clamped to
/// [`MAX_DERIVED_KEY_LEN`].
pub(crate) fn hkdf_sha256(ikm: &[u8], purpose: &[u8], length: usize) -> Vec<u8> {
    let mut okm = vec![0u8; length.min(MAX_DERIVED_KEY_LEN)];
    if Hkdf::<Sha256>::new(None, ikm)
        .expand(purpose, &mut okm)
        .is_err()
    {
        // Unreachable: the length is clamped to the HKDF maximum above.
        okm.clear();
    }
    okm
}

/// HKDF-SHA256 into a 32-byte [`Key`].
fn hkdf_key(ikm: &[u8], purpose: &[u8]) -> Key {
    let mut okm = [0u8; 32];
    if Hkdf::<Sha256>::new(None, ikm)
        .expand(purpose, &mut okm)
        .is_err()
    {
        // Unreachable: 32 bytes is always a valid HKDF-SHA256 output length.
        okm = [0u8; 32];
    }
    let key = Key::from_bytes(okm);
    okm.zeroize();
    key
}

/// The HKDF `info` of a phase key: `b"wormhole:phase:" ‖ SHA256(side) ‖ SHA256(phase)`,
/// using the raw 32-byte digests (79 bytes in all).
pub(crate) fn phase_purpose(side: &str, phase: &str) -> Vec<u8> {
    let mut info = Vec::with_capacity(15 + 64);
    info.extend_from_slice(b"wormhole:phase:");
    info.extend_from_slice(&Sha256::digest(side.as_bytes()));
    info.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    info
}

/// [`derive_phase_key`] over an arbitrary input key (the Python implementation accepts any
/// length); used by the known-answer tests.
pub(crate) fn derive_phase_key_ikm(ikm: &[u8], side: &str, phase: &str) -> Key {
    hkdf_key(ikm, &phase_purpose(side, phase))
}

/// Derives `length` bytes from `key` for `purpose`: HKDF-SHA256 with no salt and
/// `info = purpose`, like Python's `Wormhole.derive_key(purpose, length)`.
///
/// `length` may be anything up to [`MAX_DERIVED_KEY_LEN`] (8160 bytes); larger values are
/// clamped to that maximum, so the result may be shorter than requested. This never panics.
pub fn derive_key(key: &Key, purpose: &[u8], length: usize) -> Vec<u8> {
    hkdf_sha256(key.as_bytes(), purpose, length)
}

/// Derives the secretbox key for one message: `side` is the **sender's** side string and
/// `phase` the phase name (`"version"`, `"0"`, …). HKDF `info` is
/// `b"wormhole:phase:" ‖ SHA256(side) ‖ SHA256(phase)` with raw digests.
pub fn derive_phase_key(key: &Key, side: &str, phase: &str) -> Key {
    derive_phase_key_ikm(key.as_bytes(), side, phase)
}

/// The verifier of a shared key: HKDF with purpose `b"wormhole:verifier"`, 32 bytes.
pub fn verifier(key: &Key) -> Verifier {
    let k = hkdf_key(key.as_bytes(), b"wormhole:verifier");
    Verifier(*k.as_bytes())
}
