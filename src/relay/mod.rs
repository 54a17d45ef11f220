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
//!   [`errors::INTERNAL`]). In every case the connection stays usable.
//! * When the last side closes a mailbox, Python deletes that side's `nameplate_sides` rows in
//!   *every* app id; here only within the connection's app id.
//! * An `add` on a connection whose mailbox was meanwhile deleted (another connection of the
//!   same side closed it) recreates the mailbox row and stores the message; Python stores an
//!   orphan message row. Either way nobody is subscribed, so no echo is sent.

#[cfg(feature = "relay-server")]
pub mod server;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{Map, Value};

use crate::wire::{NameplateEntry, ServerFrame, ServerMessage, Welcome};

pub use store::{
    MailboxRecord, MailboxSide, MailboxStore, MemoryStore, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};

/// Identifies one client connection; chosen by the runner, unique among live connections.
pub type ConnId = u64;

/// The `error` strings the relay sends. The first group is exactly Python 0.8's; the second is
/// ours, for inputs on which Python 0.8 crashes.
pub mod errors {
    /// A frame without `type` (not acked).
    pub const MISSING_TYPE: &str = "missing 'type'";
    /// A command other than `ping`/`bind` before `bind`.
    pub const MUST_BIND_FIRST: &str = "must bind first";
    /// A second `bind`.
    pub const ALREADY_BOUND: &str = "already bound";
    /// `bind` without `appid`.
    pub const BIND_NEEDS_APPID: &str = "bind requires 'appid'";
    /// `bind` without `side`.
    pub const BIND_NEEDS_SIDE: &str = "bind requires 'side'";
    /// An unknown `type` after `bind`.
    pub const UNKNOWN_TYPE: &str = "unknown type";
    /// `ping` without `ping`.
    pub const PING_NEEDS_PING: &str = "ping requires 'ping'";
    /// A second `allocate`.
    pub const GREEDY: &str = "you already allocated one, don't be greedy";
    /// `claim` without `nameplate`.
    pub const CLAIM_NEEDS_NAMEPLATE: &str = "claim requires 'nameplate'";
    /// A second `claim`.
    pub const ONE_CLAIM: &str = "only one claim per connection";
    /// A third side claimed or opened the mailbox.
    pub const CROWDED: &str = "crowded";
    /// A side that released a nameplate claimed it again.
    pub const RECLAIMED: &str = "reclaimed";
    /// A second `release`.
    pub const ONE_RELEASE: &str = "only one release per connection";
    /// `release` of another nameplate than the claimed one.
    pub const RELEASE_SAME_NAMEPLATE: &str = "release and claim must use same nameplate";
    /// `release` without nameplate and without a claim.
    pub const RELEASE_NEEDS_CLAIM: &str = "release without nameplate must follow claim";
    /// A second `open` while open.
    pub const ONE_OPEN: &str = "only one open per connection";
    /// `open` without `mailbox`.
    pub const OPEN_NEEDS_MAILBOX: &str = "open requires 'mailbox'";
    /// `add` without an open mailbox.
    pub const MUST_OPEN: &str = "must open mailbox before adding";
    /// `add` without `phase`.
    pub const MISSING_PHASE: &str = "missing 'phase'";
    /// `add` without `body`.
    pub const MISSING_BODY: &str = "missing 'body'";
    /// A second `close`.
    pub const ONE_CLOSE: &str = "only one close per connection";
    /// `close` of another mailbox than the opened one.
    pub const CLOSE_SAME_MAILBOX: &str = "open and close must use same mailbox";
    /// `close` without mailbox and without an open.
    pub const CLOSE_NEEDS_OPEN: &str = "close without mailbox must follow open";

    /// Ours: the frame is larger than [`RelayConfig::max_frame_bytes`](super::RelayConfig).
    pub const FRAME_TOO_LARGE: &str = "frame too large";
    /// Ours: the frame is not valid JSON (`orig` is the text as a JSON string).
    pub const MALFORMED_JSON: &str = "malformed JSON";
    /// Ours: the frame is JSON but not an object (`orig` is that JSON value).
    pub const NOT_AN_OBJECT: &str = "frame is not a JSON object";
    /// Ours: `bind` with a non-string `appid`.
    pub const BIND_NEEDS_STRING_APPID: &str = "bind requires a string 'appid'";
    /// Ours: `bind` with a non-string `side`.
    pub const BIND_NEEDS_STRING_SIDE: &str = "bind requires a string 'side'";
    /// Ours: `ping` whose `ping` is not an integer.
    pub const PING_NEEDS_INTEGER: &str = "ping requires an integer 'ping'";
    /// Ours: `claim` whose nameplate is not 1–40 ASCII digits (Python 0.8 drops the connection).
    pub const CLAIM_NEEDS_NUMERIC: &str = "claim requires a numeric 'nameplate'";
    /// Ours: `release` with a non-string `nameplate`.
    pub const RELEASE_NEEDS_STRING: &str = "release requires a string 'nameplate'";
    /// Ours: `open` with a non-string `mailbox`.
    pub const OPEN_NEEDS_STRING: &str = "open requires a string 'mailbox'";
    /// Ours: `add` with a non-string `phase`.
    pub const ADD_NEEDS_STRING_PHASE: &str = "add requires a string 'phase'";
    /// Ours: `add` with a non-string `body`.
    pub const ADD_NEEDS_STRING_BODY: &str = "add requires a string 'body'";
    /// Ours: `close` with a non-string `mailbox`.
    pub const CLOSE_NEEDS_STRING: &str = "close requires a string 'mailbox'";
    /// Ours: `allocate` found no free nameplate.
    pub const NO_FREE_NAMEPLATE: &str = "unable to find a free nameplate-id";
    /// Ours: the store failed while handling the command.
    pub const INTERNAL: &str = "internal server error";
}

/// Longest nameplate a `claim` may use (as Python 0.8's validity check).
const MAX_NAMEPLATE_LEN: usize = 40;

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
        /// The JSON text.
        frame: String,
    },
    /// Close a connection. Like Python 0.8, the core never drops a client by itself today, so it
    /// does not emit this yet; runners should still honour it.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Per-connection state, as in Python's `WebSocketServer`.
#[derive(Debug, Clone, Default)]
struct Conn {
    /// `(appid, side)` once bound.
    bound: Option<(String, String)>,
    did_allocate: bool,
    did_claim: bool,
    /// The nameplate of this connection's `claim` (set even if the claim failed).
    nameplate: Option<String>,
    did_release: bool,
    /// The mailbox of this connection's last `open` (set even if the open failed).
    mailbox_id: Option<String>,
    /// Whether the mailbox is open on this connection (Python's `self._mailbox`).
    open: bool,
    /// Whether this connection is subscribed to `mailbox_id`.
    listening: bool,
    did_close: bool,
}

/// Why a command was refused.
enum Refusal {
    /// Answer with this error string.
    Error(&'static str),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

type Handled = Result<(), Refusal>;

fn refuse<T>(error: &'static str) -> Result<T, Refusal> {
    Err(Refusal::Error(error))
}

/// The nameplate of a `release` or the mailbox of a `close`: the one given, which must be the
/// one this connection claimed or opened (if any), or else the remembered one. `errors` are
/// the refusals for: a different one given, a non-string given, none given and none known.
fn given_or_remembered(
    given: Option<&Value>,
    remembered: &Option<String>,
    errors: [&'static str; 3],
) -> Result<String, Refusal> {
    let [mismatch, not_a_string, nothing] = errors;
    match (given, remembered) {
        (Some(g), Some(r)) if g.as_str() != Some(r.as_str()) => refuse(mismatch),
        (Some(g), _) => g
            .as_str()
            .map(str::to_owned)
            .ok_or(Refusal::Error(not_a_string)),
        (None, Some(r)) => Ok(r.clone()),
        (None, None) => refuse(nothing),
    }
}

/// The outcome of opening a mailbox, besides store failures.
#[derive(Debug, PartialEq)]
enum Opened {
    Ok,
    Crowded,
}

/// The relay core. See the [module docs](self) for its behaviour.
#[derive(Debug)]
pub struct Relay<S: MailboxStore = MemoryStore> {
    config: RelayConfig,
    store: S,
    rng: ChaCha20Rng,
    conns: HashMap<ConnId, Conn>,
    /// `(appid, mailbox)` → connections listening, in subscription order.
    subscribers: HashMap<(String, String), Vec<ConnId>>,
    outputs: VecDeque<RelayOutput>,
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
        }
    }

    /// A new connection: queues the `welcome`, whose `your-address` is `{"port": p, "ipv4": ip}`
    /// (or `"ipv6"`) when `addr` is given. `now` is the Unix time in seconds, used for `server_tx`.
    /// A reused `conn` starts afresh.
    pub fn connected(&mut self, conn: ConnId, addr: Option<SocketAddr>, now: f64) {
        self.disconnected(conn);
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
        if frame.len() > self.config.max_frame_bytes {
            tracing::debug!(conn, len = frame.len(), "relay: frame too large");
            self.send_error(conn, errors::FRAME_TOO_LARGE, Value::Null, now);
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
        self.send_with_id(conn, ServerMessage::Ack { id: None }, &id, now);
        // A non-string type is simply unknown.
        let mtype = mtype.as_str().unwrap_or("");
        tracing::debug!(conn, mtype, "relay: command");
        self.conns.entry(conn).or_default();
        if let Err(refusal) = self.dispatch(conn, mtype, &msg, now) {
            let error = match refusal {
                Refusal::Error(error) => error,
                Refusal::Store(e) => {
                    tracing::warn!(conn, error = %e, "relay: store failure");
                    errors::INTERNAL
                }
            };
            self.send_error(conn, error, Value::Object(msg), now);
        }
    }

    /// The connection went away: it stops listening. Like Python, this does not close its mailbox
    /// or release its nameplate (the client may come back).
    pub fn disconnected(&mut self, conn: ConnId) {
        if let Some(state) = self.conns.remove(&conn) {
            tracing::debug!(conn, "relay: disconnected");
            if let (true, Some((appid, _)), Some(mailbox)) =
                (state.listening, &state.bound, &state.mailbox_id)
            {
                self.unsubscribe(appid, mailbox, conn);
            }
        }
    }

    /// Python's prune: touches every mailbox with a live subscriber, then deletes every mailbox
    /// not updated for [`RelayConfig::channel_expiration_secs`] (with its sides, messages and the
    /// nameplates pointing at it). Returns how many mailboxes were deleted. A store failure ends
    /// the pass early (logged); what was deleted so far stays deleted.
    pub fn prune(&mut self, now: f64) -> usize {
        let mut pruned = 0;
        if let Err(e) = self.try_prune(now, &mut pruned) {
            tracing::warn!(error = %e, "relay: prune failed");
        }
        pruned
    }

    fn try_prune(&mut self, now: f64, pruned: &mut usize) -> Result<(), StoreError> {
        for (appid, mailbox) in self.subscribers.keys() {
            self.store.touch_mailbox(appid, mailbox, now)?;
        }
        let old = now - self.config.channel_expiration_secs;
        for appid in self.store.app_ids()? {
            for id in self.store.mailbox_ids(&appid)? {
                let Some(record) = self.store.mailbox(&appid, &id)? else {
                    continue;
                };
                if record.updated > old {
                    continue;
                }
                tracing::debug!(appid, mailbox = id, "relay: pruning mailbox");
                self.store.delete_nameplates_for_mailbox(&appid, &id)?;
                self.store.delete_mailbox(&appid, &id)?;
                self.drop_listeners(&appid, &id);
                *pruned += 1;
            }
        }
        Ok(())
    }

    /// The next thing for the runner to do, if any. Drain it after every input.
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.outputs.pop_front()
    }

    /// The store (for tests and persistence).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The relay's settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    // ----- dispatch -------------------------------------------------------------------------

    fn dispatch(
        &mut self,
        conn: ConnId,
        mtype: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        match mtype {
            "ping" => return self.handle_ping(conn, msg, now),
            "bind" => return self.handle_bind(conn, msg),
            _ => {}
        }
        let Some((appid, side)) = self.conns.get(&conn).and_then(|c| c.bound.clone()) else {
            return refuse(errors::MUST_BIND_FIRST);
        };
        match mtype {
            "list" => self.handle_list(conn, &appid, now),
            "allocate" => self.handle_allocate(conn, &appid, &side, now),
            "claim" => self.handle_claim(conn, &appid, &side, msg, now),
            "release" => self.handle_release(conn, &appid, &side, msg, now),
            "open" => self.handle_open(conn, &appid, &side, msg, now),
            "add" => self.handle_add(conn, &appid, &side, msg, now),
            "close" => self.handle_close(conn, &appid, &side, msg, now),
            _ => refuse(errors::UNKNOWN_TYPE),
        }
    }

    fn conn_mut(&mut self, conn: ConnId) -> &mut Conn {
        self.conns.entry(conn).or_default()
    }

    fn handle_ping(&mut self, conn: ConnId, msg: &Map<String, Value>, now: f64) -> Handled {
        let Some(ping) = msg.get("ping") else {
            return refuse(errors::PING_NEEDS_PING);
        };
        let Some(pong) = ping.as_i64() else {
            return refuse(errors::PING_NEEDS_INTEGER);
        };
        self.send(conn, ServerMessage::Pong { pong }, now);
        Ok(())
    }

    fn handle_bind(&mut self, conn: ConnId, msg: &Map<String, Value>) -> Handled {
        if self.conn_mut(conn).bound.is_some() {
            return refuse(errors::ALREADY_BOUND);
        }
        let Some(appid) = msg.get("appid") else {
            return refuse(errors::BIND_NEEDS_APPID);
        };
        let Some(side) = msg.get("side") else {
            return refuse(errors::BIND_NEEDS_SIDE);
        };
        let Some(appid) = appid.as_str() else {
            return refuse(errors::BIND_NEEDS_STRING_APPID);
        };
        let Some(side) = side.as_str() else {
            return refuse(errors::BIND_NEEDS_STRING_SIDE);
        };
        tracing::debug!(conn, appid, side, "relay: bound");
        self.conn_mut(conn).bound = Some((appid.to_owned(), side.to_owned()));
        Ok(())
    }

    fn handle_list(&mut self, conn: ConnId, appid: &str, now: f64) -> Handled {
        let mut names = if self.config.allow_list {
            self.store.nameplate_names(appid)?
        } else {
            Vec::new()
        };
        names.sort();
        names.dedup();
        let nameplates = names.into_iter().map(|id| NameplateEntry { id }).collect();
        self.send(conn, ServerMessage::Nameplates { nameplates }, now);
        Ok(())
    }

    fn handle_allocate(&mut self, conn: ConnId, appid: &str, side: &str, now: f64) -> Handled {
        if self.conn_mut(conn).did_allocate {
            return refuse(errors::GREEDY);
        }
        let Some(nameplate) = self.find_available_nameplate(appid)? else {
            return refuse(errors::NO_FREE_NAMEPLATE);
        };
        // A fresh nameplate has no other side, so this cannot be crowded or reclaimed.
        self.claim_nameplate(appid, &nameplate, side, now)?;
        self.conn_mut(conn).did_allocate = true;
        self.send(conn, ServerMessage::Allocated { nameplate }, now);
        Ok(())
    }

    fn handle_claim(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let Some(nameplate) = msg.get("nameplate") else {
            return refuse(errors::CLAIM_NEEDS_NAMEPLATE);
        };
        if self.conn_mut(conn).did_claim {
            return refuse(errors::ONE_CLAIM);
        }
        // Python 0.8 crashes on these and drops the connection; we refuse without using up the
        // connection's one claim.
        let nameplate = match nameplate.as_str() {
            Some(n) if is_valid_nameplate(n) => n.to_owned(),
            _ => return refuse(errors::CLAIM_NEEDS_NUMERIC),
        };
        let state = self.conn_mut(conn);
        state.did_claim = true;
        state.nameplate = Some(nameplate.clone());
        let mailbox = self.claim_nameplate(appid, &nameplate, side, now)?;
        self.send(conn, ServerMessage::Claimed { mailbox }, now);
        Ok(())
    }

    fn handle_release(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        if state.did_release {
            return refuse(errors::ONE_RELEASE);
        }
        let nameplate = given_or_remembered(
            msg.get("nameplate"),
            &state.nameplate,
            [
                errors::RELEASE_SAME_NAMEPLATE,
                errors::RELEASE_NEEDS_STRING,
                errors::RELEASE_NEEDS_CLAIM,
            ],
        )?;
        state.did_release = true;
        self.release_nameplate(appid, &nameplate, side)?;
        self.send(conn, ServerMessage::Released, now);
        Ok(())
    }

    fn handle_open(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        if self.conn_mut(conn).open {
            return refuse(errors::ONE_OPEN);
        }
        let Some(mailbox) = msg.get("mailbox") else {
            return refuse(errors::OPEN_NEEDS_MAILBOX);
        };
        let Some(mailbox) = mailbox.as_str() else {
            return refuse(errors::OPEN_NEEDS_STRING);
        };
        self.conn_mut(conn).mailbox_id = Some(mailbox.to_owned());
        if self.open_mailbox(appid, mailbox, side, now)? == Opened::Crowded {
            return refuse(errors::CROWDED);
        }
        let state = self.conn_mut(conn);
        state.open = true;
        if !state.listening {
            state.listening = true;
            self.subscribers
                .entry((appid.to_owned(), mailbox.to_owned()))
                .or_default()
                .push(conn);
        }
        for stored in self.store.messages(appid, mailbox)? {
            self.send_message(conn, &stored, now);
        }
        Ok(())
    }

    fn handle_add(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        let mailbox = match (&state.mailbox_id, state.open) {
            (Some(mailbox), true) => mailbox.clone(),
            _ => return refuse(errors::MUST_OPEN),
        };
        let Some(phase) = msg.get("phase") else {
            return refuse(errors::MISSING_PHASE);
        };
        let Some(body) = msg.get("body") else {
            return refuse(errors::MISSING_BODY);
        };
        let Some(phase) = phase.as_str() else {
            return refuse(errors::ADD_NEEDS_STRING_PHASE);
        };
        let Some(body) = body.as_str() else {
            return refuse(errors::ADD_NEEDS_STRING_BODY);
        };
        let stored = StoredMessage {
            side: side.to_owned(),
            phase: phase.to_owned(),
            body: body.to_owned(),
            server_rx: now,
            msg_id: msg.get("id").filter(|id| !id.is_null()).cloned(),
        };
        // The mailbox may have been deleted meanwhile (see the module docs).
        self.ensure_mailbox(appid, &mailbox, false, now)?;
        self.store.add_message(appid, &mailbox, stored.clone())?;
        self.store.touch_mailbox(appid, &mailbox, now)?;
        let listeners = self
            .subscribers
            .get(&(appid.to_owned(), mailbox))
            .cloned()
            .unwrap_or_default();
        for listener in listeners {
            self.send_message(listener, &stored, now);
        }
        Ok(())
    }

    fn handle_close(
        &mut self,
        conn: ConnId,
        appid: &str,
        side: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Handled {
        let state = self.conn_mut(conn);
        if state.did_close {
            return refuse(errors::ONE_CLOSE);
        }
        let mailbox = given_or_remembered(
            msg.get("mailbox"),
            &state.mailbox_id,
            [
                errors::CLOSE_SAME_MAILBOX,
                errors::CLOSE_NEEDS_STRING,
                errors::CLOSE_NEEDS_OPEN,
            ],
        )?;
        // A close on a connection that has not opened the mailbox opens it first.
        if !state.open && self.open_mailbox(appid, &mailbox, side, now)? == Opened::Crowded {
            return refuse(errors::CROWDED);
        }
        let state = self.conn_mut(conn);
        let was_listening = std::mem::take(&mut state.listening);
        let listened_to = state.mailbox_id.clone();
        state.did_close = true;
        state.open = false;
        if let (true, Some(listened_to)) = (was_listening, listened_to) {
            self.unsubscribe(appid, &listened_to, conn);
        }
        let mood = match msg.get("mood") {
            None | Some(Value::Null) => None,
            Some(Value::String(mood)) => Some(mood.clone()),
            Some(other) => Some(other.to_string()),
        };
        self.close_mailbox(appid, &mailbox, side, mood)?;
        self.send(conn, ServerMessage::Closed, now);
        Ok(())
    }

    // ----- table logic (Python's AppNamespace and Mailbox) ------------------------------------

    /// Python's `_find_available_nameplate_id`: a uniformly random free id of the shortest
    /// length among 1–9, 10–99, 100–999; then 1000 random tries in [1000, 999999].
    fn find_available_nameplate(&mut self, appid: &str) -> Result<Option<String>, StoreError> {
        for (low, high) in [(1u32, 10u32), (10, 100), (100, 1000)] {
            // Rejection sampling is uniform over the free ids and costs a few lookups while
            // the range is mostly free; when it keeps hitting taken ids, count exactly.
            for _ in 0..32 {
                let candidate = self.rng.gen_range(low..high).to_string();
                if self.store.nameplate(appid, &candidate)?.is_none() {
                    return Ok(Some(candidate));
                }
            }
            let taken: HashSet<u32> = self
                .store
                .nameplate_names(appid)?
                .iter()
                .filter_map(|name| name.parse::<u32>().ok().filter(|n| n.to_string() == *name))
                .filter(|n| (low..high).contains(n))
                .collect();
            let free = (high - low) as usize - taken.len();
            if free > 0 {
                let pick = self.rng.gen_range(0..free);
                return Ok((low..high)
                    .filter(|n| !taken.contains(n))
                    .nth(pick)
                    .map(|n| n.to_string()));
            }
        }
        for _ in 0..1000 {
            let candidate = self.rng.gen_range(1000u32..1_000_000).to_string();
            if self.store.nameplate(appid, &candidate)?.is_none() {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// A fresh mailbox id: 8 random bytes in lower-case base32 without padding (13 characters).
    /// Retries on the (astronomically unlikely) collision with an existing mailbox.
    fn new_mailbox_id(&mut self, appid: &str) -> Result<String, StoreError> {
        for _ in 0..16 {
            let mut bytes = [0u8; 8];
            self.rng.fill_bytes(&mut bytes);
            let id = base32_lower(&bytes);
            if self.store.mailbox(appid, &id)?.is_none() {
                return Ok(id);
            }
        }
        Err(StoreError::Backend("no unused mailbox id found".into()))
    }

    /// Python's `claim_nameplate`. Returns the mailbox id, or refuses with `reclaimed`/`crowded`
    /// (after having written the rows, like Python).
    fn claim_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        side: &str,
        now: f64,
    ) -> Result<String, Refusal> {
        let record = match self.store.nameplate(appid, name)? {
            Some(record) => record,
            None => {
                let mailbox_id = self.new_mailbox_id(appid)?;
                self.ensure_mailbox(appid, &mailbox_id, true, now)?;
                self.store.insert_nameplate(appid, name, &mailbox_id)?;
                NameplateRecord {
                    mailbox_id,
                    sides: Vec::new(),
                }
            }
        };
        let mut sides = record.sides.len();
        match record.sides.iter().find(|row| row.side == side) {
            None => {
                self.store.put_nameplate_side(
                    appid,
                    name,
                    NameplateSide {
                        side: side.to_owned(),
                        claimed: true,
                        added: now,
                    },
                )?;
                sides += 1;
            }
            Some(row) if !row.claimed => return refuse(errors::RECLAIMED),
            Some(_) => {} // an idempotent re-claim by a side that still claims it
        }
        if self.open_mailbox(appid, &record.mailbox_id, side, now)? == Opened::Crowded {
            return refuse(errors::CROWDED);
        }
        if sides > 2 {
            return refuse(errors::CROWDED);
        }
        Ok(record.mailbox_id)
    }

    /// Python's `release_nameplate`: clears this side's claim; deletes the nameplate when no
    /// claimed side remains. Unknown nameplates and sides are ignored.
    fn release_nameplate(&mut self, appid: &str, name: &str, side: &str) -> Result<(), StoreError> {
        let Some(record) = self.store.nameplate(appid, name)? else {
            return Ok(());
        };
        let Some(row) = record.sides.iter().find(|row| row.side == side) else {
            return Ok(());
        };
        self.store.put_nameplate_side(
            appid,
            name,
            NameplateSide {
                claimed: false,
                ..row.clone()
            },
        )?;
        let still_claimed = record
            .sides
            .iter()
            .any(|row| row.side != side && row.claimed);
        if !still_claimed {
            tracing::debug!(appid, nameplate = name, "relay: nameplate freed");
            self.store.delete_nameplate(appid, name)?;
        }
        Ok(())
    }

    fn ensure_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        now: f64,
    ) -> Result<(), StoreError> {
        if self.store.mailbox(appid, id)?.is_none() {
            self.store.insert_mailbox(appid, id, for_nameplate, now)?;
        }
        Ok(())
    }

    /// Python's `open_mailbox`: creates the mailbox if needed, adds this side's row if missing,
    /// touches it, then reports `Crowded` if more than two sides have rows.
    fn open_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        side: &str,
        now: f64,
    ) -> Result<Opened, StoreError> {
        self.ensure_mailbox(appid, id, false, now)?;
        let record = self
            .store
            .mailbox(appid, id)?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id} of app {appid}")))?;
        let mut sides = record.sides.len();
        if !record.sides.iter().any(|row| row.side == side) {
            self.store.put_mailbox_side(
                appid,
                id,
                MailboxSide {
                    side: side.to_owned(),
                    opened: true,
                    mood: None,
                    added: now,
                },
            )?;
            sides += 1;
        }
        self.store.touch_mailbox(appid, id, now)?;
        Ok(if sides > 2 {
            Opened::Crowded
        } else {
            Opened::Ok
        })
    }

    /// Python's `Mailbox.close`: marks this side closed with its mood; when no side is open any
    /// more, deletes this side's nameplate claims, the nameplates pointing here, and the mailbox
    /// with its sides and messages, and drops its listeners.
    fn close_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        side: &str,
        mood: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(record) = self.store.mailbox(appid, id)? else {
            return Ok(());
        };
        let Some(row) = record.sides.iter().find(|row| row.side == side) else {
            return Ok(());
        };
        self.store.put_mailbox_side(
            appid,
            id,
            MailboxSide {
                opened: false,
                mood,
                ..row.clone()
            },
        )?;
        if record
            .sides
            .iter()
            .any(|row| row.side != side && row.opened)
        {
            return Ok(());
        }
        tracing::debug!(appid, mailbox = id, "relay: mailbox closed by all sides");
        self.store.delete_nameplate_sides_of(appid, side)?;
        self.store.delete_nameplates_for_mailbox(appid, id)?;
        self.store.delete_mailbox(appid, id)?;
        self.drop_listeners(appid, id);
        Ok(())
    }

    /// Unsubscribes every connection from a deleted mailbox.
    fn drop_listeners(&mut self, appid: &str, id: &str) {
        if let Some(listeners) = self.subscribers.remove(&(appid.to_owned(), id.to_owned())) {
            for listener in listeners {
                if let Some(state) = self.conns.get_mut(&listener) {
                    state.listening = false;
                }
            }
        }
    }

    fn unsubscribe(&mut self, appid: &str, mailbox: &str, conn: ConnId) {
        let key = (appid.to_owned(), mailbox.to_owned());
        if let Some(listeners) = self.subscribers.get_mut(&key) {
            listeners.retain(|&c| c != conn);
            if listeners.is_empty() {
                self.subscribers.remove(&key);
            }
        }
    }

    // ----- output ---------------------------------------------------------------------------

    fn send(&mut self, conn: ConnId, message: ServerMessage, now: f64) {
        let frame = ServerFrame {
            message,
            server_tx: Some(now),
        };
        self.outputs.push_back(RelayOutput::Send {
            conn,
            frame: frame.to_json(),
        });
    }

    /// Sends a frame whose `id` is copied verbatim from the client (any JSON value; the wire
    /// types only model string ids).
    fn send_with_id(&mut self, conn: ConnId, message: ServerMessage, id: &Value, now: f64) {
        let frame = ServerFrame {
            message,
            server_tx: Some(now),
        };
        let text = match serde_json::to_value(&frame) {
            Ok(Value::Object(mut map)) => {
                map.insert("id".into(), id.clone());
                Value::Object(map).to_string()
            }
            _ => frame.to_json(),
        };
        self.outputs
            .push_back(RelayOutput::Send { conn, frame: text });
    }

    fn send_message(&mut self, conn: ConnId, stored: &StoredMessage, now: f64) {
        let message = ServerMessage::Message {
            side: stored.side.clone(),
            phase: stored.phase.clone(),
            body: stored.body.clone(),
            server_rx: Some(stored.server_rx),
            id: None,
        };
        let id = stored.msg_id.clone().unwrap_or(Value::Null);
        self.send_with_id(conn, message, &id, now);
    }

    fn send_error(&mut self, conn: ConnId, error: &str, orig: Value, now: f64) {
        tracing::debug!(conn, error, "relay: error");
        self.send(
            conn,
            ServerMessage::Error {
                error: error.to_owned(),
                orig,
            },
            now,
        );
    }
}

/// Whether a claimed nameplate is acceptable: 1–40 ASCII digits.
fn is_valid_nameplate(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAMEPLATE_LEN && name.bytes().all(|b| b.is_ascii_digit())
}

/// RFC 4648 base32, lower-case, without `=` padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let symbol = |index: u32| char::from(ALPHABET[(index & 31) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol(buffer >> bits));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol(buffer << (5 - bits)));
    }
    out
}
