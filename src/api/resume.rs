//! Resume across restarts: serializing a [`Wormhole`] (and the seed's [`Initiator`] and
//! [`Receiver`]) and restoring it from the string or from a [`Storage`] journal.

use std::sync::{Arc, Mutex};

use rand::RngCore;

use super::driver::{state_error, Command, Observed};
use super::{Initiator, Receiver, Wormhole};
use crate::code::DEFAULT_WORDS;
use crate::core::{Error, Session};
use crate::storage::Storage;

impl Wormhole {
    /// The session's state as a printable JSON string (a small object with `"version": 1`),
    /// valid at every point of the exchange: before the code, after allocation, after the
    /// key exchange, after messages were sent or received, even after the end. Restore it
    /// with [`from_serialized`](Wormhole::from_serialized) in this or another process; the
    /// exchange then goes on where it was, without the other side noticing.
    ///
    /// It holds the peer's `app_versions` and the messages received but not yet returned by
    /// [`recv`](Wormhole::recv). Callbacks, the transport, the clock and the connection are not
    /// in it.
    ///
    /// **The string holds secrets** (the code and the secret of the key exchange): keep it
    /// like a password, never log it. `Debug` of a `Wormhole` never shows it.
    pub async fn serialize(&mut self) -> Result<String, Error> {
        if self.saved.is_some() {
            // A restored wormhole resumes on its first use, this one included.
            self.start()?;
        }
        if let Some(running) = &self.running {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if running.cmds.send(Command::Serialize { reply: tx }).is_ok() {
                if let Ok(result) = rx.await {
                    return result;
                }
            }
            // The driver ended meanwhile: its final state is below.
            while self.running.is_some() {
                self.next_event().await;
            }
        }
        if self.outcome.is_some() {
            return self.observed().final_state.clone().ok_or(Error::Closed);
        }
        if self.unstarted.is_none() {
            self.unstarted = Some(Session::new(self.config.clone(), self.fresh_seed()));
        }
        match &self.unstarted {
            Some(session) => session.to_json().map_err(state_error),
            None => Err(Error::Closed),
        }
    }

    /// Stops this wormhole **without closing it** and returns its serialized state, to be
    /// restored later with [`from_serialized`](Wormhole::from_serialized) (or
    /// [`from_storage`](Wormhole::from_storage): a journal is kept, not removed). Use it for a
    /// graceful shutdown: dropping a `Wormhole` instead closes the exchange politely
    /// (releases the code, closes the mailbox), after which it cannot be resumed. The
    /// connection is dropped; the other side just waits. The string holds secrets.
    pub async fn suspend(mut self) -> Result<String, Error> {
        if let Some(saved) = self.saved.take() {
            return Ok(saved);
        }
        if let Some(running) = self.running.take() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            running
                .cmds
                .send(Command::Suspend { reply: tx })
                .map_err(|_| Error::Closed)?;
            return match rx.await {
                Ok(result) => result,
                // The driver had ended: the exchange is over.
                Err(_) => self.observed().final_state.clone().ok_or(Error::Closed),
            };
        }
        self.serialize().await
    }

    /// Restores a wormhole from [`serialize`](Wormhole::serialize)'s string. It reconnects to
    /// the relay it used (the URL is in the state) on its first use (any `async` method,
    /// within a tokio runtime), re-opens its mailbox,
    /// re-sends what the relay had not confirmed, and hands over again what the application
    /// had not read yet: [`recv`](Wormhole::recv) returns those messages first.
    ///
    /// The settings of the session (app id, schedule, timeout, `app_versions`) come from the
    /// state; of the builder methods only `with_transport`, `with_tls`, `with_clock`,
    /// `with_journal` and `with_seed` (the fresh entropy mixed into the restored session)
    /// apply. A state from another release version is refused with [`Error::BadState`].
    pub fn from_serialized(state: &str) -> Result<Wormhole, Error> {
        // Parsed once here to refuse a bad state early and to know what it holds; restored
        // for real (with fresh entropy) when the driver starts.
        let session = Session::from_json(state, [0; 32]).map_err(state_error)?;
        let config = session.config().clone();
        let Some(url) = config.relay_url.clone() else {
            return Err(Error::BadState(
                "the saved state does not name its relay".into(),
            ));
        };
        let mut w = Wormhole::new(&config.appid, &url);
        w.config = config;
        w.observed = Arc::new(Mutex::new(Observed::from_session(&session)));
        w.saved = Some(state.to_string());
        Ok(w)
    }

    /// Restores the wormhole journaled under `key` in `storage` (see
    /// [`with_journal`](Wormhole::with_journal)) and keeps journaling there. `Ok(None)` if
    /// nothing is saved under `key`.
    pub fn from_storage(storage: Arc<dyn Storage>, key: &str) -> Result<Option<Wormhole>, Error> {
        let bytes = storage
            .get(key)
            .map_err(|e| Error::BadState(format!("cannot read the journal: {e}")))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::BadState("the journal is not UTF-8 text".into()))?;
        Ok(Some(
            Wormhole::from_serialized(&text)?.with_journal(storage, key),
        ))
    }

    /// Commits these deliberate faults (simulator self-tests only; feature
    /// `fault-injection`). On a restored wormhole, `replay_randomness` skips the fresh
    /// entropy.
    #[cfg(feature = "fault-injection")]
    pub fn with_faults(mut self, faults: crate::core::Faults) -> Wormhole {
        self.config.faults = faults;
        self
    }

    /// The session the driver runs: the restored one, the one made early by `serialize`, or
    /// a new one.
    pub(super) fn make_session(&mut self) -> Result<Session, Error> {
        if let Some(saved) = self.saved.take() {
            let entropy = self.fresh_seed();
            #[cfg(feature = "fault-injection")]
            let session = Session::from_json_with_faults(&saved, entropy, self.config.faults);
            #[cfg(not(feature = "fault-injection"))]
            let session = Session::from_json(&saved, entropy);
            return session.map_err(state_error);
        }
        if let Some(session) = self.unstarted.take() {
            return Ok(session);
        }
        Ok(Session::new(self.config.clone(), self.fresh_seed()))
    }

    fn fresh_seed(&self) -> [u8; 32] {
        self.seed.unwrap_or_else(|| {
            let mut s = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut s);
            s
        })
    }

    /// The seed's one-shot exchange, once: `mine` is sent unless a message was already sent
    /// (by this wormhole before it was serialized and restored).
    pub(super) async fn get_data_once(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        if self.observed().sent_messages > 0 {
            let theirs = self.recv().await;
            let closed = self.close().await;
            if let Err(e) = closed {
                tracing::debug!(error = %e, "close after a successful exchange failed");
            }
            return theirs;
        }
        self.get_data(mine).await
    }
}

impl Initiator {
    /// See [`Wormhole::serialize`]; the string holds secrets.
    pub async fn serialize(&mut self) -> Result<String, Error> {
        self.wormhole.serialize().await
    }

    /// See [`Wormhole::suspend`]: stops without closing, returns the state.
    pub async fn suspend(self) -> Result<String, Error> {
        self.wormhole.suspend().await
    }

    /// See [`Wormhole::from_serialized`]. A restored initiator that was allocating its code
    /// gets it from [`get_code`](Initiator::get_code).
    pub fn from_serialized(state: &str) -> Result<Initiator, Error> {
        Ok(Initiator {
            wormhole: Wormhole::from_serialized(state)?,
            words: DEFAULT_WORDS,
        })
    }

    /// See [`Wormhole::from_storage`].
    pub fn from_storage(storage: Arc<dyn Storage>, key: &str) -> Result<Option<Initiator>, Error> {
        Ok(Wormhole::from_storage(storage, key)?.map(Initiator::from_wormhole))
    }
}

impl Receiver {
    /// See [`Wormhole::serialize`]; the string holds secrets.
    pub async fn serialize(&mut self) -> Result<String, Error> {
        self.wormhole.serialize().await
    }

    /// See [`Wormhole::suspend`]: stops without closing, returns the state.
    pub async fn suspend(self) -> Result<String, Error> {
        self.wormhole.suspend().await
    }

    /// See [`Wormhole::from_serialized`].
    pub fn from_serialized(state: &str) -> Result<Receiver, Error> {
        Ok(Receiver::from_wormhole(Wormhole::from_serialized(state)?))
    }

    /// See [`Wormhole::from_storage`].
    pub fn from_storage(storage: Arc<dyn Storage>, key: &str) -> Result<Option<Receiver>, Error> {
        Ok(Wormhole::from_storage(storage, key)?.map(Receiver::from_wormhole))
    }
}
