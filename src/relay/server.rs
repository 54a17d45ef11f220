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
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use wormhole_transports::memory::MemoryListener;
use wormhole_transports::{Connection, Listener, TransportError};

use super::metrics::Metrics;
use super::{ConnId, MailboxStore, MemoryStore, Relay, RelayConfig, RelayOutput};
use crate::clock::{Clock, TokioClock};

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

/// Events (frames, new and closed connections) that may wait for the core.
const QUEUE_EVENTS: usize = 4096;

/// Inputs the core handles in one turn before it writes what they produced, so that frames
/// due to one connection from several inputs go out in one write.
const TURN_EVENTS: usize = 64;
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
    let url = listeners.first().map(|l| l.url()).unwrap_or_default();
    let (stop_tx, stop_rx) = oneshot::channel();
    let seed = options.seed.unwrap_or_else(|| {
        let mut s = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut s);
        s
    });
    let relay =
        Relay::new(options.config.clone(), store, seed).with_metrics(options.metrics.clone());
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
    /// A frame, holding its share of the queue's byte budget until the core has handled it.
    Frame(ConnId, String, OwnedSemaphorePermit),
    Gone(ConnId),
}

/// The sending side of the bounded queue into the core.
#[derive(Clone)]
struct Queue {
    events: mpsc::Sender<ConnEvent>,
    bytes: Arc<Semaphore>,
    max_frame: u32,
}

impl Queue {
    /// Queues a frame once there is room for its bytes. `false` once the core is gone.
    async fn frame(&self, id: ConnId, text: String) -> bool {
        let len = u32::try_from(text.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_frame);
        let Ok(permit) = self.bytes.clone().acquire_many_owned(len).await else {
            return false;
        };
        self.events
            .send(ConnEvent::Frame(id, text, permit))
            .await
            .is_ok()
    }
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
    /// The connection wants to know when its frames were handled (HTTP polling).
    receipts: bool,
    /// For metrics: the connection's transport.
    kind: &'static str,
}

#[derive(Default)]
struct OutboxState {
    frames: Vec<Arc<str>>,
    bytes: usize,
    closed: bool,
    /// Closed for going over the budget: nothing more is written.
    overflowed: bool,
    /// Frames of this connection the core has handled, and the count last reported to it.
    handled: u64,
    reported: u64,
}

impl Outbox {
    fn new(budget: usize, receipts: bool, kind: &'static str) -> Outbox {
        Outbox {
            state: Default::default(),
            ready: Default::default(),
            budget,
            receipts,
            kind,
        }
    }

    /// The core handled one more frame of this connection (and queued what it caused).
    fn mark_handled(&self) {
        self.lock().handled += 1;
        self.ready.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues frames; `false` if the connection is closed or just went over its budget (then
    /// it is closed and the frames are dropped).
    fn push(&self, frames: Vec<Arc<str>>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        let bytes = frames.iter().map(|f| f.len()).sum::<usize>();
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

    /// Waits for frames or a new count of frames handled (or the close); returns `None` once
    /// closed and drained.
    async fn next(&self) -> Option<(Vec<Arc<str>>, Option<u64>)> {
        loop {
            {
                let mut state = self.lock();
                if state.overflowed {
                    return None;
                }
                let receipt = (state.handled != state.reported).then_some(state.handled);
                if !state.frames.is_empty() || receipt.is_some() {
                    state.bytes = 0;
                    state.reported = state.handled;
                    return Some((std::mem::take(&mut state.frames), receipt));
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
    let (events_tx, mut events_rx) = mpsc::channel::<ConnEvent>(QUEUE_EVENTS);
    // Room for at least one frame of the largest size a transport lets through.
    let queue_bytes = options
        .queue_bytes
        .clamp(1, Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let queue = Queue {
        events: events_tx.clone(),
        bytes: Arc::new(Semaphore::new(queue_bytes)),
        max_frame: queue_bytes as u32,
    };
    let mut accept_tasks = Vec::new();
    for mut listener in listeners {
        let events = events_tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(conn) => {
                        if events.send(ConnEvent::Incoming(conn)).await.is_err() {
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
    let metrics = options.metrics.clone();
    let mut receipts: Vec<ConnId> = Vec::new();
    let mut counted = relay.counters();
    let mut next_id: ConnId = 1;
    let mut prune = clock.sleep_until(clock.now() + options.prune_interval);
    let mut batch = Batch::default();
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
                let Some(mut event) = event else { break };
                // Everything that has arrived (up to a turn's worth) is one batch: the store
                // commits it once (a group commit) before any reply of it leaves, and the frames
                // due to one connection from all these inputs go out together.
                relay.begin_batch();
                for handled in 1.. {
                    match event {
                        ConnEvent::Incoming(conn) => {
                            let id = next_id;
                            next_id += 1;
                            let addr: Option<SocketAddr> = conn.peer().addr;
                            let kind = conn.kind();
                            let outbox = Arc::new(Outbox::new(
                                options.outbox_budget,
                                conn.wants_receipts(),
                                kind,
                            ));
                            count_open(&metrics, kind, true);
                            conns.insert(id, outbox.clone());
                            tokio::spawn(serve_connection(
                                id,
                                conn,
                                queue.clone(),
                                outbox,
                                clock.clone(),
                                options.send_timeout,
                            ));
                            tracing::debug!(conn = id, ?addr, "connection opened");
                            relay.connected(id, addr, clock.unix_time());
                        }
                        ConnEvent::Frame(id, text, permit) => {
                            relay.received(id, &text, clock.unix_time());
                            drop(permit);
                            Metrics::inc(&metrics.frames_received_total);
                            receipts.push(id);
                        }
                        ConnEvent::Gone(id) => {
                            if let Some(outbox) = conns.remove(&id) {
                                count_open(&metrics, outbox.kind, false);
                            }
                            relay.disconnected_at(id, clock.unix_time());
                            tracing::debug!(conn = id, "connection closed");
                        }
                    }
                    if handled == TURN_EVENTS {
                        break;
                    }
                    match events_rx.try_recv() {
                        Ok(next) => event = next,
                        Err(_) => break,
                    }
                }
                relay.end_batch();
            }
        }
        batch.collect(&mut relay, &conns);
        batch.flush(&conns);
        // Connections that want to know (HTTP polling) learn which of their frames were
        // handled, after the replies those frames caused were queued.
        for id in receipts.drain(..) {
            if let Some(outbox) = conns.get(&id).filter(|o| o.receipts) {
                outbox.mark_handled();
            }
        }
        let now = relay.counters();
        if now != counted {
            let add = |c: &std::sync::atomic::AtomicU64, by: u64| {
                c.fetch_add(by, std::sync::atomic::Ordering::Relaxed);
            };
            add(&metrics.errors_total, now.errors_sent - counted.errors_sent);
            add(&metrics.exchanges_total, now.exchanges - counted.exchanges);
            counted = now;
        }
    }
    for task in accept_tasks {
        task.abort();
    }
    for outbox in conns.values() {
        outbox.close();
    }
}

/// Counts a connection of transport `kind` opening or closing.
fn count_open(m: &Metrics, kind: &str, open: bool) {
    let (gauge, total) = match kind {
        "websocket" => (&m.websocket_open, &m.websocket_total),
        "http" => (&m.http_sessions_open, &m.http_sessions_total),
        _ => return,
    };
    if open {
        Metrics::inc(gauge);
        Metrics::inc(total);
    } else {
        Metrics::dec(gauge);
    }
}

/// The frames of one turn, grouped per connection in the order they were produced.
#[derive(Default)]
struct Batch {
    /// Connections in the order they first got a frame this turn.
    order: Vec<ConnId>,
    frames: HashMap<ConnId, Vec<Arc<str>>>,
}

impl Batch {
    /// Takes the core's outputs. A close is carried out after the frames queued before it.
    fn collect<S: MailboxStore>(
        &mut self,
        relay: &mut Relay<S>,
        conns: &HashMap<ConnId, Arc<Outbox>>,
    ) {
        while let Some(out) = relay.poll_output() {
            match out {
                RelayOutput::Send { conn, frame } => {
                    let frames = self.frames.entry(conn).or_insert_with(|| {
                        self.order.push(conn);
                        Vec::new()
                    });
                    frames.push(frame);
                }
                RelayOutput::Close { conn } => {
                    if let Some(outbox) = conns.get(&conn) {
                        if let Some(frames) = self.frames.remove(&conn) {
                            outbox.push(frames);
                        }
                        outbox.close();
                    }
                }
            }
        }
    }

    /// Hands each connection its frames, all at once.
    fn flush(&mut self, conns: &HashMap<ConnId, Arc<Outbox>>) {
        for conn in self.order.drain(..) {
            let Some(frames) = self.frames.remove(&conn) else {
                continue;
            };
            if let Some(outbox) = conns.get(&conn) {
                if !outbox.push(frames) {
                    tracing::debug!(conn, "connection dropped: it does not read what it is sent");
                }
            }
        }
    }
}

async fn serve_connection(
    id: ConnId,
    mut conn: Box<dyn Connection>,
    queue: Queue,
    outbox: Arc<Outbox>,
    clock: Arc<dyn Clock>,
    send_timeout: Duration,
) {
    loop {
        // Biased for determinism; a pending write goes first.
        tokio::select! {
            biased;
            out = outbox.next() => match out {
                Some((frames, receipt)) => {
                    if !frames.is_empty() {
                        let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
                        let sent = tokio::select! {
                            biased;
                            sent = conn.send_shared(frames) => sent.is_ok(),
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
                    if let Some(count) = receipt {
                        conn.handled(count);
                    }
                }
                None => break,
            },
            frame = conn.recv() => match frame {
                Ok(Some(text)) => {
                    // Waits while the queue into the core is full: this connection's socket
                    // is not read meanwhile, so its client is slowed down, not the core.
                    if !queue.frame(id, text).await {
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
        let _ = queue.events.send(ConnEvent::Gone(id)).await;
        return;
    }
    outbox.close();
    let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
    tokio::select! {
        biased;
        _ = conn.close() => {}
        () = deadline => {}
    }
    let _ = queue.events.send(ConnEvent::Gone(id)).await;
}
