//! The relay runner: drives one [`Relay`] core from connections accepted on any number of
//! [`Listener`]s.
//!
//! One task owns the core; each connection has a small task that forwards its frames to the
//! core and writes the core's replies back. Pruning runs periodically, as in the Python server.
//!
//! ```
//! # let rt = tokio::runtime::Runtime::new().unwrap();
//! # rt.block_on(async {
//! let relay = wormhole::relay::server::spawn_memory("doc-relay").unwrap();
//! assert_eq!(relay.url(), "mem://doc-relay");
//! relay.shutdown().await;
//! # });
//! ```
//!
//! Split by job: this module holds the public face (settings, the handle, the `spawn`
//! functions); `core_loop` the task that owns the core and its turns; `batch` the frames of
//! one turn; `connection` the connection tasks and the queue into the core; `outbox` and
//! `budget` a connection's outgoing frames and inbound byte budgets.

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wormhole_transports::memory::MemoryListener;
use wormhole_transports::{Listener, TransportError};

use super::metrics::Metrics;
use super::shared::SharedStore;
use super::{MailboxChange, MailboxStore, MemoryStore, Relay, RelayConfig};
use crate::clock::{Clock, TokioClock};
use core_loop::run;

mod batch;
mod budget;
mod connection;
mod core_loop;
mod outbox;

/// How often the relay prunes idle mailboxes and abandoned nameplates. The Python server
/// prunes every 5 minutes; once a minute lets
/// [`Limits::abandoned_nameplate_secs`](super::Limits::abandoned_nameplate_secs) (2 minutes)
/// take effect on time, at the cost of a scan of the store a minute.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How long one write to a client may take before the relay drops that connection: a client
/// that stops reading cannot pin its connection's task (and the frames queued for it) forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How many bytes of frames may wait for one connection before the relay drops it. Four
/// times the largest frame a client may send (1 MiB), so a burst such as a mailbox replay
/// fits, while a hundred connections that never read hold at most some 400 MiB less whatever
/// the kernel buffers (and in practice far less: see the README's limits).
pub const OUTBOX_BUDGET: usize = 4 * 1024 * 1024;

/// Bytes of received frames that may wait for the core, all connections together. A
/// connection whose frame does not fit waits (and stops reading its socket, so TCP slows its
/// client down) until the core has caught up; the core itself never waits for a connection.
pub const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Bytes per second one connection may send once it has used its burst (the largest frame):
/// a wormhole client sends a few KiB per exchange, a whole text of the largest size
/// fits in the burst, and a client pushing more is not read meanwhile, so it cannot take the
/// relay's time (reading and parsing) from the others.
pub const INBOUND_BYTES_PER_SEC: usize = 256 * 1024;

/// Bytes per second all the connections of one source address (as counted by
/// [`Limits::source_key`](super::Limits::source_key)) may send together, after a burst of four
/// times the largest frame. Without it a client would get a fresh burst with every new
/// connection.
pub const SOURCE_BYTES_PER_SEC: usize = 1024 * 1024;

/// Settings of a running relay.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The core's settings (message of the day, limits, …).
    pub config: RelayConfig,
    /// How often to prune.
    pub prune_interval: Duration,
    /// Seed of the relay's randomness (nameplate choice, mailbox ids); random if `None`.
    pub seed: Option<[u8; 32]>,
    /// Deadline of every write to a client (and of the final close); past it the connection
    /// is dropped, its side's state kept as for any dropped connection.
    pub send_timeout: Duration,
    /// Bytes of frames that may wait for one connection; past it the connection is dropped.
    pub outbox_budget: usize,
    /// Bytes of received frames that may wait for the core (see [`QUEUE_BYTES`]); at least
    /// the transport's largest frame.
    pub queue_bytes: usize,
    /// Bytes per second one connection may send after a burst of
    /// [`RelayConfig::max_frame_bytes`]; past it the relay stops reading that connection for
    /// a while (see [`INBOUND_BYTES_PER_SEC`]).
    pub inbound_bytes_per_sec: usize,
    /// Bytes per second all the connections of one source address may send together, after
    /// a burst of four times [`RelayConfig::max_frame_bytes`] (see [`SOURCE_BYTES_PER_SEC`]).
    /// Sources spared by the per-source limits are not counted.
    pub source_bytes_per_sec: usize,
    /// Where the relay counts connections by transport, frames, exchanges, errors and limit
    /// hits (share it with a `/metrics` endpoint).
    pub metrics: Arc<Metrics>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config: RelayConfig::default(),
            prune_interval: PRUNE_INTERVAL,
            seed: None,
            send_timeout: SEND_TIMEOUT,
            outbox_budget: OUTBOX_BUDGET,
            queue_bytes: QUEUE_BYTES,
            inbound_bytes_per_sec: INBOUND_BYTES_PER_SEC,
            source_bytes_per_sec: SOURCE_BYTES_PER_SEC,
            metrics: Arc::default(),
        }
    }
}

/// A running relay. Dropping the handle stops it.
#[derive(Debug)]
pub struct RelayHandle {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// The URL of the first listener.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, drops every connection and waits for the relay task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts an in-process relay reachable as `mem://NAME`. Needs a tokio runtime.
pub fn spawn_memory(name: &str) -> Result<RelayHandle, TransportError> {
    let listener = MemoryListener::bind(name)?;
    Ok(spawn(
        vec![Box::new(listener)],
        MemoryStore::default(),
        ServerOptions::default(),
        Arc::new(TokioClock::new()),
    ))
}

/// Starts a relay serving every listener, with `store` behind it. Needs a tokio runtime.
pub fn spawn<S: MailboxStore + Send + 'static>(
    listeners: Vec<Box<dyn Listener>>,
    store: S,
    options: ServerOptions,
    clock: Arc<dyn Clock>,
) -> RelayHandle {
    spawn_inner(listeners, store, None, None, options, clock)
}

/// Starts a relay, as [`spawn`], over a store that other relay processes share: besides the
/// clients' commands, the relay follows the store's change feed ([`SharedStore::changes`]),
/// so that its listeners get the messages added through the other processes.
pub fn spawn_shared<S: SharedStore + Send + 'static>(
    listeners: Vec<Box<dyn Listener>>,
    store: S,
    options: ServerOptions,
    clock: Arc<dyn Clock>,
) -> RelayHandle {
    let changes = store.changes();
    spawn_inner(listeners, store, Some(changes), None, options, clock)
}

/// Starts the runner; `listened`, if given, gets the listened mailboxes after every turn (see
/// [`spawn_shared_watched`](super::shared::spawn_shared_watched)).
pub(super) fn spawn_inner<S: MailboxStore + Send + 'static>(
    listeners: Vec<Box<dyn Listener>>,
    store: S,
    changes: Option<mpsc::UnboundedReceiver<MailboxChange>>,
    listened: Option<super::shared::ListenedMailboxes>,
    options: ServerOptions,
    clock: Arc<dyn Clock>,
) -> RelayHandle {
    let url = listeners.first().map(|l| l.url()).unwrap_or_default();
    let (stop_tx, stop_rx) = oneshot::channel();
    let seed = options.seed.unwrap_or_else(|| {
        let mut s = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut s);
        s
    });
    let relay =
        Relay::new(options.config.clone(), store, seed).with_metrics(options.metrics.clone());
    let task = tokio::spawn(run(
        relay, listeners, changes, listened, options, clock, stop_rx,
    ));
    RelayHandle {
        url,
        stop: Some(stop_tx),
        task: Some(task),
    }
}
