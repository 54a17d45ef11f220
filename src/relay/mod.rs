//! The relay (mailbox server) core: a sans-IO state machine, wire-compatible with the Python
//! `magic-wormhole-mailbox-server` 0.8.0 (protocol.md §2–§5).
//!
//! The core owns no sockets, tasks, clocks or ambient randomness. A runner feeds it connection
//! events ([`Relay::connected`], [`Relay::received`], [`Relay::disconnected`]) and the time, calls
//! [`Relay::prune`] periodically (the Python server does so every 5 minutes), and after every
//! input drains [`Relay::poll_output`] onto the connections.
//!
//! ```
//! use wormhole::relay::{MemoryStore, Relay, RelayConfig, RelayOutput};
//! let mut relay = Relay::new(RelayConfig::default(), MemoryStore::default(), [7; 32]);
//! relay.connected(1, None, 1000.0);
//! relay.received(1, r#"{"type": "ping", "ping": 5, "id": "a1"}"#, 1000.5);
//! let mut frames = Vec::new();
//! while let Some(RelayOutput::Send { frame, .. }) = relay.poll_output() {
//!     frames.push(frame);
//! }
//! assert_eq!(frames.len(), 3); // welcome, ack, pong
//! assert!(frames[1].contains(r#""type":"ack""#) && frames[2].contains(r#""pong":5"#));
//! ```
//!
//! # Layout
//! Split along the Python server's seams: this module holds the relay's inputs and outputs and
//! the per-process subscriptions; `commands` the per-connection rules (Python's
//! `WebSocketServer`); `tables` the table logic on the [`MailboxStore`] (Python's `AppNamespace`
//! and `Mailbox`), as functions over one transaction's [`MailboxTables`]; `output` builds the
//! frames; [`errors`] the error texts; [`limits`] what one client may hold or do; `store` the
//! [`MailboxStore`] and [`MailboxTables`] traits (and how transactions work); `memory` the
//! [`MemoryStore`]; `sqlite` the `SqliteStore` (feature `sqlite`); `server` the async runner
//! (feature `relay-server`).
//!
//! # Behaviour, and where it differs from Python 0.8
//! * Every frame that has a `type` is acked first (`id` copied verbatim, `null` when absent);
//!   a frame without one gets `missing 'type'` and no ack. Every outbound frame carries
//!   `server_tx` = the `now` of the input that caused it.
//! * The rules and error strings are those of [`errors`]. Nameplate allocation, claims, releases,
//!   open/add/close, replay, crowding and pruning follow the Python server's table logic, so its
//!   **crowded quirk falls out naturally and is kept**: a third side's claim or open inserts its
//!   rows before the count check, so afterwards every `open` of that mailbox by a new connection,
//!   and every `close` on a connection that had not opened it, also gets `crowded`.
//! * As in Python, `open` is refused only while the connection has a mailbox open: after a
//!   `close`, the same connection may `open` again.
//! * Divergences, all for inputs on which Python 0.8 crashes (and silently drops the
//!   connection): a `claim` whose nameplate is not 1–40 ASCII digits gets
//!   [`errors::CLAIM_NEEDS_NUMERIC`] (and does not use up the connection's claim); fields of the
//!   wrong JSON type get an `error` naming the field (e.g. [`errors::OPEN_NEEDS_STRING`]);
//!   malformed JSON, a non-object frame and an oversized frame get an `error` without an ack
//!   ([`errors::MALFORMED_JSON`], [`errors::NOT_AN_OBJECT`], [`errors::FRAME_TOO_LARGE`]); a
//!   failed allocation or a store failure gets an `error` ([`errors::NO_FREE_NAMEPLATE`],
//!   [`errors::INTERNAL`] followed by the cause, e.g. `internal server error: storage backend
//!   failed: Redis unreachable: ...`, see [`errors::store_failure`]). In every case the connection stays usable.
//! * When the last side closes a mailbox, Python deletes that side's `nameplate_sides` rows in
//!   *every* app id; here only within the connection's app id.
//! * Ours: the [`limits`] of a public relay ([`Limits`], all with defaults for a public relay).
//!   A command over a limit gets an `error` naming it ([`Limit::error`]) and changes nothing;
//!   a connection over [`Limits::connections`] or [`Limits::connections_per_source`] gets that
//!   `error` and a [`RelayOutput::Close`]. [`Relay::prune`] also deletes nameplates claimed by
//!   one side only whose mailbox nobody listened to for [`Limits::abandoned_nameplate_secs`]
//!   (Python waits for the 11-minute expiry of the mailbox).
//! * An `add` on a connection whose mailbox was meanwhile deleted (another connection of the
//!   same side closed it) recreates the mailbox row and stores the message; Python stores an
//!   orphan message row. Either way nobody is subscribed, so no echo is sent.

mod commands;
pub mod errors;
mod fanout;
pub mod limits;
#[cfg(test)]
mod limits_tests;
mod memory;
pub mod metrics;
mod output;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "relay-server")]
pub mod server;
#[cfg(feature = "relay-server")]
pub mod shared;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod store;
#[cfg(test)]
mod store_tests;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Map, Value};

use crate::wire::{ServerMessage, Welcome};

use commands::{Conn, Refusal};
use limits::LimitState;
pub use limits::{Limit, Limits, Rate};
use metrics::Metrics;

pub use fanout::MailboxChange;
pub use memory::MemoryStore;
#[cfg(feature = "relay-server")]
pub use shared::{SharedMemoryStore, SharedStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    MailboxRecord, MailboxSide, MailboxStore, MailboxTables, MailboxUsage, NameplateRecord,
    NameplateSide, StoreError, StoredMessage,
};

/// Identifies one client connection; chosen by the runner, unique among live connections.
pub type ConnId = u64;

/// A connection listening to a mailbox, and how many of its messages (in insertion order) it
/// was sent: the replay at `open`, then each echo. Messages past that count are what it still
/// needs, whichever relay process added them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Listener {
    conn: ConnId,
    delivered: usize,
}

/// Relay settings (the Python server's command-line options).
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// `welcome.motd`: a message every client shows (`--motd`).
    pub motd: Option<String>,
    /// `welcome.error`: clients refuse to continue and show this (`--signal-error`).
    pub signal_error: Option<String>,
    /// `welcome.current_cli_version` (`--advertise-version`).
    pub advertise_version: Option<String>,
    /// Whether `list` reveals nameplates; `false` is `--disallow-list` (an empty list).
    pub allow_list: bool,
    /// Larger inbound frames get an `error` and are otherwise ignored. Default 1 MiB.
    pub max_frame_bytes: usize,
    /// [`Relay::prune`] deletes mailboxes idle this long. Default 11 minutes.
    pub channel_expiration_secs: f64,
    /// What one client may hold or do (see [`limits`]).
    pub limits: Limits,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            motd: None,
            signal_error: None,
            advertise_version: None,
            allow_list: true,
            max_frame_bytes: 1 << 20,
            channel_expiration_secs: 11.0 * 60.0,
            limits: Limits::default(),
        }
    }
}

/// What the runner must do after an input.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayOutput {
    /// Send one text frame (a JSON object) on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The JSON text. A broadcast is serialized once and shared by every listener.
        frame: Arc<str>,
    },
    /// Close a connection once the frames queued before this have been sent. The core asks
    /// for this for a connection it refused ([`Limit::Connections`],
    /// [`Limit::ConnectionsPerSource`]), and when a batch failed to commit
    /// ([`Relay::end_batch`]): the connections whose commands were lost must start afresh.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// What the core has done since it started, for the runner's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// `error` frames sent.
    pub errors_sent: u64,
    /// Mailboxes closed by their last side (finished exchanges).
    pub exchanges: u64,
}

/// The relay core. See the [module docs](self) for its behaviour.
#[derive(Debug)]
pub struct Relay<S: MailboxStore = MemoryStore> {
    config: RelayConfig,
    store: S,
    rng: ChaCha20Rng,
    conns: HashMap<ConnId, Conn>,
    /// `(appid, mailbox)` → connections listening, in subscription order, each with how many
    /// of the mailbox's messages it was sent.
    subscribers: HashMap<(String, String), Vec<Listener>>,
    outputs: VecDeque<RelayOutput>,
    /// The open batch, if any: its outputs are held back until it commits.
    batch: Option<Batch>,
    limit_state: LimitState,
    metrics: Arc<Metrics>,
    counters: RelayCounters,
}

/// An open batch of inputs ([`Relay::begin_batch`]).
#[derive(Debug, Default)]
struct Batch {
    /// `outputs.len()` when it began.
    mark: usize,
    /// The connections that had an input in it.
    conns: Vec<ConnId>,
}

impl<S: MailboxStore> Relay<S> {
    /// A relay over `store`. `rng_seed` seeds the ChaCha20 generator used for nameplate choice and
    /// mailbox ids (give it fresh OS randomness in production).
    pub fn new(config: RelayConfig, store: S, rng_seed: [u8; 32]) -> Self {
        Relay {
            config,
            store,
            rng: ChaCha20Rng::from_seed(rng_seed),
            conns: HashMap::new(),
            subscribers: HashMap::new(),
            outputs: VecDeque::new(),
            batch: None,
            limit_state: LimitState::default(),
            metrics: Arc::new(Metrics::default()),
            counters: RelayCounters::default(),
        }
    }

    /// Opens a batch: the inputs until [`Relay::end_batch`] are handled as usual, each command
    /// in a transaction of its own, but the store may commit them all at once (a group
    /// commit), and [`Relay::poll_output`] holds every output back until the batch is over.
    /// Feed a batch what has arrived at once (the runner takes what its queue holds), and do
    /// not [`Relay::prune`] inside one. If the store cannot open a batch, each command commits
    /// by itself.
    pub fn begin_batch(&mut self) {
        if self.batch.is_some() {
            return;
        }
        match self.store.begin_batch() {
            Ok(()) => {
                self.batch = Some(Batch {
                    mark: self.outputs.len(),
                    conns: Vec::new(),
                })
            }
            Err(e) => tracing::warn!(error = %e, "relay: cannot open a batch"),
        }
    }

    /// Commits the batch, then releases its outputs. If the commit fails, no command of the
    /// batch happened: their outputs are dropped, and every connection that had an input in
    /// it is forgotten and closed ([`RelayOutput::Close`]), so that its client reconnects and
    /// carries on from what the store holds, as after a relay restart.
    pub fn end_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        if let Err(e) = self.store.end_batch() {
            tracing::warn!(error = %e, conns = batch.conns.len(), "relay: a batch failed to commit");
            self.outputs.truncate(batch.mark);
            for conn in batch.conns {
                if self.conns.contains_key(&conn) {
                    self.disconnected(conn);
                    self.outputs.push_back(RelayOutput::Close { conn });
                }
            }
        }
    }

    fn note_input(&mut self, conn: ConnId) {
        if let Some(batch) = &mut self.batch {
            if !batch.conns.contains(&conn) {
                batch.conns.push(conn);
            }
        }
    }

    /// Counts limit hits in `metrics` (shared with the runner and the `/metrics` endpoint)
    /// instead of a private instance.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The counters this relay updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A new connection: queues the `welcome`, whose `your-address` is `{"port": p, "ipv4": ip}`
    /// (or `"ipv6"`) when `addr` is given. `now` is the Unix time in seconds, used for `server_tx`.
    /// A reused `conn` starts afresh.
    ///
    /// A connection over [`Limits::connections`] or [`Limits::connections_per_source`] gets
    /// an `error` frame naming the limit instead, then [`RelayOutput::Close`]; its frames are
    /// ignored until it is [`disconnected`](Self::disconnected).
    pub fn connected(&mut self, conn: ConnId, addr: Option<SocketAddr>, now: f64) {
        self.disconnected(conn);
        if let Err(limit) = self.admit_connection(conn, addr, now) {
            tracing::debug!(
                conn,
                ?addr,
                limit = limit.name(),
                "relay: connection refused"
            );
            self.metrics.limit_hit(limit.name());
            self.send_error(conn, limit.error(), Value::Null, now);
            self.outputs.push_back(RelayOutput::Close { conn });
            return;
        }
        self.note_input(conn);
        self.conns.insert(conn, Conn::default());
        tracing::debug!(conn, "relay: connected");
        let your_address = addr.map(|addr| {
            let mut map = Map::new();
            map.insert("port".into(), Value::from(addr.port()));
            let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
            map.insert(family.into(), Value::from(addr.ip().to_string()));
            Value::Object(map)
        });
        let welcome = Welcome {
            motd: self.config.motd.clone(),
            current_cli_version: self.config.advertise_version.clone(),
            error: self.config.signal_error.clone(),
            your_address,
            permission_required: None,
        };
        self.send(conn, ServerMessage::Welcome { welcome }, now);
    }

    /// One inbound frame (text, or a binary frame's bytes as text). Queues the `ack` (for frames
    /// with a `type`) and then any replies and broadcasts. Never panics; a bad frame gets an
    /// `error` and the connection stays usable. A frame on an unknown `conn` is handled as on a
    /// fresh connection (without a welcome).
    pub fn received(&mut self, conn: ConnId, frame: &str, now: f64) {
        if self.is_refused(conn) {
            return;
        }
        self.note_input(conn);
        if frame.len() > self.config.max_frame_bytes {
            self.received_too_large(conn, frame.len(), now);
            return;
        }
        let msg = match serde_json::from_str::<Value>(frame) {
            Ok(Value::Object(msg)) => msg,
            Ok(other) => {
                self.send_error(conn, errors::NOT_AN_OBJECT, other, now);
                return;
            }
            Err(_) => {
                tracing::debug!(conn, "relay: malformed JSON");
                self.send_error(conn, errors::MALFORMED_JSON, Value::from(frame), now);
                return;
            }
        };
        let Some(mtype) = msg.get("type").cloned() else {
            self.send_error(conn, errors::MISSING_TYPE, Value::Object(msg), now);
            return;
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        if !id.is_null() && self.config.limits.check_string(&id.to_string()).is_err() {
            // Not even acked: the ack would echo the id.
            self.metrics.limit_hit(Limit::StringBytes.name());
            self.send_error(conn, Limit::StringBytes.error(), Value::Null, now);
            return;
        }
        self.send_with_id(conn, ServerMessage::Ack { id: None }, &id, now);
        // A non-string type is simply unknown.
        let mtype = mtype.as_str().unwrap_or("");
        tracing::debug!(conn, mtype, "relay: command");
        self.conns.entry(conn).or_default();
        if let Err(refusal) = self.dispatch(conn, mtype, &msg, now) {
            let error = match refusal {
                Refusal::Error(error) => error.to_owned(),
                Refusal::Limit(limit) => {
                    tracing::debug!(conn, limit = limit.name(), "relay: limit reached");
                    self.metrics.limit_hit(limit.name());
                    limit.error().to_owned()
                }
                Refusal::Store(e) => {
                    let cause = errors::store_failure(&e);
                    tracing::warn!(conn, error = %cause, "relay: store failure");
                    cause
                }
            };
            self.send_error(conn, &error, Value::Object(msg), now);
        }
    }

    /// A frame of `len` bytes, larger than [`RelayConfig::max_frame_bytes`], arrived: answers
    /// as [`received`](Self::received) would, so that a runner need not keep such a frame
    /// until the core gets to it.
    pub fn received_too_large(&mut self, conn: ConnId, len: usize, now: f64) {
        if self.is_refused(conn) {
            return;
        }
        tracing::debug!(conn, len, "relay: frame too large");
        self.send_error(conn, errors::FRAME_TOO_LARGE, Value::Null, now);
    }

    /// The connection went away: it stops listening. Like Python, this does not close its mailbox
    /// or release its nameplate (the client may come back).
    pub fn disconnected(&mut self, conn: ConnId) {
        self.forget_connection(conn);
        if let Some(state) = self.conns.remove(&conn) {
            tracing::debug!(conn, "relay: disconnected");
            if let (true, Some((appid, _)), Some(mailbox)) =
                (state.listening, &state.bound, &state.mailbox_id)
            {
                self.unsubscribe(appid, mailbox, conn);
            }
        }
    }

    /// Like [`disconnected`](Self::disconnected), at `now`: a mailbox whose last listener this
    /// was is touched, so the time its side went away counts for
    /// [`Limits::abandoned_nameplate_secs`] (runners should prefer this).
    pub fn disconnected_at(&mut self, conn: ConnId, now: f64) {
        let listened = self.conns.get(&conn).and_then(|state| match state {
            Conn {
                listening: true,
                bound: Some((appid, _)),
                mailbox_id: Some(mailbox),
                ..
            } => Some((appid.clone(), mailbox.clone())),
            _ => None,
        });
        self.disconnected(conn);
        if let Some((appid, mailbox)) = listened {
            if !self
                .subscribers
                .contains_key(&(appid.clone(), mailbox.clone()))
            {
                let touched = self
                    .store
                    .transaction(&mut |tx| tx.touch_mailbox(&appid, &mailbox, now));
                if let Err(e) = touched {
                    tracing::debug!(error = %e, "relay: touching a mailbox left failed");
                }
            }
        }
    }

    /// Python's prune: touches every mailbox with a live subscriber, then deletes every mailbox
    /// not updated for [`RelayConfig::channel_expiration_secs`] (with its sides, messages and the
    /// nameplates pointing at it). Then, ours: deletes every nameplate claimed by a single side
    /// whose mailbox nobody listened to for [`Limits::abandoned_nameplate_secs`] (with its
    /// mailbox). Returns how many mailboxes were deleted. Each mailbox is deleted in a
    /// transaction of its own, which checks its age again. A store failure ends the pass early
    /// (logged); what was deleted so far stays deleted.
    pub fn prune(&mut self, now: f64) -> usize {
        let mut pruned = 0;
        let result = self
            .try_prune(now, &mut pruned)
            .and_then(|()| self.prune_abandoned(now, &mut pruned));
        if let Err(e) = result {
            tracing::warn!(error = %e, "relay: prune failed");
        }
        pruned
    }

    fn try_prune(&mut self, now: f64, pruned: &mut usize) -> Result<(), StoreError> {
        let live: Vec<&(String, String)> = self.subscribers.keys().collect();
        self.store.transaction(&mut |tx| {
            for (appid, mailbox) in &live {
                tx.touch_mailbox(appid, mailbox, now)?;
            }
            Ok(())
        })?;
        let old = now - self.config.channel_expiration_secs;
        let expired = self.store.transaction(&mut |tx| {
            let mut expired = Vec::new();
            for appid in tx.app_ids()? {
                for id in tx.idle_mailbox_ids(&appid, old)? {
                    expired.push((appid.clone(), id));
                }
            }
            Ok(expired)
        })?;
        for (appid, id) in expired {
            if self
                .store
                .transaction(&mut |tx| tables::prune_mailbox(tx, &appid, &id, old))?
            {
                self.drop_listeners(&appid, &id);
                *pruned += 1;
            }
        }
        Ok(())
    }

    /// The next thing for the runner to do, if any. Drain it after every input (or batch:
    /// nothing comes out while a batch is open).
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        if self.batch.is_some() {
            return None;
        }
        self.outputs.pop_front()
    }

    /// What the core has done since it started.
    pub fn counters(&self) -> RelayCounters {
        self.counters
    }

    /// The store (for tests and persistence).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The relay's settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    // ----- subscriptions (per process, not in the store) ---------------------------------

    /// Unsubscribes every connection from a deleted mailbox.
    fn drop_listeners(&mut self, appid: &str, id: &str) {
        if let Some(listeners) = self.subscribers.remove(&(appid.to_owned(), id.to_owned())) {
            for listener in listeners {
                if let Some(state) = self.conns.get_mut(&listener.conn) {
                    state.listening = false;
                }
            }
        }
    }

    fn unsubscribe(&mut self, appid: &str, mailbox: &str, conn: ConnId) {
        let key = (appid.to_owned(), mailbox.to_owned());
        if let Some(listeners) = self.subscribers.get_mut(&key) {
            listeners.retain(|l| l.conn != conn);
            if listeners.is_empty() {
                self.subscribers.remove(&key);
            }
        }
    }
}
