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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wormhole_transports::memory::MemoryListener;
use wormhole_transports::{Connection, Listener, TransportError};

use super::{ConnId, MailboxStore, MemoryStore, Relay, RelayConfig, RelayOutput};
use crate::clock::{Clock, TokioClock};

/// How often the relay prunes idle mailboxes (the Python server's 5 minutes).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(300);

/// How long one write to a client may take before the relay drops that connection: a client
/// that stops reading cannot pin its connection's task (and the frames queued for it) forever.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How many bytes of frames may wait for one connection before the relay drops it. Four
/// times the largest frame a client may send (1 MiB), so a burst such as a mailbox replay
/// fits, while a hundred connections that never read hold at most some 400 MiB less whatever
/// the kernel buffers (and in practice far less: see the README's limits).
pub const OUTBOX_BUDGET: usize = 4 * 1024 * 1024;

/// Most inputs handled as one batch (one commit of a durable store).
const MAX_BATCH: usize = 256;

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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config: RelayConfig::default(),
            prune_interval: PRUNE_INTERVAL,
            seed: None,
            send_timeout: SEND_TIMEOUT,
            outbox_budget: OUTBOX_BUDGET,
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
    let url = listeners.first().map(|l| l.url()).unwrap_or_default();
    let (stop_tx, stop_rx) = oneshot::channel();
    let seed = options.seed.unwrap_or_else(|| {
        let mut s = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut s);
        s
    });
    let relay = Relay::new(options.config.clone(), store, seed);
    let task = tokio::spawn(run(relay, listeners, options, clock, stop_rx));
    RelayHandle {
        url,
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// What connection tasks tell the core task.
enum ConnEvent {
    Incoming(Box<dyn Connection>),
    Frame(ConnId, String),
    Gone(ConnId),
}

/// Frames waiting to be written to one connection. Lighter than a channel per connection
/// (a tokio channel allocates a block of 32 slots up front), which matters with many idle
/// connections.
///
/// The frames waiting are bounded by a byte budget: a connection whose outbox would go over it
/// (a client that stopped reading) is closed, and what was queued for it is dropped.
struct Outbox {
    state: std::sync::Mutex<OutboxState>,
    ready: tokio::sync::Notify,
    budget: usize,
}

#[derive(Default)]
struct OutboxState {
    frames: Vec<String>,
    bytes: usize,
    closed: bool,
    /// Closed for going over the budget: nothing more is written.
    overflowed: bool,
}

impl Outbox {
    fn new(budget: usize) -> Outbox {
        Outbox {
            state: Default::default(),
            ready: Default::default(),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues frames; `false` if the connection is closed or just went over its budget (then
    /// it is closed and the frames are dropped).
    fn push(&self, frames: Vec<String>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let bytes = frames.iter().map(String::len).sum::<usize>();
        let within = state.bytes.saturating_add(bytes) <= self.budget;
        if within {
            state.bytes += bytes;
            if state.frames.is_empty() {
                state.frames = frames;
            } else {
                state.frames.extend(frames);
            }
        } else {
            state.closed = true;
            state.overflowed = true;
            state.frames = Vec::new();
            state.bytes = 0;
        }
        drop(state);
        self.ready.notify_one();
        within
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Completes once the connection went over its budget.
    async fn overflowed(&self) {
        loop {
            if self.lock().overflowed {
                return;
            }
            self.ready.notified().await;
        }
    }

    fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Waits for frames (or the close); returns `None` once closed and drained.
    async fn next(&self) -> Option<Vec<String>> {
        loop {
            {
                let mut state = self.lock();
                if state.overflowed {
                    return None;
                }
                if !state.frames.is_empty() {
                    state.bytes = 0;
                    return Some(std::mem::take(&mut state.frames));
                }
                if state.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

async fn run<S: MailboxStore>(
    mut relay: Relay<S>,
    listeners: Vec<Box<dyn Listener>>,
    options: ServerOptions,
    clock: Arc<dyn Clock>,
    mut stop: oneshot::Receiver<()>,
) {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<ConnEvent>();
    let mut accept_tasks = Vec::new();
    for mut listener in listeners {
        let events = events_tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(conn) => {
                        if events.send(ConnEvent::Incoming(conn)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "listener stopped");
                        break;
                    }
                }
            }
        }));
    }

    let mut conns: HashMap<ConnId, Arc<Outbox>> = HashMap::new();
    let mut next_id: ConnId = 1;
    let mut prune = clock.sleep_until(clock.now() + options.prune_interval);
    let mut batch: Vec<(ConnId, Vec<String>)> = Vec::new();
    loop {
        // Biased, so the same inputs give the same order (the simulator relies on it): the stop
        // first, then the prune timer (a busy relay cannot starve it), then connection events.
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = &mut prune => {
                let pruned = relay.prune(clock.unix_time());
                if pruned > 0 {
                    tracing::info!(pruned, "pruned idle mailboxes");
                }
                prune = clock.sleep_until(clock.now() + options.prune_interval);
            }
            event = events_rx.recv() => {
                let Some(event) = event else { break };
                // Everything that has arrived is one batch: the store commits it once (a group
                // commit), before any reply of it leaves.
                relay.begin_batch();
                let mut event = Some(event);
                let mut taken = 0;
                while let Some(next) = event.take() {
                    match next {
                        ConnEvent::Incoming(conn) => {
                            let id = next_id;
                            next_id += 1;
                            let addr: Option<SocketAddr> = conn.peer().addr;
                            let outbox = Arc::new(Outbox::new(options.outbox_budget));
                            conns.insert(id, outbox.clone());
                            tokio::spawn(serve_connection(
                                id,
                                conn,
                                events_tx.clone(),
                                outbox,
                                clock.clone(),
                                options.send_timeout,
                            ));
                            tracing::debug!(conn = id, ?addr, "connection opened");
                            relay.connected(id, addr, clock.unix_time());
                        }
                        ConnEvent::Frame(id, text) => relay.received(id, &text, clock.unix_time()),
                        ConnEvent::Gone(id) => {
                            conns.remove(&id);
                            relay.disconnected(id);
                            tracing::debug!(conn = id, "connection closed");
                        }
                    }
                    taken += 1;
                    if taken < MAX_BATCH {
                        event = events_rx.try_recv().ok();
                    }
                }
                relay.end_batch();
            }
        }
        // Group each input's replies per connection (usually an `ack` and an answer, or an
        // echo to both sides of a mailbox) so that each connection writes them at once.
        while let Some(out) = relay.poll_output() {
            match out {
                RelayOutput::Send { conn, frame } => match batch.iter_mut().find(|b| b.0 == conn) {
                    Some(entry) => entry.1.push(frame),
                    None => batch.push((conn, vec![frame])),
                },
                RelayOutput::Close { conn } => {
                    flush_batch(&conns, &mut batch);
                    if let Some(outbox) = conns.get(&conn) {
                        outbox.close();
                    }
                }
            }
        }
        flush_batch(&conns, &mut batch);
    }
    for task in accept_tasks {
        task.abort();
    }
    for outbox in conns.values() {
        outbox.close();
    }
}

fn flush_batch(conns: &HashMap<ConnId, Arc<Outbox>>, batch: &mut Vec<(ConnId, Vec<String>)>) {
    for (conn, frames) in batch.drain(..) {
        if let Some(outbox) = conns.get(&conn) {
            if !outbox.push(frames) {
                tracing::debug!(conn, "connection dropped: it does not read what it is sent");
            }
        }
    }
}

async fn serve_connection(
    id: ConnId,
    mut conn: Box<dyn Connection>,
    events: mpsc::UnboundedSender<ConnEvent>,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    send_timeout: Duration,
) {
    loop {
        // Biased for determinism; a pending write goes first.
        tokio::select! {
            biased;
            out = outbox.next() => match out {
                Some(frames) => {
                    let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
                    let sent = tokio::select! {
                        biased;
                        sent = conn.send_all(frames) => sent.is_ok(),
                        () = outbox.overflowed() => false,
                        () = deadline => {
                            tracing::debug!(conn = id, "connection dropped: a write timed out");
                            false
                        }
                    };
                    if !sent {
                        break;
                    }
                }
                None => break,
            },
            frame = conn.recv() => match frame {
                Ok(Some(text)) => {
                    if events.send(ConnEvent::Frame(id, text)).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(conn = id, error = %e, "connection failed");
                    break;
                }
            },
        }
    }
    // Whatever was queued is dropped with the connection. A connection that went over its
    // budget is not read from: it is dropped at once; any other is closed with a deadline.
    if outbox.is_overflowed() {
        drop(conn);
        let _ = events.send(ConnEvent::Gone(id));
        return;
    }
    outbox.close();
    let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
    tokio::select! {
        biased;
        _ = conn.close() => {}
        () = deadline => {}
    }
    let _ = events.send(ConnEvent::Gone(id));
}
