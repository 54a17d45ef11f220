//! Symmetric SPAKE2 over Ed25519 and the `pake` phase body (protocol.md §7.1, §7.2).

use super::{CryptoError, Key};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use std::fmt;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroize;

/// Length of a SPAKE2 message: the side byte `b'S'` and a 32-byte Edwards point.
pub const PAKE_MSG_LEN: usize = 33;

/// The side byte of a symmetric SPAKE2 message.
const SIDE_SYMMETRIC: u8 = b'S';

/// One side of a symmetric SPAKE2 exchange, between [`Pake::start`] and [`Pake::finish`].
///
/// Its [`Debug`](fmt::Debug) output shows nothing about the password or secret scalar.
pub struct Pake {
    spake: Spake2<Ed25519Group>,
    msg: [u8; PAKE_MSG_LEN],
}

impl fmt::Debug for Pake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pake(<redacted>)")
    }
}

impl Pake {
    /// Starts SPAKE2. `password` is the whole code (e.g. `"4-purple-sausages"`) and `appid`
    /// the symmetric identity (e.g. `"lothar.com/wormhole/text-or-file-xfer"`); both are
    /// normalised to Unicode NFC, then UTF-8 encoded, as Python does.
    ///
    /// The secret scalar is drawn from a ChaCha20 RNG seeded with `seed`, so the same inputs
    /// and seed always give the same message. Use 32 random bytes in production.
    pub fn start(password: &str, appid: &str, seed: [u8; 32]) -> Pake {
        let mut pw: String = password.nfc().collect();
        let id: String = appid.nfc().collect();
        let rng = ChaCha20Rng::from_seed(seed);
        let (spake, msg_vec) = Spake2::<Ed25519Group>::start_symmetric_with_rng(
            &Password::new(pw.as_bytes()),
            &Identity::new(id.as_bytes()),
            rng,
        );
        pw.zeroize();
        let mut msg = [0u8; PAKE_MSG_LEN];
        if msg_vec.len() == PAKE_MSG_LEN {
            msg.copy_from_slice(&msg_vec);
        }
        Pake { spake, msg }
    }

    /// Our 33-byte SPAKE2 message (`b'S'` followed by the point).
    pub fn message(&self) -> &[u8; PAKE_MSG_LEN] {
        &self.msg
    }

    /// The plaintext body of our `pake` phase, exactly as Python serialises it:
    /// `{"pake_v1": "<66 hex chars>"}` (81 bytes).
    pub fn body(&self) -> Vec<u8> {
        build_pake_body(&self.msg)
    }

    /// Parses the peer's `pake` body with [`parse_pake_body`], finishes SPAKE2 and returns
    /// the 32-byte shared key.
    ///
    /// Errors: [`CryptoError::BadPakeMessage`] for a malformed body or an invalid point,
    /// [`CryptoError::Reflection`] if the peer message equals ours. A wrong code is **not**
    /// an error here: it yields a key that differs from the peer's.
    pub fn finish(self, peer_body: &[u8]) -> Result<Key, CryptoError> {
        let peer = parse_pake_body(peer_body)?;
        if peer == self.msg {
            return Err(CryptoError::Reflection);
        }
        let mut shared = self.spake.finish(&peer).map_err(|e| {
            CryptoError::BadPakeMessage(match e {
                spake2::Error::CorruptMessage => "not a valid curve point".to_owned(),
                other => other.to_string(),
            })
        })?;
        let mut key = [0u8; 32];
        let ok = shared.len() == key.len();
        if ok {
            key.copy_from_slice(&shared);
        }
        shared.zeroize();
        if !ok {
            return Err(CryptoError::BadPakeMessage(
                "unexpected shared key length".to_owned(),
            ));
        }
        let out = Key::from_bytes(key);
        key.zeroize();
        Ok(out)
    }
}

/// Builds a `pake` body from a 33-byte SPAKE2 message, byte-for-byte as Python's
/// `json.dumps({"pake_v1": hex})`: `{"pake_v1": "<66 lower-case hex chars>"}`.
pub fn build_pake_body(msg: &[u8; PAKE_MSG_LEN]) -> Vec<u8> {
    format!("{{\"pake_v1\": \"{}\"}}", hex::encode(msg)).into_bytes()
}

/// Extracts the 33-byte SPAKE2 message from a `pake` body.
///
/// Accepts any JSON object with a string member `pake_v1` (compact or spaced, extra members
/// ignored) holding 66 hex characters whose first byte is `b'S'`. Anything else is a
/// [`CryptoError::BadPakeMessage`]. Never panics.
pub fn parse_pake_body(body: &[u8]) -> Result<[u8; PAKE_MSG_LEN], CryptoError> {
    let bad = |why: &str| CryptoError::BadPakeMessage(why.to_owned());
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| bad("body is not valid JSON"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| bad("body is not a JSON object"))?;
    let field = obj
        .get("pake_v1")
        .ok_or_else(|| bad("missing \"pake_v1\""))?;
    let hex_str = field
        .as_str()
        .ok_or_else(|| bad("\"pake_v1\" is not a string"))?;
    let bytes = hex::decode(hex_str).map_err(|_| bad("\"pake_v1\" is not valid hex"))?;
    let msg: [u8; PAKE_MSG_LEN] = bytes.as_slice().try_into().map_err(|_| {
        CryptoError::BadPakeMessage(format!(
            "message is {} bytes, expected {PAKE_MSG_LEN}",
            bytes.len()
        ))
    })?;
    if msg[0] != SIDE_SYMMETRIC {
        return Err(bad("message side byte is not 'S' (not symmetric SPAKE2)"));
    }
    Ok(msg)
}
