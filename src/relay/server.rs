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
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use wormhole_transports::memory::MemoryListener;
use wormhole_transports::{Connection, Listener, TransportError};

use super::metrics::Metrics;
use super::shared::SharedStore;
use super::{ConnId, MailboxChange, MailboxStore, MemoryStore, Relay, RelayConfig, RelayOutput};
use crate::clock::{Clock, TokioClock};
use budget::{Budget, Inbound};
use outbox::Outbox;

mod budget;
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

/// What connection tasks tell the core task.
enum ConnEvent {
    Incoming(Box<dyn Connection>),
    /// A frame, holding its share of the queue's byte budget until the core has handled it.
    Frame(ConnId, String, OwnedSemaphorePermit),
    /// A frame over the core's size limit, dropped at once: only its length travels.
    TooLarge(ConnId, usize),
    Gone(ConnId),
}

/// The sending side of the bounded queue into the core.
#[derive(Clone)]
struct Queue {
    events: mpsc::Sender<ConnEvent>,
    bytes: Arc<Semaphore>,
    max_frame: u32,
    /// The core's frame size limit.
    frame_limit: usize,
}

impl Queue {
    /// Queues a frame once there is room for its bytes. `false` once the core is gone.
    async fn frame(&self, id: ConnId, text: String) -> bool {
        if text.len() > self.frame_limit {
            let event = ConnEvent::TooLarge(id, text.len());
            drop(text);
            return self.events.send(event).await.is_ok();
        }
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

/// The next change of a shared store's feed; never, without a feed.
async fn next_change(
    changes: &mut Option<mpsc::UnboundedReceiver<MailboxChange>>,
) -> Option<MailboxChange> {
    match changes {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

async fn run<S: MailboxStore>(
    mut relay: Relay<S>,
    listeners: Vec<Box<dyn Listener>>,
    mut changes: Option<mpsc::UnboundedReceiver<MailboxChange>>,
    listened: Option<super::shared::ListenedMailboxes>,
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
        frame_limit: options.config.max_frame_bytes,
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
    // The shared inbound budgets of source addresses (see `SOURCE_BYTES_PER_SEC`).
    let mut sources: HashMap<IpAddr, Arc<std::sync::Mutex<Inbound>>> = HashMap::new();
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
                // Forget sources with no connection whose budget is whole again.
                let now = clock.now();
                sources.retain(|_, bucket| {
                    Arc::strong_count(bucket) > 1
                        || !bucket.lock().unwrap_or_else(|e| e.into_inner()).is_full(now)
                });
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
                            let source = options.config.limits.source_key(addr).map(|ip| {
                                let bucket = sources.entry(ip).or_insert_with(|| {
                                    Arc::new(std::sync::Mutex::new(Inbound::new(
                                        options.source_bytes_per_sec,
                                        options.config.max_frame_bytes.saturating_mul(4),
                                        clock.now(),
                                    )))
                                });
                                Arc::clone(bucket)
                            });
                            let inbound = Budget {
                                own: Inbound::new(
                                    options.inbound_bytes_per_sec,
                                    options.config.max_frame_bytes,
                                    clock.now(),
                                ),
                                source,
                            };
                            tokio::spawn(serve_connection(
                                id,
                                conn,
                                queue.clone(),
                                outbox,
                                clock.clone(),
                                options.send_timeout,
                                inbound,
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
                        ConnEvent::TooLarge(id, len) => {
                            relay.received_too_large(id, len, clock.unix_time());
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
            // Messages other relay processes added to mailboxes listened to here (a shared
            // store), after this process's own events so that a burst of them cannot starve
            // the clients.
            change = next_change(&mut changes) => match change {
                Some(change) => {
                    relay.begin_batch();
                    relay.shared_change(change, clock.unix_time());
                    while let Some(Ok(more)) = changes.as_mut().map(|c| c.try_recv()) {
                        relay.shared_change(more, clock.unix_time());
                    }
                    relay.end_batch();
                }
                None => {
                    tracing::warn!("the shared store's change feed ended");
                    changes = None;
                }
            },
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
        if let Some(listened) = &listened {
            let now = relay.listened_mailboxes();
            let mut published = listened.lock().unwrap_or_else(|e| e.into_inner());
            if *published != now {
                *published = now;
            }
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

/// Writes frames to a connection within `send_timeout`; `false` if that failed, timed out or
/// the connection went over its outbox budget meanwhile.
async fn write_frames(
    id: ConnId,
    conn: &mut Box<dyn Connection>,
    frames: Vec<Arc<str>>,
    outbox: &Outbox,
    clock: &Arc<dyn Clock>,
    send_timeout: Duration,
) -> bool {
    let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
    tokio::select! {
        biased;
        sent = conn.send_shared(frames) => sent.is_ok(),
        () = outbox.overflowed() => false,
        () = deadline => {
            tracing::debug!(conn = id, "connection dropped: a write timed out");
            false
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
    mut inbound: Budget,
) {
    // While the inbound budget is overdrawn: the sleep until it is not (no timer otherwise).
    let mut pause: Option<crate::clock::Sleep> = None;
    loop {
        if pause.is_none() {
            pause = inbound.paused_until().map(|until| clock.sleep_until(until));
        }
        // Biased for determinism; a pending write goes first.
        tokio::select! {
            biased;
            out = outbox.next() => match out {
                Some((frames, receipt)) => {
                    if !frames.is_empty() {
                        // Boxed, as the frame below: only while a write is under way.
                        let write =
                            write_frames(id, &mut conn, frames, &outbox, &clock, send_timeout);
                        if !Box::pin(write).await {
                            break;
                        }
                    }
                    if let Some(count) = receipt {
                        conn.handled(count);
                    }
                }
                None => break,
            },
            () = async { if let Some(p) = pause.as_mut() { p.await } }, if pause.is_some() => {
                pause = None;
                inbound.refill(clock.now());
            }
            frame = conn.recv(), if pause.is_none() => match frame {
                Ok(Some(text)) => {
                    inbound.spend(text.len(), clock.now());
                    // Waits while the queue into the core is full: this connection's socket
                    // is not read meanwhile, so its client is slowed down, not the core.
                    // Boxed: this future is large and only lives while a frame waits, so an
                    // idle connection's task does not carry its room.
                    if !Box::pin(queue.frame(id, text)).await {
                        break;
                    }
                }
                Ok(None) => break,
                // Dropped by the transport; the connection goes on.
                Err(TransportError::Oversized { size, .. }) => {
                    inbound.spend(size, clock.now());
                    let event = ConnEvent::TooLarge(id, size);
                    if Box::pin(queue.events.send(event)).await.is_err() {
                        break;
                    }
                }
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
        let _ = Box::pin(queue.events.send(ConnEvent::Gone(id))).await;
        return;
    }
    outbox.close();
    let deadline = clock.sleep_until(clock.now().saturating_add(send_timeout));
    tokio::select! {
        biased;
        _ = conn.close() => {}
        () = deadline => {}
    }
    let _ = Box::pin(queue.events.send(ConnEvent::Gone(id))).await;
}

#[cfg(test)]
mod size_probe {
    use super::*;

    /// Every connection's task is allocated at this size for as long as the connection
    /// lives, so it is part of the memory per idle connection (`bench --idle`): the large
    /// futures (queueing a frame, writing, the final close) are boxed while they run.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let (a, _b) = wormhole_transports::memory::MemoryConnection::pair();
        let (tx, _rx) = mpsc::channel(1);
        let queue = Queue {
            events: tx,
            bytes: Arc::new(Semaphore::new(10)),
            max_frame: 10,
            frame_limit: 10,
        };
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
        let task = serve_connection(
            1,
            Box::new(a),
            queue,
            Arc::new(Outbox::new(10, false, "test")),
            clock,
            Duration::from_secs(1),
            Budget {
                own: Inbound::new(1, 1, Duration::ZERO),
                source: None,
            },
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 576, "a connection's task takes {size} bytes");
    }
}
