//! The faults a scenario draws: network partitions and outages, host crashes, gaps in the
//! shared store's change feeds.

use std::fmt;
use std::time::Duration;

/// Which link a network fault cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// alice ↔ relay.
    Alice,
    /// bob ↔ relay.
    Bob,
    /// both clients ↔ relay.
    Both,
}

impl Target {
    /// The client hosts concerned.
    pub fn hosts(self) -> &'static [&'static str] {
        match self {
            Target::Alice => &["alice"],
            Target::Bob => &["bob"],
            Target::Both => &["alice", "bob"],
        }
    }
}

/// A fault, timed from the moment the clients concerned were first connected (so a client's
/// very first connection, whose failure is reported at once by design, is never hit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NetFault {
    /// Segments are dropped both ways (the connection stalls until the keepalive notices).
    Partition {
        /// Which link.
        target: Target,
        /// Start, after the anchor.
        at: Duration,
        /// How long.
        lasting: Duration,
    },
    /// Segments are held, then delivered late (a short outage that TCP rides out).
    Hold {
        /// Which link.
        target: Target,
        /// Start, after the anchor.
        at: Duration,
        /// How long.
        lasting: Duration,
    },
    /// bob's host crashes and restarts (resuming from its journal).
    CrashBob {
        /// Crash, after bob first connected.
        at: Duration,
        /// Down for.
        lasting: Duration,
    },
    /// The relay host crashes and restarts with its store.
    CrashRelay {
        /// Crash, after the anchor.
        at: Duration,
        /// Down for.
        lasting: Duration,
    },
    /// Of several relay hosts, the one a client is on at the time crashes (and restarts, or
    /// stays down for the rest of the run if `lasting` is `None`).
    CrashHostOf {
        /// Whose relay host (alice or bob).
        target: Target,
        /// Crash, after both clients first connected.
        at: Duration,
        /// Down for; `None`: for good.
        lasting: Option<Duration>,
    },
    /// Of several relay hosts, the one a client is on at the time is partitioned from it.
    PartitionHostOf {
        /// Whose link (alice or bob).
        target: Target,
        /// Start, after the client first connected.
        at: Duration,
        /// How long.
        lasting: Duration,
    },
    /// Of several relay hosts, the link to the one a client is on at the time holds its
    /// segments, then delivers them late (the client may have moved to another host by then).
    HoldHostOf {
        /// Whose link (alice or bob).
        target: Target,
        /// Start, after the client first connected.
        at: Duration,
        /// How long.
        lasting: Duration,
    },
    /// Every change feed of the shared store reports a gap (`MailboxChange::Resync`).
    Resync {
        /// When, after both clients first connected.
        at: Duration,
    },
}

impl fmt::Display for NetFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetFault::Partition {
                target,
                at,
                lasting,
            } => {
                write!(f, "partition {target:?} at +{at:.3?} for {lasting:.3?}")
            }
            NetFault::Hold {
                target,
                at,
                lasting,
            } => {
                write!(f, "hold {target:?} at +{at:.3?} for {lasting:.3?}")
            }
            NetFault::CrashRelay { at, lasting } => {
                write!(f, "crash relay at +{at:.3?} for {lasting:.3?}")
            }
            NetFault::CrashBob { at, lasting } => {
                write!(f, "crash bob at +{at:.3?} for {lasting:.3?}")
            }
            NetFault::CrashHostOf {
                target,
                at,
                lasting: Some(lasting),
            } => {
                write!(
                    f,
                    "crash {target:?}'s relay host at +{at:.3?} for {lasting:.3?}"
                )
            }
            NetFault::CrashHostOf {
                target,
                at,
                lasting: None,
            } => {
                write!(f, "crash {target:?}'s relay host at +{at:.3?} for good")
            }
            NetFault::PartitionHostOf {
                target,
                at,
                lasting,
            } => {
                write!(
                    f,
                    "partition {target:?} from its relay host at +{at:.3?} for {lasting:.3?}"
                )
            }
            NetFault::HoldHostOf {
                target,
                at,
                lasting,
            } => {
                write!(
                    f,
                    "hold {target:?}'s link to its relay host at +{at:.3?} for {lasting:.3?}"
                )
            }
            NetFault::Resync { at } => write!(f, "feeds resync at +{at:.3?}"),
        }
    }
}
