//! What goes in and out of a [`Session`](super::Session): its settings, its inputs, its
//! outputs and the application's events. The `Debug` forms never show plaintext, code words
//! or frame contents.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::code::{Code, Nameplate};
use crate::core::error::Error;
use crate::core::schedule::{Schedule, DEFAULT_TIMEOUT};
use crate::crypto::Verifier;
use crate::wire::Welcome;

/// The default largest application message: 256 KiB, well under the relay's 1 MiB frame limit
/// once hex-encoded.
pub const DEFAULT_MAX_MESSAGE: usize = 256 * 1024;

/// Settings of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Application id: codes, nameplates and keys are scoped to it.
    pub appid: String,
    /// Sent to the other side inside the encrypted `version` message.
    pub app_versions: Value,
    /// Polling (pull transports) and reconnection (push transports) schedule.
    pub schedule: Schedule,
    /// Hard timeout from the start of the session; `None` waits forever.
    #[serde(with = "crate::core::forms::millis_opt")]
    pub timeout: Option<Duration>,
    /// Largest application message accepted by [`Input::Send`].
    pub max_message: usize,
    /// The relay this session talks to. The core never uses it; it is kept in the serialized
    /// state so that a restored program knows where to reconnect.
    #[serde(default)]
    pub relay_url: Option<String>,
    /// Deliberate faults, for the simulator's self-tests (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    #[serde(skip)]
    pub faults: crate::core::Faults,
}

impl Config {
    /// A configuration with the defaults for `appid`.
    pub fn new(appid: impl Into<String>) -> Config {
        Config {
            appid: appid.into(),
            app_versions: Value::Object(Default::default()),
            schedule: Schedule::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            max_message: DEFAULT_MAX_MESSAGE,
            relay_url: None,
            #[cfg(feature = "fault-injection")]
            faults: crate::core::Faults::default(),
        }
    }
}

/// What the application or the driver tells the session.
#[derive(Clone)]
pub enum Input {
    /// Ask the relay for a nameplate and make a code with this many words. A no-op while an
    /// allocation is already under way (e.g. in a restored session).
    Allocate {
        /// Number of words (the default elsewhere is 2).
        words: usize,
    },
    /// Use this code (the receiving side).
    SetCode(Code),
    /// Claim a nameplate before the rest of the code is known (interactive entry).
    ClaimNameplate(Nameplate),
    /// Ask the relay for the nameplates in use.
    List,
    /// Send one application message.
    Send(Vec<u8>),
    /// The application has read the oldest [`Event::Data`] not yet marked read. Until then
    /// the message stays in the serialized state and a restored session hands it over again.
    DataRead,
    /// Close the session (mood `happy` if the key was confirmed, `lonely` otherwise).
    Close,
    /// The driver connected to the relay.
    Connected {
        /// `true` for pull transports, which need [`Output::Poll`].
        pull: bool,
    },
    /// The driver could not connect.
    ConnectFailed {
        /// Why, for the error message (no secrets).
        reason: String,
    },
    /// The connection dropped.
    Disconnected,
    /// A text frame from the relay.
    Frame(String),
    /// Time passed (the driver woke up at [`Session::poll_timeout`](super::Session::poll_timeout)).
    Tick,
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Allocate { words } => f.debug_struct("Allocate").field("words", words).finish(),
            Input::SetCode(code) => f.debug_tuple("SetCode").field(code).finish(),
            Input::ClaimNameplate(n) => f.debug_tuple("ClaimNameplate").field(n).finish(),
            Input::List => f.write_str("List"),
            Input::Send(data) => write!(f, "Send({} bytes)", data.len()),
            Input::DataRead => f.write_str("DataRead"),
            Input::Close => f.write_str("Close"),
            Input::Connected { pull } => f.debug_struct("Connected").field("pull", pull).finish(),
            Input::ConnectFailed { reason } => f
                .debug_struct("ConnectFailed")
                .field("reason", reason)
                .finish(),
            Input::Disconnected => f.write_str("Disconnected"),
            Input::Frame(text) => write!(f, "Frame({} bytes)", text.len()),
            Input::Tick => f.write_str("Tick"),
        }
    }
}

/// What the session asks of the driver and tells the application.
#[derive(Clone, PartialEq)]
pub enum Output {
    /// Connect to the relay, then report [`Input::Connected`] or [`Input::ConnectFailed`].
    Connect,
    /// Send this text frame on the current connection.
    Transmit(String),
    /// Pull transports: fetch waiting frames now.
    Poll,
    /// Drop the connection: the session is over.
    Disconnect,
    /// Something for the application.
    Event(Event),
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Connect => f.write_str("Connect"),
            Output::Transmit(text) => write!(f, "Transmit({} bytes)", text.len()),
            Output::Poll => f.write_str("Poll"),
            Output::Disconnect => f.write_str("Disconnect"),
            Output::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

/// Application events.
#[derive(Clone, PartialEq)]
pub enum Event {
    /// The relay's welcome (message of the day etc.).
    Welcome(Welcome),
    /// The code: allocated by [`Input::Allocate`] (show it to the user), or, in a restored
    /// session, the code it was using.
    Code(Code),
    /// Nameplates in use, after [`Input::List`].
    Nameplates(Vec<Nameplate>),
    /// The nameplate was released: the code can no longer be used by anyone else.
    CodeConsumed,
    /// The key is confirmed (a message of the other side decrypted).
    Key {
        /// Both sides derive the same verifier; users may compare it.
        verifier: Verifier,
    },
    /// The `app_versions` of the other side.
    PeerVersions(Value),
    /// An application message from the other side, in order. Acknowledge it with
    /// [`Input::DataRead`] once the application has it.
    Data(Vec<u8>),
    /// The session is over; no more events follow.
    Closed(Result<(), Error>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Welcome(w) => f.debug_tuple("Welcome").field(w).finish(),
            Event::Code(code) => f.debug_tuple("Code").field(code).finish(),
            Event::Nameplates(n) => f.debug_tuple("Nameplates").field(n).finish(),
            Event::CodeConsumed => f.write_str("CodeConsumed"),
            Event::Key { .. } => f.write_str("Key { .. }"),
            Event::PeerVersions(v) => f.debug_tuple("PeerVersions").field(v).finish(),
            Event::Data(data) => write!(f, "Data({} bytes)", data.len()),
            Event::Closed(outcome) => f.debug_tuple("Closed").field(outcome).finish(),
        }
    }
}
