//! Wire types: every message between a client and the rendezvous relay.
//!
//! Each message is one JSON object in one WebSocket **text** frame, with a `"type"` key
//! (protocol.md §1–§4). [`ClientFrame`] carries a [`ClientMessage`] from client to relay,
//! [`ServerFrame`] a [`ServerMessage`] from relay to client. Both are tolerant: unknown fields
//! are ignored, and an unknown server message type parses as [`ServerMessage::Unknown`] so a
//! newer relay does not break an older client.
//!
//! Bodies stay hex strings here (`add.body`, `message.body`): the relay stores them verbatim,
//! and only the client core decodes them.
//!
//! ```
//! use wormhole::wire::{ClientFrame, ClientMessage};
//! let frame = ClientFrame::new(ClientMessage::Claim { nameplate: "4".into() });
//! let json = frame.to_json();
//! assert_eq!(ClientFrame::parse(&json).unwrap(), frame);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A client → relay frame: a command plus the optional `id` the Python client adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// The command.
    #[serde(flatten)]
    pub message: ClientMessage,
    /// Optional request id (4 hex characters in the Python client), copied into the `ack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ClientFrame {
    /// A frame without an `id`.
    pub fn new(message: ClientMessage) -> ClientFrame {
        ClientFrame { message, id: None }
    }

    /// Encodes the frame as one line of JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Parses a frame. Fails if the JSON is malformed, `type` is unknown or a required field is
    /// missing; the relay core checks fields itself to give the Python server's exact errors.
    pub fn parse(text: &str) -> Result<ClientFrame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Commands a client sends to the relay (protocol.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    /// First command on a connection: scopes it to an app id and a side.
    Bind {
        /// Application id, e.g. `lothar.com/wormhole/text-or-file-xfer`.
        appid: String,
        /// This client's side: 10 lower-case hex characters.
        side: String,
        /// `["rust", VERSION]`; optional, only logged by the relay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_version: Option<Value>,
    },
    /// Asks for the nameplates in use for this app id.
    List,
    /// Allocates (and claims) a fresh nameplate.
    Allocate,
    /// Claims a nameplate, learning its mailbox.
    Claim {
        /// Decimal digits.
        nameplate: String,
    },
    /// Releases the claimed nameplate.
    Release {
        /// The nameplate, if given (the Python client always gives it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nameplate: Option<String>,
    },
    /// Subscribes to a mailbox; stored messages are replayed.
    Open {
        /// Mailbox id.
        mailbox: String,
    },
    /// Adds a message to the open mailbox.
    Add {
        /// Phase: `pake`, `version`, `0`, `1`, …
        phase: String,
        /// Hex-encoded body.
        body: String,
    },
    /// Closes the mailbox for this side.
    Close {
        /// Mailbox id (the Python client always gives it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mailbox: Option<String>,
        /// `happy`, `lonely`, `scary`, `errory`, …
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mood: Option<String>,
    },
    /// Liveness check, answered with `pong`.
    Ping {
        /// Echoed back.
        ping: i64,
    },
    /// A hashcash permission stamp, sent before `bind` to relays that ask for one in their
    /// welcome (`permission-required`). Specified by magic-wormhole-protocols and sent by the
    /// Rust magic-wormhole client; the Python relay 0.8 (and ours) answers `unknown type`.
    SubmitPermission {
        /// `hashcash`.
        method: String,
        /// The stamp, e.g. `1:6:210723:resource-string::<rand>:<counter>`.
        stamp: String,
    },
}

/// A relay → client frame: a message plus the relay's `server_tx` timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFrame {
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
    /// Seconds since the Unix epoch when the relay sent the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tx: Option<f64>,
}

impl ServerFrame {
    /// Encodes the frame as one line of JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Parses a frame from the relay.
    pub fn parse(text: &str) -> Result<ServerFrame, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// Messages the relay sends to a client (protocol.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    /// First frame on every connection.
    Welcome {
        /// Server information.
        welcome: Welcome,
    },
    /// Sent before processing each command that has a `type`.
    Ack {
        /// The command's `id`, or null.
        id: Option<String>,
    },
    /// Reply to `list`.
    Nameplates {
        /// Nameplates in use, sorted as strings.
        nameplates: Vec<NameplateEntry>,
    },
    /// Reply to `allocate`.
    Allocated {
        /// The allocated nameplate.
        nameplate: String,
    },
    /// Reply to `claim`.
    Claimed {
        /// The nameplate's mailbox id.
        mailbox: String,
    },
    /// Reply to `release`.
    Released,
    /// A message stored in the open mailbox, sent to every subscriber.
    Message {
        /// The side that added it.
        side: String,
        /// Its phase.
        phase: String,
        /// Hex body, as added.
        body: String,
        /// When the relay received the `add`.
        #[serde(default)]
        server_rx: Option<f64>,
        /// The `id` of the `add`, echoed as the client sent it: any JSON value (a string in
        /// the Python client, a number in some others), or null.
        #[serde(default)]
        id: Value,
    },
    /// Reply to `close`.
    Closed,
    /// Reply to `ping`.
    Pong {
        /// The number from the `ping`.
        pong: i64,
    },
    /// A refused command.
    Error {
        /// What went wrong, e.g. `crowded`.
        error: String,
        /// The command as received.
        #[serde(default)]
        orig: Value,
    },
    /// Any message type this version does not know; ignored by clients.
    #[serde(other)]
    Unknown,
}

/// One entry of a `nameplates` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameplateEntry {
    /// The nameplate.
    pub id: String,
}

/// The `welcome` object (protocol.md §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Message of the day, shown to users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motd: Option<String>,
    /// The CLI version the relay advertises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cli_version: Option<String>,
    /// If present, the relay refuses service; clients stop with this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The client's address as the relay sees it: `{"port": N, "ipv4"|"ipv6": "..."}`.
    #[serde(
        default,
        rename = "your-address",
        skip_serializing_if = "Option::is_none"
    )]
    pub your_address: Option<Value>,
    /// Permission methods (hashcash), which the Python 0.8 relay never sends.
    #[serde(
        default,
        rename = "permission-required",
        skip_serializing_if = "Option::is_none"
    )]
    pub permission_required: Option<Value>,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these types cannot fail: every field is a string, number, bool, list or
    // object with string keys.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests;
