//! How a wormhole session can fail.

use serde::{Deserialize, Serialize};

/// Why a wormhole session ended without success, or why an input was refused.
///
/// None of the messages contain secrets (code words, keys or message contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key confirmation failed: the other side used a different code. Either one of you
    /// mistyped it, or someone tried to guess it. Mood `scary`.
    #[error(
        "key confirmation failed: either you or your correspondent typed the code wrong, \
         or someone tried to guess it; check the code and try again"
    )]
    WrongCode,
    /// A third side tried to use the same nameplate; the relay refused it.
    #[error("the relay says this code is crowded: more than two parties tried to use it; start again with a new code")]
    Crowded,
    /// The relay reported an error.
    #[error("the relay reported an error: {0}")]
    Relay(String),
    /// The relay refuses service (its `welcome` carried an error).
    #[error("the relay refuses service: {0}")]
    Unwelcome(String),
    /// The hard timeout passed before the exchange finished.
    #[error("timed out waiting for the other side")]
    Timeout,
    /// The relay could not be reached at all: its URL and why.
    #[error("cannot reach the relay at {0}")]
    RelayUnreachable(String),
    /// The other side sent something that breaks the protocol.
    #[error("protocol error from the other side: {0}")]
    Protocol(String),
    /// The session was already closed.
    #[error("the wormhole is closed")]
    Closed,
    /// A message was larger than the session accepts.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Size of the refused message.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// An input that does not fit the session's state (e.g. a second code).
    #[error("invalid use: {0}")]
    InvalidInput(String),
    /// A resumed session found that the relay no longer has its mailbox (it was pruned while
    /// this side was away): the messages exchanged so far are gone, so the exchange cannot
    /// finish. Start again with a new code.
    #[error(
        "the relay no longer has this exchange's mailbox (it expired while this side was away); \
         start again with a new code"
    )]
    MailboxExpired,
    /// A saved state could not be restored (malformed, from an incompatible release, or
    /// unreadable storage). The message never contains the state itself.
    #[error("cannot resume the saved wormhole: {0}")]
    BadState(String),
}

impl Error {
    /// The mood this failure reports to the relay when closing.
    pub fn mood(&self) -> Mood {
        match self {
            Error::WrongCode | Error::Protocol(_) => Mood::Scary,
            Error::Timeout => Mood::Lonely,
            Error::Unwelcome(_) => Mood::Unwelcome,
            _ => Mood::Errory,
        }
    }
}

/// How a side felt when it closed its mailbox, as reported to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mood {
    /// The exchange worked.
    Happy,
    /// The other side never showed up.
    Lonely,
    /// Key confirmation failed.
    Scary,
    /// Some other error.
    Errory,
    /// The relay refused service.
    Unwelcome,
}

impl Mood {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Mood::Happy => "happy",
            Mood::Lonely => "lonely",
            Mood::Scary => "scary",
            Mood::Errory => "errory",
            Mood::Unwelcome => "unwelcome",
        }
    }
}
