//! The frames of one turn of the core, grouped per connection so that each gets them in one
//! write, and the closes the core asked for, carried out after the frames before them.

use std::collections::HashMap;
use std::sync::Arc;

use super::outbox::Outbox;
use crate::relay::{ConnId, MailboxStore, Relay, RelayOutput};

/// The frames of one turn, grouped per connection in the order they were produced.
#[derive(Default)]
pub(super) struct Batch {
    /// Connections in the order they first got a frame this turn.
    order: Vec<ConnId>,
    frames: HashMap<ConnId, Vec<Arc<str>>>,
}

impl Batch {
    /// Takes the core's outputs. A close is carried out after the frames queued before it.
    pub(super) fn collect<S: MailboxStore>(
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
    pub(super) fn flush(&mut self, conns: &HashMap<ConnId, Arc<Outbox>>) {
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
