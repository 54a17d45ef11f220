//! The async API: [`Wormhole`], with the seed's [`Initiator`] and [`Receiver`] on top.
//!
//! A `Wormhole` spawns one driver task on the current tokio runtime the first time it is used.
//! The relay is given as a URL; its scheme picks the transport (`mem://NAME` for an in-process
//! relay, `ws://` and `wss://` for a WebSocket relay, `http://` and `https://` for HTTP polling
//! with feature `http`), unless a transport is given with [`Wormhole::with_transport`].

mod driver;
mod link;
mod resume;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use wormhole_transports::memory::MemoryTransport;
#[cfg(feature = "tls")]
use wormhole_transports::websocket::ClientTls;
use wormhole_transports::{split_scheme, Transport};

use crate::clock::{Clock, TokioClock};
use crate::code::{Code, Nameplate, DEFAULT_WORDS};
use crate::core::{Config, Error, Event, Input, Schedule, SchedulePreset, Session};
use crate::crypto::Verifier;
use crate::storage::Storage;
use crate::wire::Welcome;
use driver::{Command, Driver, Journal, Observed};

pub use driver::CONNECT_TIMEOUT;
pub use link::IO_TIMEOUT;

/// Picks the built-in transport for a relay URL by its scheme (`mem`, `ws`/`wss`, and with
/// feature `http` `http`/`https`); `wss://` and `https://` trust the built-in (Mozilla) root
/// certificates.
pub fn transport_for(url: &str) -> Result<Arc<dyn Transport>, Error> {
    let (scheme, _) = split_scheme(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
    match scheme {
        "mem" => Ok(Arc::new(MemoryTransport)),
        #[cfg(feature = "websocket")]
        "ws" | "wss" => Ok(Arc::new(
            wormhole_transports::websocket::WebSocketTransport::default(),
        )),
        #[cfg(feature = "http")]
        "http" | "https" => Ok(Arc::new(wormhole_transports::http::HttpTransport::default())),
        other => Err(Error::InvalidInput(format!(
            "no built-in transport for {other}:// relay URLs (relay URL {url:?})"
        ))),
    }
}

/// Like [`transport_for`], with `tls` for the certificate checks of `wss://` (e.g. a
/// [`ClientTls`] that also trusts a private CA).
#[cfg(feature = "tls")]
pub fn transport_for_tls(url: &str, tls: &ClientTls) -> Result<Arc<dyn Transport>, Error> {
    let (scheme, _) = split_scheme(url).map_err(|e| Error::InvalidInput(e.to_string()))?;
    match scheme {
        "ws" | "wss" => Ok(Arc::new(
            wormhole_transports::websocket::WebSocketTransport::default().with_tls(tls.clone()),
        )),
        #[cfg(feature = "http")]
        "http" | "https" => Ok(Arc::new(
            wormhole_transports::http::HttpTransport::default().with_tls(tls.clone()),
        )),
        _ => transport_for(url),
    }
}

/// A running driver.
struct Running {
    cmds: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// One side of a wormhole: a session with the relay, and through it with the other side.
///
/// Use [`allocate_code`](Wormhole::allocate_code) on one side and
/// [`set_code`](Wormhole::set_code) on the other, then [`send`](Wormhole::send) and
/// [`recv`](Wormhole::recv) any number of messages, and [`close`](Wormhole::close).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use wormhole::Wormhole;
/// let relay = wormhole::relay::server::spawn_memory("doc-wormhole").unwrap();
///
/// let mut alice = Wormhole::new("example.com/app", relay.url());
/// let code = alice.allocate_code(2).await?;          // show this to Bob
///
/// let mut bob = Wormhole::new("example.com/app", relay.url());
/// bob.set_code(code).await?;                         // Bob types it in
///
/// alice.send(b"hello Bob").await?;
/// assert_eq!(bob.recv().await?, b"hello Bob");
/// assert_eq!(alice.verifier(), bob.verifier());      // optional: compare out of band
/// alice.close().await?;
/// bob.close().await?;
/// # Ok::<(), wormhole::Error>(())
/// # }).unwrap();
/// ```
pub struct Wormhole {
    url: String,
    config: Config,
    transport: Option<Arc<dyn Transport>>,
    #[cfg(feature = "tls")]
    tls: Option<ClientTls>,
    clock: Arc<dyn Clock>,
    journal: Option<Journal>,
    seed: Option<[u8; 32]>,
    /// A saved state to resume from when the driver starts ([`Wormhole::from_serialized`]).
    saved: Option<String>,
    /// The session, made before the driver starts when it is serialized that early.
    unstarted: Option<Session>,
    running: Option<Running>,
    /// What the session has told so far, kept current by the driver.
    observed: Arc<Mutex<Observed>>,
    nameplates: Option<Vec<Nameplate>>,
    data: VecDeque<Vec<u8>>,
    outcome: Option<Result<(), Error>>,
}

impl fmt::Debug for Wormhole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wormhole")
            .field("url", &self.url)
            .field("appid", &self.config.appid)
            .field("code", &self.observed().code)
            .field("running", &self.running.is_some())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Wormhole {
    /// A wormhole for application `appid` through the relay at `relay_url`, with the default
    /// schedule and timeout. Nothing happens until it is used.
    pub fn new(appid: &str, relay_url: &str) -> Wormhole {
        let mut config = Config::new(appid);
        config.relay_url = Some(relay_url.to_string());
        Wormhole {
            url: relay_url.to_string(),
            config,
            transport: None,
            #[cfg(feature = "tls")]
            tls: None,
            clock: Arc::new(TokioClock::new()),
            journal: None,
            seed: None,
            saved: None,
            unstarted: None,
            running: None,
            observed: Arc::default(),
            nameplates: None,
            data: VecDeque::new(),
            outcome: None,
        }
    }

    /// Sets the polling and reconnection schedule (the default is
    /// [`Schedule::face_to_face`]). Takes effect if set before the wormhole is first used.
    pub fn with_schedule(mut self, schedule: Schedule) -> Wormhole {
        self.config.schedule = schedule;
        self
    }

    /// Sets the hard timeout, counted from the first use (`None` waits forever; any
    /// `Duration`, up to `Duration::MAX`, is accepted). When it passes, every pending
    /// operation fails with [`Error::Timeout`] and the mailbox is closed with mood `lonely`.
    /// The default is [`DEFAULT_TIMEOUT`](crate::core::DEFAULT_TIMEOUT), five minutes.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Wormhole {
        self.config.timeout = timeout;
        self
    }

    /// Uses a named schedule and the timeout that goes with it:
    /// [`SchedulePreset::FaceToFace`] (the default: polls every 0.5 s at first, five-minute
    /// timeout) or [`SchedulePreset::LongLived`] (hourly after the first hour, seven-day
    /// timeout). A later [`with_timeout`](Wormhole::with_timeout) overrides the timeout.
    ///
    /// ```
    /// use wormhole::{SchedulePreset, Wormhole};
    /// let w = Wormhole::new("example.com/app", "ws://relay.example:4000/v1")
    ///     .with_preset(SchedulePreset::LongLived);
    /// assert_eq!(w.timeout(), Some(SchedulePreset::LongLived.timeout()));
    /// ```
    pub fn with_preset(mut self, preset: SchedulePreset) -> Wormhole {
        self.set_preset(preset);
        self
    }

    pub(crate) fn set_preset(&mut self, preset: SchedulePreset) {
        self.config.schedule = preset.schedule();
        self.config.timeout = Some(preset.timeout());
    }

    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The schedule in force.
    pub fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    /// The hard timeout in force (`None`: none).
    pub fn timeout(&self) -> Option<Duration> {
        self.config.timeout
    }

    /// Sets the `app_versions` object sent to the other side.
    pub fn with_app_versions(mut self, versions: Value) -> Wormhole {
        self.config.app_versions = versions;
        self
    }

    /// Sets the largest application message accepted by [`send`](Wormhole::send).
    pub fn with_max_message(mut self, bytes: usize) -> Wormhole {
        self.config.max_message = bytes;
        self
    }

    /// Checks the relay's TLS certificate (`wss://`) with `tls`, e.g. to trust a private CA
    /// as well as the built-in roots:
    ///
    /// ```no_run
    /// use std::path::Path;
    /// use wormhole::transports::websocket::ClientTls;
    /// let tls = ClientTls::default().with_extra_ca_file(Path::new("relay-ca.pem"))?;
    /// let w = wormhole::Wormhole::new("example.com/app", "wss://relay.example:4000/v1")
    ///     .with_tls(tls);
    /// # Ok::<(), wormhole::transports::websocket::TlsError>(())
    /// ```
    ///
    /// Ignored if a transport is given with [`with_transport`](Wormhole::with_transport).
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, tls: ClientTls) -> Wormhole {
        self.tls = Some(tls);
        self
    }

    /// Uses this transport instead of the one the URL's scheme picks.
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Wormhole {
        self.transport = Some(transport);
        self
    }

    /// Uses this clock instead of tokio's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Wormhole {
        self.clock = clock;
        self
    }

    /// Journals the session state under `key` in `storage`, write-ahead: after every input
    /// that changed it and before anything it led to leaves (frames to the relay, events and
    /// replies to the application), so a program killed at any instant resumes with
    /// [`from_storage`](Wormhole::from_storage). Nothing is written when only time passed; the
    /// entry is removed when the exchange ends. The state holds secrets: keep the storage
    /// private.
    pub fn with_journal(mut self, storage: Arc<dyn Storage>, key: &str) -> Wormhole {
        self.journal = Some(Journal {
            storage,
            key: key.to_string(),
        });
        self
    }

    /// Uses a fixed seed instead of fresh randomness (for tests and simulations only: the seed
    /// determines the side, the SPAKE2 secret and the nonces). For a restored wormhole it is
    /// the entropy mixed into the saved generator instead: give each restore its own.
    pub fn with_seed(mut self, seed: [u8; 32]) -> Wormhole {
        self.seed = Some(seed);
        self
    }

    /// The relay URL.
    pub fn relay_url(&self) -> &str {
        &self.url
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The code, once allocated or set.
    pub fn code(&self) -> Option<Code> {
        self.observed().code.clone()
    }

    /// The verifier, once the key is confirmed. Both sides see the same one.
    ///
    /// This is current as soon as the session confirms the key, even while nobody awaits
    /// this `Wormhole`; [`verify`](Wormhole::verify) waits for it.
    pub fn verifier(&self) -> Option<Verifier> {
        self.observed().verifier
    }

    /// The other side's `app_versions`, once received.
    pub fn peer_app_versions(&self) -> Option<Value> {
        self.observed().peer_versions.clone()
    }

    /// The relay's welcome, once received.
    pub fn welcome(&self) -> Option<Welcome> {
        self.observed().welcome.clone()
    }

    /// Connects (if not yet) and waits for the relay's welcome: its message of the day and
    /// the CLI version it advertises. Fails with the session's error if it ends first (e.g.
    /// [`Error::Unwelcome`] when the relay refuses service).
    pub async fn wait_welcome(&mut self) -> Result<Welcome, Error> {
        if self.welcome().is_none() && self.outcome.is_none() {
            self.start()?;
        }
        self.wait_for(|w| w.welcome().is_some()).await?;
        self.welcome().ok_or(Error::Closed)
    }

    /// How many messages were given to [`send`](Wormhole::send) so far, counting those sent
    /// before this wormhole was serialized and restored: a resumed program can tell whether
    /// it still has to send.
    pub fn sent_messages(&self) -> u64 {
        self.observed().sent_messages
    }

    /// Whether the relay confirmed that the nameplate is released (the code is used up).
    pub fn code_consumed(&self) -> bool {
        self.observed().consumed
    }

    fn start(&mut self) -> Result<&mut Running, Error> {
        if self.running.is_none() {
            if self.outcome.is_some() {
                return Err(Error::Closed);
            }
            let transport = match &self.transport {
                Some(t) => t.clone(),
                None => self.default_transport()?,
            };
            let session = self.make_session()?;
            let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let driver = Driver {
                observed: self.observed.clone(),
                session,
                url: self.url.clone(),
                transport,
                clock: self.clock.clone(),
                journal: self.journal.clone(),
                journal_deleted: false,
            };
            tokio::spawn(driver.run(cmd_rx, ev_tx));
            self.running = Some(Running {
                cmds: cmd_tx,
                events: ev_rx,
            });
        }
        self.running.as_mut().ok_or(Error::Closed)
    }

    /// The transport the URL's scheme picks (with the TLS settings of
    /// [`with_tls`](Wormhole::with_tls), if any).
    fn default_transport(&self) -> Result<Arc<dyn Transport>, Error> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return transport_for_tls(&self.url, tls);
        }
        transport_for(&self.url)
    }

    /// Hands an input to the driver and waits for the session's verdict on it.
    async fn command(&mut self, input: Input) -> Result<(), Error> {
        if let Some(Err(e)) = &self.outcome {
            return Err(e.clone());
        }
        let running = self.start()?;
        let (tx, rx) = oneshot::channel();
        let sent = running.cmds.send(Command::Input {
            input,
            reply: Some(tx),
        });
        let result = match sent {
            Ok(()) => rx.await.unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        };
        match result {
            // The session ended before it saw this input: report why it ended.
            Err(Error::Closed) => Err(self.ended().await),
            other => other,
        }
    }

    /// Reads the remaining events of a finished session and returns its error (or
    /// [`Error::Closed`] if it ended well).
    async fn ended(&mut self) -> Error {
        while self.running.is_some() {
            self.next_event().await;
        }
        match &self.outcome {
            Some(Err(e)) => e.clone(),
            _ => Error::Closed,
        }
    }

    /// Waits for the next event and records what it tells. `None` once the session is over.
    async fn next_event(&mut self) -> Option<Event> {
        let running = self.running.as_mut()?;
        let event = running.events.recv().await;
        match &event {
            Some(Event::Nameplates(n)) => self.nameplates = Some(n.clone()),
            // Recorded in `observed` by the driver.
            Some(
                Event::Code(_)
                | Event::Key { .. }
                | Event::PeerVersions(_)
                | Event::Welcome(_)
                | Event::CodeConsumed,
            ) => {}
            Some(Event::Data(d)) => self.data.push_back(d.clone()),
            Some(Event::Closed(outcome)) => {
                self.outcome = Some(outcome.clone());
                self.running = None;
            }
            None => {
                if self.outcome.is_none() {
                    self.outcome = Some(Err(Error::Closed));
                }
                self.running = None;
            }
        }
        event
    }

    /// Waits until `done` holds, or the session ends (its error, or [`Error::Closed`]).
    async fn wait_for(&mut self, done: impl Fn(&Wormhole) -> bool) -> Result<(), Error> {
        if self.saved.is_some() && !done(self) {
            // A restored wormhole resumes as soon as it is waited on.
            self.start()?;
        }
        loop {
            if done(self) {
                return Ok(());
            }
            if let Some(outcome) = &self.outcome {
                return Err(outcome.clone().err().unwrap_or(Error::Closed));
            }
            if self.running.is_none() {
                return Err(Error::Closed);
            }
            self.next_event().await;
        }
    }

    /// Asks the relay for a nameplate and returns the new code (`words` secret words; the
    /// Python CLI uses 2). Show it to the other person.
    pub async fn allocate_code(&mut self, words: usize) -> Result<Code, Error> {
        self.command(Input::Allocate { words }).await?;
        self.wait_for(|w| w.code().is_some()).await?;
        self.code().ok_or(Error::Closed)
    }

    /// Uses a code typed in by the user.
    pub async fn set_code(&mut self, code: Code) -> Result<(), Error> {
        if self.code().as_ref() == Some(&code) {
            // Already in use (e.g. a restored wormhole): nothing to do.
            return Ok(());
        }
        self.command(Input::SetCode(code.clone())).await?;
        self.observed().code = Some(code);
        Ok(())
    }

    /// Claims a nameplate before the rest of the code is typed (interactive entry).
    pub async fn claim_nameplate(&mut self, nameplate: Nameplate) -> Result<(), Error> {
        self.command(Input::ClaimNameplate(nameplate)).await
    }

    /// Lists the nameplates in use on the relay for this app id.
    pub async fn list_nameplates(&mut self) -> Result<Vec<Nameplate>, Error> {
        self.nameplates = None;
        self.command(Input::List).await?;
        self.wait_for(|w| w.nameplates.is_some()).await?;
        self.nameplates.take().ok_or(Error::Closed)
    }

    /// Sends one message to the other side. It is queued until the key is confirmed, and
    /// delivered even if the connection drops and comes back.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.command(Input::Send(data.to_vec())).await?;
        self.observed().sent_messages += 1;
        Ok(())
    }

    /// Waits for the next message from the other side.
    pub async fn recv(&mut self) -> Result<Vec<u8>, Error> {
        self.wait_for(|w| !w.data.is_empty()).await?;
        let data = self.data.pop_front().ok_or(Error::Closed)?;
        // Read: it leaves the saved state (until now a restore would hand it over again).
        if let Some(running) = &self.running {
            let _ = running.cmds.send(Command::Input {
                input: Input::DataRead,
                reply: None,
            });
        }
        Ok(data)
    }

    /// Waits until the key is confirmed and returns the verifier.
    pub async fn verify(&mut self) -> Result<Verifier, Error> {
        self.wait_for(|w| w.verifier().is_some()).await?;
        self.verifier().ok_or(Error::Closed)
    }

    /// Derives a key for the application's own use from the shared key (HKDF-SHA256 with
    /// `purpose`, at most 8160 bytes), as magic-wormhole's `derive_key`. Both sides get the
    /// same bytes for the same purpose. Available once the key is confirmed, until the session
    /// ends.
    pub async fn derive_key(&mut self, purpose: &[u8], length: usize) -> Result<Vec<u8>, Error> {
        self.verify().await?;
        let running = self.running.as_mut().ok_or(Error::Closed)?;
        let (tx, rx) = oneshot::channel();
        running
            .cmds
            .send(Command::DeriveKey {
                purpose: purpose.to_vec(),
                length,
                reply: tx,
            })
            .map_err(|_| Error::Closed)?;
        rx.await.ok().flatten().ok_or(Error::Closed)
    }

    /// Closes the session politely (releases the nameplate, closes the mailbox) and returns
    /// how it ended.
    pub async fn close(&mut self) -> Result<(), Error> {
        if let Some(outcome) = &self.outcome {
            return outcome.clone();
        }
        if self.running.is_none() && self.saved.is_none() {
            self.outcome = Some(Ok(()));
            return Ok(());
        }
        let _ = self.command(Input::Close).await;
        while self.running.is_some() {
            self.next_event().await;
        }
        self.outcome.clone().unwrap_or(Ok(()))
    }

    /// Sends `mine`, waits for the other side's message, closes, and returns that message: the
    /// seed's one-shot exchange.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        self.send(mine).await?;
        let theirs = self.recv().await;
        let closed = self.close().await;
        let theirs = theirs?;
        if let Err(e) = closed {
            tracing::debug!(error = %e, "close after a successful exchange failed");
        }
        Ok(theirs)
    }
}

/// The side that allocates the code (the seed's `Initiator`).
#[derive(Debug)]
pub struct Initiator {
    wormhole: Wormhole,
    words: usize,
}

impl Initiator {
    /// An initiator for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Initiator {
        Initiator::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// An initiator over a configured [`Wormhole`].
    pub fn from_wormhole(wormhole: Wormhole) -> Initiator {
        Initiator {
            wormhole,
            words: DEFAULT_WORDS,
        }
    }

    /// Number of secret words in the code (default 2).
    pub fn with_words(mut self, words: usize) -> Initiator {
        self.words = words.max(1);
        self
    }

    /// Sets the schedule; see [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Initiator {
        self.wormhole.config_mut().schedule = schedule;
        self
    }

    /// Sets the hard timeout; see [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Initiator {
        self.wormhole.config_mut().timeout = timeout;
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    pub fn with_preset(mut self, preset: SchedulePreset) -> Initiator {
        self.wormhole.set_preset(preset);
        self
    }

    /// Allocates the code (once) and returns it.
    pub async fn get_code(&mut self) -> Result<Code, Error> {
        if let Some(code) = self.wormhole.code() {
            return Ok(code);
        }
        self.wormhole.allocate_code(self.words).await
    }

    /// Sends `mine` and returns the receiver's data; allocates the code first if needed.
    ///
    /// A restored initiator that had already sent its message does not send it again.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        self.get_code().await?;
        self.wormhole.get_data_once(mine).await
    }

    /// The underlying wormhole, for multi-message exchanges.
    pub fn wormhole(&mut self) -> &mut Wormhole {
        &mut self.wormhole
    }
}

/// The side that is given the code (the seed's `Receiver`).
#[derive(Debug)]
pub struct Receiver {
    wormhole: Wormhole,
}

impl Receiver {
    /// A receiver for `appid` through the relay at `relay_url`.
    pub fn new(appid: &str, relay_url: &str) -> Receiver {
        Receiver::from_wormhole(Wormhole::new(appid, relay_url))
    }

    /// A receiver over a configured [`Wormhole`].
    pub fn from_wormhole(wormhole: Wormhole) -> Receiver {
        Receiver { wormhole }
    }

    /// Sets the schedule; see [`Wormhole::with_schedule`].
    pub fn with_schedule(mut self, schedule: Schedule) -> Receiver {
        self.wormhole.config_mut().schedule = schedule;
        self
    }

    /// Sets the hard timeout; see [`Wormhole::with_timeout`].
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Receiver {
        self.wormhole.config_mut().timeout = timeout;
        self
    }

    /// Uses a schedule preset and its timeout; see [`Wormhole::with_preset`].
    pub fn with_preset(mut self, preset: SchedulePreset) -> Receiver {
        self.wormhole.set_preset(preset);
        self
    }

    /// Sets the code the initiator showed; a malformed code is refused here.
    pub async fn set_code(&mut self, code: &str) -> Result<(), Error> {
        let code = Code::parse(code).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.wormhole.set_code(code).await
    }

    /// Sends `mine` and returns the initiator's data. The code must be set first.
    ///
    /// A restored receiver that had already sent its message does not send it again.
    pub async fn get_data(&mut self, mine: &[u8]) -> Result<Vec<u8>, Error> {
        if self.wormhole.code().is_none() {
            return Err(Error::InvalidInput("set the code before get_data".into()));
        }
        self.wormhole.get_data_once(mine).await
    }

    /// The underlying wormhole, for multi-message exchanges.
    pub fn wormhole(&mut self) -> &mut Wormhole {
        &mut self.wormhole
    }
}

pub mod blocking;
