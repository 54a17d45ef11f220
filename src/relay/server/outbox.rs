//! The frames waiting to be written to one connection, with their byte budget.

use std::sync::Arc;

/// Frames waiting to be written to one connection. Lighter than a channel per connection
/// (a tokio channel allocates a block of 32 slots up front), which matters with many idle
/// connections.
///
/// The frames waiting are bounded by a byte budget: a connection whose outbox would go over it
/// (a client that stopped reading) is closed, and what was queued for it is dropped.
pub(super) struct Outbox {
    state: std::sync::Mutex<OutboxState>,
    ready: tokio::sync::Notify,
    budget: usize,
    /// The connection wants to know when its frames were handled (HTTP polling).
    pub(super) receipts: bool,
    /// For metrics: the connection's transport.
    pub(super) kind: &'static str,
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
    pub(super) fn new(budget: usize, receipts: bool, kind: &'static str) -> Outbox {
        Outbox {
            state: Default::default(),
            ready: Default::default(),
            budget,
            receipts,
            kind,
        }
    }

    /// The core handled one more frame of this connection (and queued what it caused).
    pub(super) fn mark_handled(&self) {
        self.lock().handled += 1;
        self.ready.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues frames; `false` if the connection is closed or just went over its budget (then
    /// it is closed and the frames are dropped).
    pub(super) fn push(&self, frames: Vec<Arc<str>>) -> bool {
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

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Completes once the connection went over its budget.
    pub(super) async fn overflowed(&self) {
        loop {
            if self.lock().overflowed {
                return;
            }
            self.ready.notified().await;
        }
    }

    pub(super) fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Waits for frames or a new count of frames handled (or the close); returns `None` once
    /// closed and drained.
    pub(super) async fn next(&self) -> Option<(Vec<Arc<str>>, Option<u64>)> {
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
