//! The serialized state: a versioned JSON object, what a restore does with it, and the
//! journal's view of it (the state, only when it changed).
//!
//! A restored session never replays its random stream: fresh randomness is mixed into the
//! generator, so nothing drawn after a restore (nonces, code words, back-off jitter) repeats
//! what an earlier restore of the same state drew. What must be identical is rebuilt, not
//! redrawn: our `pake` message comes from a secret in the state and the code, and every
//! sealed message not yet echoed by the relay is kept as sealed and re-sent byte for byte.

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::state::{Claim, Ending, KeyState, Link, NameplateState};
use super::{Event, Output, Session};

/// The version of the serialized state this build writes and reads.
pub const STATE_VERSION: u64 = 1;

/// Why a serialized state cannot be restored (or, rarely, written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not JSON, or not the shape of a session state. The message says no more; the source
    /// (serde's error) may quote the malformed part of the state, which may be secret.
    #[error("the saved wormhole state is malformed")]
    Malformed(#[source] serde_json::Error),
    /// The object has no `version` field (states written before versioning).
    #[error(
        "the saved wormhole state has no version; it was written by an older, incompatible release"
    )]
    Unversioned,
    /// A version this build does not read.
    #[error("the saved wormhole state has version {found}, but this release reads only version {STATE_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: Value,
    },
    /// The state is well formed but inconsistent (e.g. its key cannot be rebuilt).
    #[error("the saved wormhole state is inconsistent: {0}")]
    Inconsistent(String),
}

impl Session {
    /// The serialized state: a printable JSON object with `"version": 1`, valid at every point
    /// of the exchange. **It contains secrets** (the code and the secret from which the
    /// SPAKE2 scalar is derived): store it like a password, never log it.
    pub fn to_json(&self) -> Result<String, StateError> {
        let mut value = self.state_value()?;
        if let Value::Object(map) = &mut value {
            map.insert("now".into(), Value::from(millis(self.now)));
        }
        Ok(value.to_string())
    }

    /// The state without its clock, versioned.
    fn state_value(&self) -> Result<Value, StateError> {
        let mut value = serde_json::to_value(self).map_err(StateError::Malformed)?;
        let Value::Object(map) = &mut value else {
            return Err(StateError::Inconsistent("not an object".into()));
        };
        map.remove("now");
        let mut versioned = serde_json::Map::new();
        versioned.insert("version".into(), Value::from(STATE_VERSION));
        versioned.append(map);
        Ok(Value::Object(versioned))
    }

    /// For a journal: the serialized state if it changed since the last call (time passing
    /// does not count), else `None`. Cheap when nothing but time went by.
    pub fn take_changed_state(&mut self) -> Result<Option<String>, StateError> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        let without_time = self.state_value()?.to_string();
        if self.journaled.as_deref() == Some(without_time.as_str()) {
            return Ok(None);
        }
        let json = self.to_json()?;
        self.journaled = Some(without_time);
        Ok(Some(json))
    }

    /// The journal could not store what [`take_changed_state`](Session::take_changed_state)
    /// gave: give it again on the next call, changed or not.
    pub fn journal_failed(&mut self) {
        self.journaled = None;
        self.dirty = true;
    }

    /// Restores a session serialized with [`to_json`](Session::to_json), mixing `entropy`
    /// (32 fresh random bytes) into its random generator.
    ///
    /// The restored session starts disconnected and asks to connect; it re-opens its mailbox,
    /// re-sends what the relay has not echoed yet, and checks that the relay still has the
    /// mailbox (else it ends with [`Error::MailboxExpired`](crate::core::Error)). It first
    /// emits again what the application may have missed: the code, the key's verifier, the
    /// peer's `app_versions`, every message not yet marked read, the code's release, and the
    /// outcome if the session was over. Time continues from where it was saved.
    pub fn from_json(json: &str, entropy: [u8; 32]) -> Result<Session, StateError> {
        Session::restore(json, Some(entropy))
    }

    /// [`from_json`](Session::from_json) with deliberate faults for the simulator's
    /// self-tests; `faults.replay_randomness` keeps the saved random stream.
    #[cfg(feature = "fault-injection")]
    pub fn from_json_with_faults(
        json: &str,
        entropy: [u8; 32],
        faults: crate::core::Faults,
    ) -> Result<Session, StateError> {
        let mut s = Session::restore(json, (!faults.replay_randomness).then_some(entropy))?;
        s.config.faults = faults;
        Ok(s)
    }

    fn restore(json: &str, entropy: Option<[u8; 32]>) -> Result<Session, StateError> {
        let mut value: Value = serde_json::from_str(json).map_err(StateError::Malformed)?;
        let Value::Object(map) = &mut value else {
            return Err(StateError::Inconsistent(
                "the state is not a JSON object".into(),
            ));
        };
        match map.remove("version") {
            None => return Err(StateError::Unversioned),
            Some(v) if v.as_u64() == Some(STATE_VERSION) => {}
            Some(found) => return Err(StateError::UnsupportedVersion { found }),
        }
        let mut s: Session = serde_json::from_value(value).map_err(StateError::Malformed)?;
        if let Some(entropy) = entropy {
            s.rng = mixed(&s.rng, &entropy);
        }
        if s.key.state.peer().is_some() {
            s.ensure_key()
                .map_err(|e| StateError::Inconsistent(e.to_string()))?;
        }
        s.dirty = true;
        s.replay_events();
        if !s.is_finished() {
            s.connection.link = Link::Connecting;
            s.outputs.push_back(Output::Connect);
        }
        Ok(s)
    }

    /// What the application is told again after a restore.
    fn replay_events(&mut self) {
        if let Some(code) = self.nameplate.code.clone() {
            self.emit(Event::Code(code));
        }
        if let (KeyState::Confirmed { .. }, Some(key)) = (&self.key.state, &self.key.key) {
            let verifier = crate::crypto::verifier(key);
            self.emit(Event::Key { verifier });
        }
        if let Some(v) = self.phases.peer_versions.clone() {
            self.emit(Event::PeerVersions(v));
        }
        for data in self.phases.unread.clone() {
            self.emit(Event::Data(data));
        }
        if let NameplateState::Known {
            claim: Claim::Released,
            ..
        } = self.nameplate.state
        {
            self.emit(Event::CodeConsumed);
        }
        if let Ending::Finished { outcome } = &self.ending.state {
            let outcome = outcome.clone();
            self.emit(Event::Closed(outcome));
        }
    }
}

/// A generator seeded from the old one's secret state and fresh entropy: as unpredictable as
/// either, and never the stream an earlier restore of the same state drew.
fn mixed(old: &ChaCha20Rng, entropy: &[u8; 32]) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(b"wormhole-rs restore reseed v1\0");
    h.update(old.get_seed());
    h.update(old.get_word_pos().to_le_bytes());
    h.update(entropy);
    ChaCha20Rng::from_seed(h.finalize().into())
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
