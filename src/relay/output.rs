//! Frames out: every reply and broadcast is built here and queued as a [`RelayOutput`].

use std::sync::Arc;

use serde_json::Value;

use super::store::{MailboxStore, StoredMessage};
use super::{ConnId, Relay, RelayOutput};
use crate::wire::{ServerFrame, ServerMessage};

impl<S: MailboxStore> Relay<S> {
    pub(super) fn send(&mut self, conn: ConnId, message: ServerMessage, now: f64) {
        let frame = ServerFrame {
            message,
            server_tx: Some(now),
        };
        self.outputs.push_back(RelayOutput::Send {
            conn,
            frame: frame.to_json().into(),
        });
    }

    /// Sends a frame whose `id` is copied verbatim from the client (any JSON value; the wire
    /// types only model string ids).
    pub(super) fn send_with_id(
        &mut self,
        conn: ConnId,
        message: ServerMessage,
        id: &Value,
        now: f64,
    ) {
        let frame = frame_with_id(message, id, now);
        self.outputs.push_back(RelayOutput::Send { conn, frame });
    }

    pub(super) fn send_message(&mut self, conn: ConnId, stored: &StoredMessage, now: f64) {
        let frame = message_frame(stored, now);
        self.outputs.push_back(RelayOutput::Send { conn, frame });
    }

    /// Sends a new message to every listener of its mailbox: serialized once, shared by all.
    pub(super) fn broadcast_message(
        &mut self,
        appid: &str,
        mailbox: &str,
        stored: &StoredMessage,
        now: f64,
    ) {
        let Some(listeners) = self
            .subscribers
            .get(&(appid.to_owned(), mailbox.to_owned()))
        else {
            return;
        };
        let frame = message_frame(stored, now);
        for &conn in listeners {
            self.outputs.push_back(RelayOutput::Send {
                conn,
                frame: Arc::clone(&frame),
            });
        }
    }

    pub(super) fn send_error(&mut self, conn: ConnId, error: &str, orig: Value, now: f64) {
        tracing::debug!(conn, error, "relay: error");
        self.counters.errors_sent += 1;
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

/// A `message` frame for a stored message.
fn message_frame(stored: &StoredMessage, now: f64) -> Arc<str> {
    let message = ServerMessage::Message {
        side: stored.side.clone(),
        phase: stored.phase.clone(),
        body: stored.body.clone(),
        server_rx: Some(stored.server_rx),
        id: Value::Null,
    };
    let id = stored.msg_id.clone().unwrap_or(Value::Null);
    frame_with_id(message, &id, now)
}

/// A frame whose `id` is copied verbatim from the client.
fn frame_with_id(message: ServerMessage, id: &Value, now: f64) -> Arc<str> {
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
    text.into()
}
