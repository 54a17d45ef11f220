//! The session's sub-states, one per machine, each a small serializable group of fields
//! (each machine's state enum is flattened into its object: `"nameplate": {"state": "known",
//! "nameplate": "5", ...}`).
//! Per-connection facts (`#[serde(skip)]`) start over on every connection, so a restored
//! session starts on a fresh one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::code::{Code, Nameplate};
use crate::core::error::{Error, Mood};
use crate::crypto::Key;

/// The connection to the relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Connection {
    pub link: Link,
    /// Whether any connection ever came up (the first failure is reported at once).
    pub ever_connected: bool,
    /// Reconnection attempts since the last healthy connection.
    pub attempts: u32,
    /// A `list` was asked for and not yet sent.
    pub list_wanted: bool,
    /// When the current connection came up.
    #[serde(skip)]
    pub up_since: Option<Duration>,
    /// What was sent on the current connection.
    #[serde(skip)]
    pub sent: Sent,
    /// Pull transports: when to poll next.
    #[serde(skip)]
    pub next_poll: Option<Duration>,
    /// Connections made so far by this process (numbers the replay checks).
    #[serde(skip)]
    pub serial: i64,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            link: Link::Connecting,
            ever_connected: false,
            attempts: 0,
            list_wanted: false,
            up_since: None,
            sent: Sent::default(),
            next_poll: None,
            serial: 0,
        }
    }
}

/// Connection state, as far as the session is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Link {
    /// Waiting for the driver to report the outcome of a connection attempt.
    Connecting,
    /// Connected; `pull` says whether polls are needed.
    Up { pull: bool },
    /// Down; reconnect at the given time.
    Down {
        #[serde(with = "crate::core::forms::millis")]
        retry_at: Duration,
    },
    /// Down for good: the session is over.
    Gone,
}

/// What was already sent on the current connection.
#[derive(Debug, Clone, Default)]
pub(super) struct Sent {
    pub allocate: bool,
    pub claim: bool,
    pub release: bool,
    pub open: bool,
    pub close: bool,
}

/// The nameplate and the code made of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct NameplateMachine {
    #[serde(flatten)]
    pub state: NameplateState,
    /// The whole code, once known (it holds secret words).
    pub code: Option<Code>,
    /// The other side showed up (or we are leaving): release the nameplate once claimed.
    pub release_wanted: bool,
}

/// Where the nameplate is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum NameplateState {
    /// No nameplate chosen yet.
    #[default]
    None,
    /// Waiting for the relay to allocate one; the code gets `words` words.
    Allocating { words: usize },
    /// A nameplate is known: allocated by the relay for us, or typed in.
    Known {
        nameplate: Nameplate,
        /// The relay allocated it for this side (and so holds it claimed already).
        allocated: bool,
        claim: Claim,
    },
}

/// How far the claim of a known nameplate got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Claim {
    /// Not asked for yet.
    Unclaimed,
    /// Asked for, no answer yet: the relay may hold it, so it must be released.
    Requested,
    /// The relay said `claimed`.
    Claimed,
    /// The relay said `released`.
    Released,
}

/// The mailbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct MailboxMachine {
    #[serde(flatten)]
    pub state: MailboxState,
    /// Our adds not yet echoed by the relay, in order: `(phase, hex body)`. Re-sent after
    /// every reconnect until echoed, always with the same body.
    pub unechoed: Vec<(String, String)>,
    /// Phases of ours that the relay has echoed: a re-opened mailbox must replay them, or it
    /// is not the one we left (it expired and the relay made a new, empty one).
    pub echoed: BTreeSet<String>,
    /// Per connection: the replay check under way after a re-open.
    #[serde(skip)]
    pub replay_check: Option<ReplayCheck>,
}

/// After re-opening a mailbox that held echoed messages of ours: a `ping` follows the `open`,
/// and the relay's replay is complete when its `pong` arrives.
#[derive(Debug, Clone)]
pub(super) struct ReplayCheck {
    pub ping: i64,
    pub seen: BTreeSet<String>,
}

/// Where the mailbox is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum MailboxState {
    /// Not known yet (no nameplate claimed).
    #[default]
    None,
    /// Known: opened on each connection while needed.
    Known { id: String },
    /// The relay confirmed our `close`.
    Closed { id: String },
}

impl MailboxState {
    pub fn id(&self) -> Option<&str> {
        match self {
            MailboxState::None => None,
            MailboxState::Known { id } | MailboxState::Closed { id } => Some(id),
        }
    }
}

/// The key exchange.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct KeyMachine {
    /// Secret from which our SPAKE2 scalar is derived, together with the code: the same code
    /// always gives the same `pake` message (so re-sending it after a restore is harmless),
    /// and a different code gives an unrelated scalar.
    #[serde(with = "crate::core::forms::hex32")]
    pub pake_secret: [u8; 32],
    #[serde(flatten)]
    pub state: KeyState,
    /// Messages of the other side that arrived before they could be processed, by phase.
    pub held: BTreeMap<String, PeerMessage>,
    /// The shared key, rebuilt from the state after a restore.
    #[serde(skip)]
    pub key: Option<Key>,
}

/// How far the key exchange got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum KeyState {
    /// Our `pake` is not made yet (no code).
    Waiting,
    /// Our `pake` is added; the other side's is awaited.
    PakeSent,
    /// Both `pake`s known: we have a key, not yet confirmed by a decryption.
    Derived {
        peer_side: String,
        #[serde(with = "crate::core::forms::hex")]
        peer_pake: Vec<u8>,
    },
    /// A message of the other side decrypted: the key is confirmed.
    Confirmed {
        peer_side: String,
        #[serde(with = "crate::core::forms::hex")]
        peer_pake: Vec<u8>,
    },
}

impl KeyState {
    pub fn peer(&self) -> Option<(&str, &[u8])> {
        match self {
            KeyState::Derived {
                peer_side,
                peer_pake,
            }
            | KeyState::Confirmed {
                peer_side,
                peer_pake,
            } => Some((peer_side, peer_pake)),
            _ => None,
        }
    }
}

/// A message of the other side, kept until it can be processed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PeerMessage {
    pub side: String,
    pub phase: String,
    pub body: String,
}

/// Numbered application phases, both ways.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Phases {
    /// Messages the application sent before the key was confirmed (not yet encrypted).
    #[serde(with = "crate::core::forms::hex_deque")]
    pub outbox: VecDeque<Vec<u8>>,
    /// Number of our next phase.
    pub next_out: u64,
    /// Phases of the other side already processed.
    pub processed: BTreeSet<String>,
    /// Decrypted phases waiting for an earlier one.
    #[serde(with = "crate::core::forms::hex_map")]
    pub inbox: BTreeMap<u64, Vec<u8>>,
    /// Number of the next phase to hand over.
    pub next_in: u64,
    /// Handed to the application and not yet marked read ([`Input::DataRead`](super::io::Input::DataRead)).
    #[serde(with = "crate::core::forms::hex_deque")]
    pub unread: VecDeque<Vec<u8>>,
    /// The other side's `app_versions`, once received.
    pub peer_versions: Option<Value>,
}

/// The session's end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct EndingMachine {
    #[serde(flatten)]
    pub state: Ending,
    /// The hard timeout, in session time.
    #[serde(with = "crate::core::forms::millis_opt")]
    pub timeout_at: Option<Duration>,
}

/// Whether and how the session ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum Ending {
    /// The exchange goes on.
    Running,
    /// Closing politely: release the nameplate, close the mailbox, until `deadline`.
    Closing {
        mood: Mood,
        outcome: Result<(), Error>,
        #[serde(with = "crate::core::forms::millis")]
        deadline: Duration,
    },
    /// Over: [`Event::Closed`](super::Event::Closed) was emitted.
    Finished { outcome: Result<(), Error> },
}
