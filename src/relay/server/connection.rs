//! The connection tasks: each forwards its connection's frames into the bounded queue to the
//! core (within its inbound budget) and writes the frames the core queued for it back.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use wormhole_transports::{Connection, TransportError};

use super::budget::Budget;
use super::outbox::Outbox;
use crate::clock::Clock;
use crate::relay::ConnId;

/// What connection tasks tell the core task.
pub(super) enum ConnEvent {
    Incoming(Box<dyn Connection>),
    /// A frame, holding its share of the queue's byte budget until the core has handled it.
    Frame(ConnId, String, OwnedSemaphorePermit),
    /// A frame over the core's size limit, dropped at once: only its length travels.
    TooLarge(ConnId, usize),
    Gone(ConnId),
}

/// The sending side of the bounded queue into the core.
#[derive(Clone)]
pub(super) struct Queue {
    pub(super) events: mpsc::Sender<ConnEvent>,
    pub(super) bytes: Arc<Semaphore>,
    pub(super) max_frame: u32,
    /// The core's frame size limit.
    pub(super) frame_limit: usize,
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

pub(super) async fn serve_connection(
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
    use super::super::budget::Inbound;
    use super::*;
    use crate::clock::TokioClock;

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
