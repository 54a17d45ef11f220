//! The client state machine.
//!
//! [`Session`] follows protocol.md §6: bind, allocate or claim, open, `pake`, `version`, then
//! numbered phases delivered in order without gaps. It is split into small machines, each a
//! group of fields (in [`state`]) with the transitions that touch them:
//!
//! - **connection** (`link.rs`): up or down, reconnection back-off, what was sent on this
//!   connection, and the frames each state calls for;
//! - **nameplate**: allocate → claim → claimed → release → released;
//! - **mailbox**: open, un-echoed adds (re-sent after a reconnect), the check that a re-opened
//!   mailbox is still ours, close;
//! - **key** (`peer.rs`): our `pake`, the peer's `pake`, key confirmation by the first
//!   decryption;
//! - **phases** (`peer.rs`): outgoing numbering, in-order delivery of incoming phases, and the
//!   messages handed over but not yet read;
//! - **ending**: the mood, the outcome and the close handshake.
//!
//! Everything that must survive a restart is serialized (`persist.rs`); the state contains
//! secrets (the code and the secret from which the SPAKE2 scalar is derived).

mod io;
mod link;
mod peer;
mod persist;
mod state;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::error::{Error, Mood};
use crate::code::{Code, Nameplate};
use crate::crypto::{self, Verifier};
use state::{
    Claim, Connection, Ending, EndingMachine, KeyMachine, KeyState, Link, MailboxMachine,
    MailboxState, NameplateMachine, NameplateState, Phases,
};

pub use io::{Config, Event, Input, Output, DEFAULT_MAX_MESSAGE};
pub use persist::{StateError, STATE_VERSION};

/// How long a session keeps trying to close politely (release and close on the relay) before
/// it ends anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The client version sent in `bind`.
pub const CLIENT_VERSION: (&str, &str) = ("rust", env!("CARGO_PKG_VERSION"));

/// The sans-IO client: feed it [`Input`]s with [`handle`](Session::handle), drain
/// [`Output`]s with [`poll_output`](Session::poll_output), and wake it at
/// [`poll_timeout`](Session::poll_timeout).
///
/// Time is a `Duration` since the session started, given with every input.
///
/// ```
/// use std::time::Duration;
/// use wormhole::core::{Config, Input, Output, Session};
/// let mut s = Session::new(Config::new("example.com/app"), [7; 32]);
/// s.handle(Duration::ZERO, Input::Allocate { words: 2 }).unwrap();
/// assert_eq!(s.poll_output(), Some(Output::Connect));
/// s.handle(Duration::from_millis(5), Input::Connected { pull: false }).unwrap();
/// let Some(Output::Transmit(bind)) = s.poll_output() else { panic!() };
/// assert!(bind.contains(r#""type":"bind""#));
/// ```
#[derive(Serialize, Deserialize)]
pub struct Session {
    config: Config,
    side: String,
    #[serde(with = "super::forms::chacha")]
    rng: ChaCha20Rng,
    #[serde(with = "super::forms::millis")]
    now: Duration,
    connection: Connection,
    nameplate: NameplateMachine,
    mailbox: MailboxMachine,
    key: KeyMachine,
    phases: Phases,
    ending: EndingMachine,
    #[serde(skip)]
    outputs: VecDeque<Output>,
    /// Something other than time may have changed since the journal last looked.
    #[serde(skip)]
    dirty: bool,
    /// The state last handed to the journal, without its time.
    #[serde(skip)]
    journaled: Option<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("appid", &self.config.appid)
            .field("side", &self.side)
            .field("link", &self.connection.link)
            .field("nameplate", &self.nameplate())
            .field("mailbox", &self.mailbox.state.id().is_some())
            .field("confirmed", &self.is_confirmed())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `seed` is its only source of randomness (side, SPAKE2 secret, nonces,
    /// generated code words): give it 32 random bytes, or a fixed value in tests.
    pub fn new(config: Config, seed: [u8; 32]) -> Session {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let side = hex::encode(rng.gen::<[u8; 5]>());
        let mut pake_secret = [0u8; 32];
        rng.fill_bytes(&mut pake_secret);
        let timeout_at = config.timeout;
        let mut session = Session {
            config,
            side,
            rng,
            now: Duration::ZERO,
            connection: Connection::default(),
            nameplate: NameplateMachine::default(),
            mailbox: MailboxMachine::default(),
            key: KeyMachine {
                pake_secret,
                state: KeyState::Waiting,
                held: Default::default(),
                key: None,
            },
            phases: Phases::default(),
            ending: EndingMachine {
                state: Ending::Running,
                timeout_at,
            },
            outputs: VecDeque::new(),
            dirty: true,
            journaled: None,
        };
        session.outputs.push_back(Output::Connect);
        session
    }

    /// This side's id (10 hex characters).
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The code, once known.
    pub fn code(&self) -> Option<&Code> {
        self.nameplate.code.as_ref()
    }

    fn nameplate(&self) -> Option<&Nameplate> {
        match &self.nameplate.state {
            NameplateState::Known { nameplate, .. } => Some(nameplate),
            _ => None,
        }
    }

    fn is_confirmed(&self) -> bool {
        matches!(self.key.state, KeyState::Confirmed { .. })
    }

    /// The verifier, once the key is confirmed.
    pub fn verifier(&self) -> Option<Verifier> {
        if self.is_confirmed() {
            self.key.key.as_ref().map(crypto::verifier)
        } else {
            None
        }
    }

    /// The other side's `app_versions`, once received.
    pub fn peer_app_versions(&self) -> Option<&serde_json::Value> {
        self.phases.peer_versions.as_ref()
    }

    /// Whether the relay confirmed that the nameplate is released.
    pub fn code_consumed(&self) -> bool {
        matches!(
            self.nameplate.state,
            NameplateState::Known {
                claim: Claim::Released,
                ..
            }
        )
    }

    /// How many application messages were given to [`Input::Send`] so far.
    pub fn sent_messages(&self) -> u64 {
        self.phases.next_out + self.phases.outbox.len() as u64
    }

    /// The session time of the last input.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Whether the session is over ([`Event::Closed`] was emitted).
    pub fn is_finished(&self) -> bool {
        matches!(self.ending.state, Ending::Finished { .. })
    }

    /// How the session ended, once it is over.
    pub fn outcome(&self) -> Option<&Result<(), Error>> {
        match &self.ending.state {
            Ending::Finished { outcome } => Some(outcome),
            _ => None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Derives an application key from the shared key (HKDF with `purpose`), once the key is
    /// confirmed.
    pub fn derive_key(&self, purpose: &[u8], length: usize) -> Option<Vec<u8>> {
        if !self.is_confirmed() {
            return None;
        }
        self.key
            .key
            .as_ref()
            .map(|k| crypto::derive_key(k, purpose, length))
    }

    /// The next output, if any. Drain after every [`handle`](Session::handle).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle`](Session::handle) with [`Input::Tick`] next, as session time.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let mut t: Option<Duration> = None;
        let mut consider = |d: Option<Duration>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t| t.min(d)));
            }
        };
        match &self.ending.state {
            Ending::Finished { .. } => return None,
            Ending::Closing { deadline, .. } => consider(Some(*deadline)),
            Ending::Running => consider(self.ending.timeout_at),
        }
        match self.connection.link {
            Link::Down { retry_at } => consider(Some(retry_at)),
            Link::Up { pull: true } => consider(self.connection.next_poll),
            _ => {}
        }
        t
    }

    /// Feeds one input at session time `now`.
    ///
    /// Errors are returned only for application inputs that do not fit (a message too large, a
    /// second code, sending after close); the session itself is unaffected by them. Failures
    /// of the exchange end the session with [`Event::Closed`] instead.
    pub fn handle(&mut self, now: Duration, input: Input) -> Result<(), Error> {
        self.now = self.now.max(now);
        if !matches!(input, Input::Tick) {
            self.dirty = true;
        }
        if self.is_finished() {
            return match input {
                Input::Send(_) | Input::Allocate { .. } | Input::SetCode(_) => Err(Error::Closed),
                Input::DataRead => {
                    self.phases.unread.pop_front();
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        let result = self.dispatch(input);
        self.check_timers();
        self.pump();
        self.check_finished();
        if !self.outputs.is_empty() {
            self.dirty = true;
        }
        result
    }

    fn dispatch(&mut self, input: Input) -> Result<(), Error> {
        match input {
            Input::Allocate { words } => self.allocate(words)?,
            Input::SetCode(code) => self.set_code(code)?,
            Input::ClaimNameplate(nameplate) => self.claim_nameplate(nameplate)?,
            Input::List => self.connection.list_wanted = true,
            Input::Send(data) => self.send(data)?,
            Input::DataRead => {
                self.phases.unread.pop_front();
            }
            Input::Close => {
                let mood = if self.is_confirmed() {
                    Mood::Happy
                } else {
                    Mood::Lonely
                };
                self.end(mood, Ok(()));
            }
            Input::Connected { pull } => self.connected(pull),
            Input::ConnectFailed { reason } => self.connection_lost(Some(reason)),
            Input::Disconnected => self.connection_lost(None),
            Input::Frame(text) => self.frame(&text),
            Input::Tick => {}
        }
        Ok(())
    }

    // ----- application inputs -------------------------------------------------------------

    fn allocate(&mut self, words: usize) -> Result<(), Error> {
        match self.nameplate.state {
            NameplateState::None => {
                self.nameplate.state = NameplateState::Allocating {
                    words: words.max(1),
                };
                Ok(())
            }
            // Already under way (a restored session asked again): nothing new to do.
            NameplateState::Allocating { .. } => Ok(()),
            NameplateState::Known { .. } => {
                Err(Error::InvalidInput("the code is already chosen".into()))
            }
        }
    }

    fn claim_nameplate(&mut self, nameplate: Nameplate) -> Result<(), Error> {
        match &self.nameplate.state {
            NameplateState::Known { nameplate: n, .. } if *n == nameplate => Ok(()),
            NameplateState::Known { .. } => Err(Error::InvalidInput(
                "a different nameplate is already claimed".into(),
            )),
            NameplateState::Allocating { .. } => {
                Err(Error::InvalidInput("this side allocates its code".into()))
            }
            NameplateState::None => {
                self.nameplate.state = NameplateState::Known {
                    nameplate,
                    allocated: false,
                    claim: Claim::Unclaimed,
                };
                Ok(())
            }
        }
    }

    fn set_code(&mut self, code: Code) -> Result<(), Error> {
        if self.nameplate.code.is_some() {
            return Err(Error::InvalidInput("the code is already set".into()));
        }
        self.claim_nameplate(code.nameplate())?;
        self.nameplate.code = Some(code);
        self.start_pake();
        Ok(())
    }

    fn send(&mut self, data: Vec<u8>) -> Result<(), Error> {
        if !matches!(self.ending.state, Ending::Running) {
            return Err(Error::Closed);
        }
        if data.len() > self.config.max_message {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                limit: self.config.max_message,
            });
        }
        self.phases.outbox.push_back(data);
        self.flush_outbox();
        Ok(())
    }

    // ----- ending --------------------------------------------------------------------------

    fn closing(&self) -> bool {
        !matches!(self.ending.state, Ending::Running)
    }

    fn end(&mut self, mood: Mood, outcome: Result<(), Error>) {
        if self.closing() {
            return;
        }
        if let Err(e) = &outcome {
            tracing::info!(error = %e, "wormhole session failed");
        }
        self.ending.state = Ending::Closing {
            mood,
            outcome,
            deadline: self.now.saturating_add(CLOSE_GRACE),
        };
        self.nameplate.release_wanted = true;
        self.key.held.clear();
        self.phases.outbox.clear();
    }

    /// Whether the relay may hold the nameplate for this side, so that it must be released.
    fn holds_nameplate(&self) -> bool {
        // An allocated nameplate is claimed by the relay on allocation; a typed one once the
        // claim was sent (its answer may still be on the way).
        match &self.nameplate.state {
            NameplateState::Known {
                allocated, claim, ..
            } => match claim {
                Claim::Released => false,
                Claim::Claimed | Claim::Requested => true,
                Claim::Unclaimed => *allocated,
            },
            _ => false,
        }
    }

    fn check_finished(&mut self) {
        if !matches!(self.ending.state, Ending::Closing { .. }) {
            return;
        }
        let mailbox_done = !matches!(self.mailbox.state, MailboxState::Known { .. });
        let nameplate_done = !self.holds_nameplate();
        let unreachable = self.connection.link == Link::Gone;
        if (mailbox_done && nameplate_done) || unreachable {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let outcome = match &self.ending.state {
            Ending::Finished { .. } => return,
            Ending::Running => Ok(()),
            Ending::Closing { outcome, .. } => outcome.clone(),
        };
        self.ending.state = Ending::Finished {
            outcome: outcome.clone(),
        };
        if matches!(self.connection.link, Link::Up { .. } | Link::Connecting) {
            self.outputs.push_back(Output::Disconnect);
        }
        self.connection.link = Link::Gone;
        self.emit(Event::Closed(outcome));
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }
}

/// Parses an application phase number: ASCII digits only.
fn phase_number(phase: &str) -> Option<u64> {
    if phase.is_empty() || !phase.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    phase.parse().ok()
}

#[cfg(test)]
mod tests;
