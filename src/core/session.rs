//! The client state machine.
//!
//! [`Session`] follows protocol.md §6: bind, allocate or claim, open, `pake`, `version`, then
//! numbered phases delivered in order without gaps. It is split into small machines, each a
//! group of fields with the transitions that touch them:
//!
//! - **connection**: up or down, reconnection back-off, what was sent on this connection;
//! - **nameplate**: allocate → claim → claimed → release → released;
//! - **mailbox**: open, un-echoed adds (re-sent after a reconnect), close;
//! - **key**: our `pake`, the peer's `pake`, key confirmation by the first decryption;
//! - **phases**: outgoing numbering and the in-order delivery of incoming phases;
//! - **ending**: the mood, the outcome and the close handshake.
//!
//! Everything that must survive a restart is serialized; [`Session::to_json`] contains
//! secrets (the code and the seed from which the SPAKE2 secret is rebuilt).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{Error, Mood};
use super::schedule::{jitter, reconnect_delay, Schedule, DEFAULT_TIMEOUT, STABLE_CONNECTION};
use crate::code::{Code, Nameplate};
use crate::crypto::{self, Key, Pake, Verifier};
use crate::wire::{ClientFrame, ClientMessage, ServerFrame, ServerMessage, Welcome};

/// How long a session keeps trying to close politely (release and close on the relay) before
/// it ends anyway.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The default largest application message: 256 KiB, well under the relay's 1 MiB frame limit
/// once hex-encoded.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;

/// The client version sent in `bind`.
pub const CLIENT_VERSION: (&str, &str) = ("rust", env!("CARGO_PKG_VERSION"));

/// Settings of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Application id: codes, nameplates and keys are scoped to it.
    pub appid: String,
    /// Sent to the other side inside the encrypted `version` message.
    pub app_versions: Value,
    /// Polling (pull transports) and reconnection (push transports) schedule.
    pub schedule: Schedule,
    /// Hard timeout from the start of the session; `None` waits forever.
    #[serde(with = "super::forms::millis_opt")]
    pub timeout: Option<Duration>,
    /// Largest application message accepted by [`Input::Send`].
    pub max_message: usize,
    /// Deliberate faults, for the simulator's self-tests (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[serde(skip)]
    pub faults: super::Faults,
}

impl Config {
    /// A configuration with the defaults for `appid`.
    pub fn new(appid: impl Into<String>) -> Config {
        Config {
            appid: appid.into(),
            app_versions: Value::Object(Default::default()),
            schedule: Schedule::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            max_message: DEFAULT_MAX_MESSAGE,
            #[cfg(feature = "fault-injection")]
            faults: super::Faults::default(),
        }
    }
}

/// What the application or the driver tells the session.
#[derive(Debug, Clone)]
pub enum Input {
    /// Ask the relay for a nameplate and make a code with this many words.
    Allocate {
        /// Number of words (the default elsewhere is 2).
        words: usize,
    },
    /// Use this code (the receiving side).
    SetCode(Code),
    /// Claim a nameplate before the rest of the code is known (interactive entry).
    ClaimNameplate(Nameplate),
    /// Ask the relay for the nameplates in use.
    List,
    /// Send one application message.
    Send(Vec<u8>),
    /// Close the session (mood `happy` if the key was confirmed, `lonely` otherwise).
    Close,
    /// The driver connected to the relay.
    Connected {
        /// `true` for pull transports, which need [`Output::Poll`].
        pull: bool,
    },
    /// The driver could not connect.
    ConnectFailed {
        /// Why, for the error message (no secrets).
        reason: String,
    },
    /// The connection dropped.
    Disconnected,
    /// A text frame from the relay.
    Frame(String),
    /// Time passed (the driver woke up at [`Session::poll_timeout`]).
    Tick,
}

/// What the session asks of the driver and tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Connect to the relay, then report [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect,
    /// Send this text frame on the current connection.
    Transmit(String),
    /// Pull transports: fetch waiting frames now.
    Poll,
    /// Drop the connection: the session is over.
    Disconnect,
    /// Something for the application.
    Event(Event),
}

/// Application events.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The relay's welcome (message of the day etc.).
    Welcome(Welcome),
    /// The code allocated by [`Input::Allocate`]: show it to the user.
    Code(Code),
    /// Nameplates in use, after [`Input::List`].
    Nameplates(Vec<Nameplate>),
    /// The nameplate was released: the code can no longer be used by anyone else.
    CodeConsumed,
    /// The key is confirmed (a message of the other side decrypted).
    Key {
        /// Both sides derive the same verifier; users may compare it.
        verifier: Verifier,
    },
    /// The `app_versions` of the other side.
    PeerVersions(Value),
    /// An application message from the other side, in order.
    Data(Vec<u8>),
    /// The session is over; no more events follow.
    Closed(Result<(), Error>),
}

/// Connection state, as far as the session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Link {
    /// Waiting for the driver to report the outcome of [`Output::Connect`].
    Connecting,
    /// Connected; `pull` says whether polls are needed.
    Up { pull: bool },
    /// Down; reconnect at the given time.
    Down {
        #[serde(with = "super::forms::millis")]
        retry_at: Duration,
    },
    /// Down for good: the session is over.
    Gone,
}

/// What was already sent on the current connection (reset on every reconnect).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sent {
    allocate: bool,
    claim: bool,
    release: bool,
    open: bool,
    close: bool,
}

/// The ending: why, and how far the polite close got.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ending {
    mood: Mood,
    outcome: Result<(), Error>,
    #[serde(with = "super::forms::millis")]
    deadline: Duration,
}

/// A message of the other side, kept until it can be processed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeerMessage {
    side: String,
    phase: String,
    body: String,
}

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

    // connection
    link: Link,
    ever_connected: bool,
    attempts: u32,
    /// When the current connection came up (per connection, like `sent`).
    #[serde(skip)]
    up_since: Option<Duration>,
    /// Per connection: a restored session starts on a new one.
    #[serde(skip)]
    sent: Sent,
    #[serde(with = "super::forms::millis_opt")]
    next_poll: Option<Duration>,
    list_wanted: bool,

    // nameplate
    allocate_words: Option<usize>,
    nameplate: Option<Nameplate>,
    code: Option<Code>,
    claimed: bool,
    release_wanted: bool,
    released: bool,

    // mailbox
    mailbox: Option<String>,
    /// Our adds not yet echoed by the relay, in the order they were made.
    unechoed: Vec<(String, String)>,
    closed: bool,

    // key
    #[serde(with = "super::forms::hex32_opt")]
    pake_seed: Option<[u8; 32]>,
    peer_side: Option<String>,
    #[serde(with = "super::forms::hex_opt")]
    peer_pake: Option<Vec<u8>>,
    #[serde(skip)]
    key: Option<Key>,
    confirmed: bool,
    held: Vec<PeerMessage>,

    // phases
    outbox: VecDeque<Vec<u8>>,
    next_out: u64,
    processed: BTreeSet<String>,
    inbox: BTreeMap<u64, Vec<u8>>,
    next_in: u64,

    // ending
    ending: Option<Ending>,
    finished: bool,
    #[serde(with = "super::forms::millis_opt")]
    timeout_at: Option<Duration>,

    #[serde(skip)]
    outputs: VecDeque<Output>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("appid", &self.config.appid)
            .field("side", &self.side)
            .field("link", &self.link)
            .field("nameplate", &self.nameplate)
            .field("mailbox", &self.mailbox.is_some())
            .field("confirmed", &self.confirmed)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session. `seed` is its only source of randomness (side, SPAKE2 secret, nonces,
    /// generated code words): give it 32 random bytes, or a fixed value in tests.
    pub fn new(config: Config, seed: [u8; 32]) -> Session {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let side = hex::encode(rng.gen::<[u8; 5]>());
        let timeout_at = config.timeout;
        let mut session = Session {
            config,
            side,
            rng,
            now: Duration::ZERO,
            link: Link::Connecting,
            ever_connected: false,
            attempts: 0,
            up_since: None,
            sent: Sent::default(),
            next_poll: None,
            list_wanted: false,
            allocate_words: None,
            nameplate: None,
            code: None,
            claimed: false,
            release_wanted: false,
            released: false,
            mailbox: None,
            unechoed: Vec::new(),
            closed: false,
            pake_seed: None,
            peer_side: None,
            peer_pake: None,
            key: None,
            confirmed: false,
            held: Vec::new(),
            outbox: VecDeque::new(),
            next_out: 0,
            processed: BTreeSet::new(),
            inbox: BTreeMap::new(),
            next_in: 0,
            ending: None,
            finished: false,
            timeout_at,
            outputs: VecDeque::new(),
        };
        session.outputs.push_back(Output::Connect);
        session
    }

    /// The serialized state, as JSON. **It contains secrets** (the code and the seed of the
    /// SPAKE2 secret): store it like a password and never log it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Restores a session serialized with [`to_json`](Session::to_json). The restored session
    /// starts disconnected and asks to connect; it re-opens its mailbox and re-sends what the
    /// relay has not echoed yet. Time continues from where it was saved.
    pub fn from_json(json: &str) -> Result<Session, serde_json::Error> {
        let mut s: Session = serde_json::from_str(json)?;
        s.next_poll = None;
        if s.peer_pake.is_some() {
            // The key is not serialized; rebuild it from the SPAKE2 seed and the peer's pake.
            if let Err(e) = s.ensure_key() {
                tracing::warn!(error = %e, "could not rebuild the key of a restored session");
            }
        }
        if !s.finished {
            s.link = Link::Connecting;
            s.outputs.push_back(Output::Connect);
        }
        Ok(s)
    }

    /// This side's id (10 hex characters).
    pub fn side(&self) -> &str {
        &self.side
    }

    /// The code, once known.
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// The verifier, once the key is confirmed.
    pub fn verifier(&self) -> Option<Verifier> {
        if self.confirmed {
            self.key.as_ref().map(crypto::verifier)
        } else {
            None
        }
    }

    /// The session time of the last input.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Whether the session is over ([`Event::Closed`] was emitted).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Derives an application key from the shared key (HKDF with `purpose`), once the key is
    /// confirmed.
    pub fn derive_key(&self, purpose: &[u8], length: usize) -> Option<Vec<u8>> {
        if !self.confirmed {
            return None;
        }
        self.key
            .as_ref()
            .map(|k| crypto::derive_key(k, purpose, length))
    }

    /// The next output, if any. Drain after every [`handle`](Session::handle).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`handle`](Session::handle) with [`Input::Tick`] next, as session time.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.finished {
            return None;
        }
        let mut t: Option<Duration> = None;
        let mut consider = |d: Option<Duration>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t| t.min(d)));
            }
        };
        match &self.ending {
            Some(e) => consider(Some(e.deadline)),
            None => consider(self.timeout_at),
        }
        if let Link::Down { retry_at } = self.link {
            consider(Some(retry_at));
        }
        if let Link::Up { pull: true } = self.link {
            consider(self.next_poll);
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
        if self.finished {
            return match input {
                Input::Send(_) | Input::Allocate { .. } | Input::SetCode(_) => Err(Error::Closed),
                _ => Ok(()),
            };
        }
        let result = self.dispatch(input);
        self.check_timers();
        self.pump();
        self.check_finished();
        result
    }

    fn dispatch(&mut self, input: Input) -> Result<(), Error> {
        match input {
            Input::Allocate { words } => self.allocate(words)?,
            Input::SetCode(code) => self.set_code(code)?,
            Input::ClaimNameplate(nameplate) => self.claim_nameplate(nameplate)?,
            Input::List => self.list_wanted = true,
            Input::Send(data) => self.send(data)?,
            Input::Close => {
                let mood = if self.confirmed {
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
        if self.allocate_words.is_some() || self.nameplate.is_some() {
            return Err(Error::InvalidInput("the code is already chosen".into()));
        }
        self.allocate_words = Some(words.max(1));
        Ok(())
    }

    fn claim_nameplate(&mut self, nameplate: Nameplate) -> Result<(), Error> {
        match &self.nameplate {
            Some(n) if *n == nameplate => Ok(()),
            Some(_) => Err(Error::InvalidInput(
                "a different nameplate is already claimed".into(),
            )),
            None if self.allocate_words.is_some() => {
                Err(Error::InvalidInput("this side allocates its code".into()))
            }
            None => {
                self.nameplate = Some(nameplate);
                Ok(())
            }
        }
    }

    fn set_code(&mut self, code: Code) -> Result<(), Error> {
        if self.code.is_some() {
            return Err(Error::InvalidInput("the code is already set".into()));
        }
        self.claim_nameplate(code.nameplate())?;
        self.code = Some(code);
        self.start_pake();
        Ok(())
    }

    fn send(&mut self, data: Vec<u8>) -> Result<(), Error> {
        if self.ending.is_some() {
            return Err(Error::Closed);
        }
        if data.len() > self.config.max_message {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                limit: self.config.max_message,
            });
        }
        self.outbox.push_back(data);
        self.flush_outbox();
        Ok(())
    }

    // ----- connection ----------------------------------------------------------------------

    fn connected(&mut self, pull: bool) {
        if self.link != Link::Connecting {
            return;
        }
        self.link = Link::Up { pull };
        self.ever_connected = true;
        // The back-off starts over only once this connection proves healthy (see
        // `connection_lost`), not merely because it opened.
        self.up_since = Some(self.now);
        self.sent = Sent::default();
        self.next_poll = pull.then(|| self.next_poll_after(self.now));
        self.transmit(ClientMessage::Bind {
            appid: self.config.appid.clone(),
            side: self.side.clone(),
            client_version: Some(Value::from(vec![CLIENT_VERSION.0, CLIENT_VERSION.1])),
        });
    }

    fn connection_lost(&mut self, reason: Option<String>) {
        if matches!(self.link, Link::Gone | Link::Down { .. }) {
            return;
        }
        if !self.ever_connected {
            // The first connection failed: say so at once rather than retrying in silence.
            self.link = Link::Gone;
            let reason = reason.unwrap_or_else(|| "the connection was refused".into());
            self.end(Mood::Errory, Err(Error::RelayUnreachable(reason)));
            return;
        }
        let up_for = self.up_since.take().map(|t| self.now.saturating_sub(t));
        if up_for.is_some_and(|d| d >= STABLE_CONNECTION) {
            self.attempts = 0;
        }
        #[cfg(feature = "fault-injection")]
        if self.config.faults.forget_unechoed {
            // Deliberate fault: what the relay has not echoed is never sent again.
            self.unechoed.clear();
        }
        let nominal = reconnect_delay(&self.config.schedule, self.schedule_time(), self.attempts);
        let delay = jitter(nominal, &mut self.rng);
        self.attempts = self.attempts.saturating_add(1);
        self.link = Link::Down {
            retry_at: self.now.saturating_add(delay),
        };
        self.sent = Sent::default();
        tracing::debug!(
            ?delay,
            attempt = self.attempts,
            "connection lost; will reconnect"
        );
    }

    /// The time at which the schedule is read: now (or, with the deliberate fault
    /// `schedule_off_by_one`, the start of the next step, so the next step's interval is used
    /// one step early).
    fn schedule_time(&self) -> Duration {
        #[cfg(feature = "fault-injection")]
        if self.config.faults.schedule_off_by_one {
            if let Some(&(when, _)) = self
                .config
                .schedule
                .steps()
                .iter()
                .find(|(when, _)| *when > self.now)
            {
                return when;
            }
        }
        self.now
    }

    /// When the poll after one at `at` is due: `at` plus the schedule's interval.
    fn next_poll_after(&self, at: Duration) -> Duration {
        at.saturating_add(self.config.schedule.interval_at(self.schedule_time()))
    }

    fn check_timers(&mut self) {
        if let Link::Down { retry_at } = self.link {
            if self.now >= retry_at {
                self.link = Link::Connecting;
                self.outputs.push_back(Output::Connect);
            }
        }
        if let (Link::Up { pull: true }, Some(at)) = (self.link, self.next_poll) {
            if self.now >= at {
                self.outputs.push_back(Output::Poll);
                self.next_poll = Some(self.next_poll_after(self.now));
            }
        }
        match &self.ending {
            None => {
                if self.timeout_at.is_some_and(|t| self.now >= t) {
                    self.end(Mood::Lonely, Err(Error::Timeout));
                    if !self.link_up() {
                        // A hard deadline does not wait for a reconnection: close politely
                        // only where the relay can be reached now.
                        self.finish();
                    }
                }
            }
            Some(e) => {
                if self.now < e.deadline {
                    return;
                }
                // A successful close whose messages the relay has not stored yet keeps
                // trying until the hard timeout: ending at the close grace would report
                // success for messages the other side never gets.
                if e.outcome.is_ok() && !self.unechoed.is_empty() {
                    match self.timeout_at {
                        Some(t) if self.now >= t => {
                            tracing::info!(
                                pending = self.unechoed.len(),
                                "timed out before the relay stored our last messages"
                            );
                            if let Some(e) = &mut self.ending {
                                e.mood = Mood::Lonely;
                                e.outcome = Err(Error::Timeout);
                            }
                            self.finish();
                        }
                        later => {
                            if let Some(e) = &mut self.ending {
                                e.deadline = later.unwrap_or(Duration::MAX);
                            }
                        }
                    }
                    return;
                }
                tracing::debug!("close handshake did not finish in time; ending anyway");
                self.finish();
            }
        }
    }

    // ----- frames from the relay -----------------------------------------------------------

    fn frame(&mut self, text: &str) {
        let frame = match ServerFrame::parse(text) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed frame from the relay");
                return;
            }
        };
        match frame.message {
            ServerMessage::Welcome { welcome } => {
                if let Some(err) = &welcome.error {
                    self.end(Mood::Unwelcome, Err(Error::Unwelcome(err.clone())));
                }
                self.emit(Event::Welcome(welcome));
            }
            ServerMessage::Nameplates { nameplates } => {
                let list = nameplates
                    .into_iter()
                    .filter_map(|n| Nameplate::new(&n.id).ok())
                    .collect();
                self.emit(Event::Nameplates(list));
            }
            ServerMessage::Allocated { nameplate } => self.allocated(&nameplate),
            ServerMessage::Claimed { mailbox } => {
                if self.nameplate.is_some() {
                    self.claimed = true;
                    if self.mailbox.is_none() {
                        self.mailbox = Some(mailbox);
                    }
                }
            }
            ServerMessage::Released => {
                if !self.released {
                    self.released = true;
                    self.emit(Event::CodeConsumed);
                }
            }
            ServerMessage::Message {
                side, phase, body, ..
            } => {
                if side == self.side {
                    self.unechoed.retain(|(p, _)| *p != phase);
                } else {
                    self.peer_message(PeerMessage { side, phase, body });
                }
            }
            ServerMessage::Closed => self.closed = true,
            ServerMessage::Error { error, .. } => {
                if self.ending.is_some() {
                    // Re-sent release/close after a reconnect may be refused; we are leaving.
                    tracing::debug!(%error, "relay error while closing");
                    self.finish();
                } else if error == "crowded" {
                    self.end(Mood::Errory, Err(Error::Crowded));
                } else {
                    self.end(Mood::Errory, Err(Error::Relay(error)));
                }
            }
            ServerMessage::Ack { .. } | ServerMessage::Pong { .. } | ServerMessage::Unknown => {}
        }
    }

    fn allocated(&mut self, nameplate: &str) {
        let Some(words) = self.allocate_words else {
            return;
        };
        if self.nameplate.is_some() {
            return;
        }
        match Nameplate::new(nameplate) {
            Ok(n) => {
                let code = Code::generate(&n, words, &mut self.rng);
                self.nameplate = Some(n);
                self.code = Some(code.clone());
                self.emit(Event::Code(code));
                self.start_pake();
            }
            Err(_) => self.end(
                Mood::Errory,
                Err(Error::Relay(format!(
                    "the relay allocated an invalid nameplate {nameplate:?}"
                ))),
            ),
        }
    }

    // ----- key and phases ------------------------------------------------------------------

    fn start_pake(&mut self) {
        let Some(code) = &self.code else { return };
        if self.pake_seed.is_some() {
            return;
        }
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        self.pake_seed = Some(seed);
        let pake = Pake::start(code.as_str(), &self.config.appid, seed);
        self.add("pake".into(), pake.body());
        // The peer's pake may have arrived before our code was complete.
        self.process_held();
    }

    /// Rebuilds the shared key from the stored seed and the peer's pake (after a restore).
    fn ensure_key(&mut self) -> Result<(), Error> {
        if self.key.is_some() {
            return Ok(());
        }
        let (Some(code), Some(seed), Some(peer)) = (&self.code, self.pake_seed, &self.peer_pake)
        else {
            return Err(Error::Protocol("no key yet".into()));
        };
        let pake = Pake::start(code.as_str(), &self.config.appid, seed);
        match pake.finish(peer) {
            Ok(key) => {
                self.key = Some(key);
                Ok(())
            }
            Err(e) => Err(Error::Protocol(format!("bad pake message: {e}"))),
        }
    }

    fn peer_message(&mut self, msg: PeerMessage) {
        if self.ending.is_some() {
            return;
        }
        if self.peer_side.as_ref().is_some_and(|p| *p != msg.side) {
            tracing::warn!("ignoring a message from a third side");
            return;
        }
        if self.processed.contains(&msg.phase) {
            return;
        }
        // Any message of the other side means it has the code: release the nameplate.
        self.release_wanted = true;
        let key_ready = self.peer_pake.is_some() && self.pake_seed.is_some();
        if msg.phase == "pake" {
            if self.pake_seed.is_none() {
                self.held.push(msg);
                return;
            }
            self.processed.insert(msg.phase.clone());
            let body = match hex::decode(&msg.body) {
                Ok(b) => b,
                Err(_) => {
                    return self.end(
                        Mood::Scary,
                        Err(Error::Protocol("pake body is not hex".into())),
                    )
                }
            };
            self.peer_side = Some(msg.side);
            self.peer_pake = Some(body);
            if let Err(e) = self.ensure_key() {
                return self.end(Mood::Scary, Err(e));
            }
            let version = serde_json::json!({ "app_versions": self.config.app_versions });
            self.add_encrypted("version".into(), version.to_string().as_bytes());
            self.process_held();
            return;
        }
        if !key_ready {
            self.held.push(msg);
            return;
        }
        self.processed.insert(msg.phase.clone());
        if let Err(e) = self.ensure_key() {
            return self.end(Mood::Scary, Err(e));
        }
        let Some(key) = &self.key else { return };
        let plaintext = match hex::decode(&msg.body) {
            Ok(body) => {
                let phase_key = crypto::derive_phase_key(key, &msg.side, &msg.phase);
                crypto::open(&phase_key, &body).ok()
            }
            Err(_) => None,
        };
        let Some(plaintext) = plaintext else {
            return self.end(Mood::Scary, Err(Error::WrongCode));
        };
        if !self.confirmed {
            self.confirmed = true;
            let verifier = crypto::verifier(key);
            self.emit(Event::Key { verifier });
            self.flush_outbox();
        }
        if msg.phase == "version" {
            let versions = serde_json::from_slice::<Value>(&plaintext)
                .ok()
                .and_then(|v| v.get("app_versions").cloned())
                .unwrap_or_else(|| Value::Object(Default::default()));
            self.emit(Event::PeerVersions(versions));
        } else if let Some(n) = phase_number(&msg.phase) {
            self.inbox.insert(n, plaintext);
            while let Some(data) = self.inbox.remove(&self.next_in) {
                self.next_in += 1;
                self.emit(Event::Data(data));
            }
        } else {
            tracing::debug!(phase = %msg.phase, "ignoring an unknown phase");
        }
    }

    fn process_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        // The pake first, so that the rest can be decrypted.
        let (pake, rest): (Vec<_>, Vec<_>) = held.into_iter().partition(|m| m.phase == "pake");
        for msg in pake.into_iter().chain(rest) {
            self.peer_message(msg);
        }
    }

    fn flush_outbox(&mut self) {
        if !self.confirmed || self.ending.is_some() {
            return;
        }
        while let Some(data) = self.outbox.pop_front() {
            let phase = self.next_out.to_string();
            self.next_out += 1;
            self.add_encrypted(phase, &data);
        }
    }

    fn add_encrypted(&mut self, phase: String, plaintext: &[u8]) {
        if let Err(e) = self.ensure_key() {
            return self.end(Mood::Errory, Err(e));
        }
        let Some(key) = &self.key else { return };
        let phase_key = crypto::derive_phase_key(key, &self.side, &phase);
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let body = crypto::seal(&phase_key, &nonce, plaintext);
        self.add(phase, body);
    }

    /// Records an add; it is transmitted now if the mailbox is open on this connection, and
    /// again after every reconnect until the relay echoes it.
    fn add(&mut self, phase: String, body: Vec<u8>) {
        let body = hex::encode(body);
        if self.sent.open && self.link_up() {
            self.transmit(ClientMessage::Add {
                phase: phase.clone(),
                body: body.clone(),
            });
        }
        self.unechoed.push((phase, body));
    }

    // ----- ending --------------------------------------------------------------------------

    fn end(&mut self, mood: Mood, outcome: Result<(), Error>) {
        if self.ending.is_some() {
            return;
        }
        if let Err(e) = &outcome {
            tracing::info!(error = %e, "wormhole session failed");
        }
        self.ending = Some(Ending {
            mood,
            outcome,
            deadline: self.now.saturating_add(CLOSE_GRACE),
        });
        self.release_wanted = true;
        self.held.clear();
        self.outbox.clear();
    }

    fn holds_nameplate(&self) -> bool {
        // An allocated nameplate is claimed by the relay on allocation; a typed one only once
        // the relay said `claimed` (a refused claim, e.g. `crowded`, holds nothing).
        self.nameplate.is_some()
            && !self.released
            && (self.claimed || self.allocate_words.is_some())
    }

    fn check_finished(&mut self) {
        if self.finished || self.ending.is_none() {
            return;
        }
        let mailbox_done = self.mailbox.is_none() || self.closed;
        let nameplate_done = !self.holds_nameplate() || self.released;
        let unreachable = self.link == Link::Gone;
        if (mailbox_done && nameplate_done) || unreachable {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if matches!(self.link, Link::Up { .. } | Link::Connecting) {
            self.outputs.push_back(Output::Disconnect);
        }
        self.link = Link::Gone;
        let outcome = self.ending.as_ref().map_or(Ok(()), |e| e.outcome.clone());
        self.emit(Event::Closed(outcome));
    }

    // ----- sending -------------------------------------------------------------------------

    fn link_up(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// Sends whatever the current state calls for and this connection has not carried yet.
    fn pump(&mut self) {
        if !self.link_up() || self.finished {
            return;
        }
        if self.list_wanted {
            self.list_wanted = false;
            self.transmit(ClientMessage::List);
        }
        let closing = self.ending.is_some();
        if !closing
            && self.allocate_words.is_some()
            && self.nameplate.is_none()
            && !self.sent.allocate
        {
            self.sent.allocate = true;
            self.transmit(ClientMessage::Allocate);
        }
        if let Some(nameplate) = self.nameplate.clone() {
            // While closing, a nameplate we allocated must still be claimed so that it can be
            // released; a nameplate only typed in is not worth claiming any more.
            if !self.claimed && !self.sent.claim && (!closing || self.allocate_words.is_some()) {
                self.sent.claim = true;
                self.transmit(ClientMessage::Claim {
                    nameplate: nameplate.as_str().into(),
                });
            }
            if self.claimed && self.release_wanted && !self.released && !self.sent.release {
                self.sent.release = true;
                self.transmit(ClientMessage::Release {
                    nameplate: Some(nameplate.as_str().into()),
                });
            }
        }
        if let Some(mailbox) = self.mailbox.clone() {
            if self.closed {
                return;
            }
            // A happy close still delivers our last messages; an unhappy one just leaves.
            let happy = self.ending.as_ref().is_some_and(|e| e.mood == Mood::Happy);
            let want_open = !closing || (happy && !self.unechoed.is_empty());
            if want_open && !self.sent.open && !self.sent.close {
                self.sent.open = true;
                self.transmit(ClientMessage::Open {
                    mailbox: mailbox.clone(),
                });
                for (phase, body) in self.unechoed.clone() {
                    self.transmit(ClientMessage::Add { phase, body });
                }
            }
            if let Some(ending) = &self.ending {
                if !self.sent.close {
                    let mood = ending.mood;
                    self.sent.close = true;
                    self.transmit(ClientMessage::Close {
                        mailbox: Some(mailbox),
                        mood: Some(mood.as_str().into()),
                    });
                }
            }
        }
    }

    fn transmit(&mut self, message: ClientMessage) {
        self.outputs
            .push_back(Output::Transmit(ClientFrame::new(message).to_json()));
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
