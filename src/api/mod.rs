//! The async API: [`Wormhole`], with the seed's [`Initiator`] and [`Receiver`] on top.
//!
//! A `Wormhole` spawns one driver task on the current tokio runtime the first time it is used.
//! The relay is given as a URL; its scheme picks the transport (`mem://NAME` for an in-process
//! relay, `ws://` and `wss://` for a WebSocket relay, `http://` and `https://` for HTTP polling
//! with feature `http`), unless a transport is given with [`Wormhole::with_transport`].

mod driver;
mod link;
mod resume;

mod exchange;
mod roles;
mod scheme;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
#[cfg(feature = "tls")]
use wormhole_transports::websocket::ClientTls;
use wormhole_transports::Transport;

use crate::clock::{Clock, TokioClock};
use crate::code::{Code, Nameplate};
use crate::core::{Config, Error, Event, Schedule, SchedulePreset, Session};
use crate::crypto::Verifier;
use crate::storage::Storage;
use crate::wire::Welcome;
use driver::{Command, Journal, Observed};

pub use driver::CONNECT_TIMEOUT;
pub use link::IO_TIMEOUT;
pub use roles::{Initiator, Receiver};
pub use scheme::transport_for;
#[cfg(feature = "tls")]
pub use scheme::transport_for_tls;

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
/// # #[cfg(feature = "relay-server")]
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
}

pub mod blocking;
