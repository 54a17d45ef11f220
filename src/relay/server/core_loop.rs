//! The core task: owns the [`Relay`] core and runs it one batch per turn (accepting
//! connections, handling their events and the shared store's changes, pruning), then hands
//! each connection its frames and updates the metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use wormhole_transports::Listener;

use super::batch::Batch;
use super::budget::{Budget, Inbound};
use super::connection::{serve_connection, ConnEvent, Queue};
use super::outbox::Outbox;
use super::ServerOptions;
use crate::clock::Clock;
use crate::relay::metrics::Metrics;
use crate::relay::{ConnId, MailboxChange, MailboxStore, Relay};

/// Events (frames, new and closed connections) that may wait for the core.
const QUEUE_EVENTS: usize = 4096;

/// Inputs the core handles in one turn before it writes what they produced, so that frames
/// due to one connection from several inputs go out in one write.
const TURN_EVENTS: usize = 64;

/// The next change of a shared store's feed; never, without a feed.
async fn next_change(
    changes: &mut Option<mpsc::UnboundedReceiver<MailboxChange>>,
) -> Option<MailboxChange> {
    match changes {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn run<S: MailboxStore>(
    mut relay: Relay<S>,
    listeners: Vec<Box<dyn Listener>>,
    mut changes: Option<mpsc::UnboundedReceiver<MailboxChange>>,
    listened: Option<crate::relay::shared::ListenedMailboxes>,
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
