//! The limits of a public relay: what one client may hold or do, so that no single client can
//! exhaust the relay (its memory, its connections, its short nameplates).
//!
//! [`Limits`] holds the settings (with defaults for a public relay; every one is a flag of
//! `wormhole-relay`), [`Limit`] names each limit, its metric label and the `error` text a
//! client gets when it hits it. The checks run inside the core, before the command they guard
//! changes anything, so a refused command leaves no trace; every hit is counted in
//! [`Metrics`](super::metrics::Metrics) under [`Limit::name`].
//!
//! Per-source limits count by source address: an IPv4 address, or the /64 prefix of an IPv6
//! address (one subscriber's usual allocation). `127.0.0.1` and `::1`, where local tests and a
//! reverse proxy without `--behind-proxy` connect from, are left alone unless
//! [`Limits::limit_loopback`] is set; connections without an address (in-process) are never
//! counted per source.
//!
//! Here: the settings and the names of the limits; the per-process bookkeeping (connections,
//! sources and their buckets) and the checks on it are in `state`.
//!
//! # Several relay processes on one store
//! The per-mailbox message and byte limits are checked by the `add` rule in the store
//! transaction that adds (`tables::add_message`), against what the store holds: they hold
//! across processes, exactly. Everything else here is counted by each process for its own
//! connections, so with N processes a client may get up to N times as much by spreading its
//! connections over them: connections (in total and per source), the allocation and claim
//! rates per source, and the listeners per mailbox. Listeners are connections of one process;
//! counting them in the store would need every process to register and renew them (a process
//! that dies would otherwise leave its listeners counted forever), which costs a store write
//! per `open` and per disconnect and a lease scheme; the per-process bound (N times
//! [`Limits::listeners_per_mailbox`] copies of each broadcast) is accepted instead.

mod state;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::commands::Refusal;
pub(in crate::relay) use state::LimitState;

/// A rate per source address: a token bucket holding up to `per_minute` tokens, refilled at
/// `per_minute` tokens a minute. A fresh source may therefore do `per_minute` at once, then
/// one every `60 / per_minute` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens per minute, and the bucket's size. 0 forbids the action.
    pub per_minute: u32,
}

/// The limits of the relay. See the README's "Limits" section for the reasoning behind each
/// default.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Messages one mailbox may hold (`--max-mailbox-messages`). Default 128.
    pub messages_per_mailbox: usize,
    /// Bytes (side, phase, body and id of every message) one mailbox may hold
    /// (`--max-mailbox-bytes`). Default 2 MiB.
    pub bytes_per_mailbox: usize,
    /// Connections that may listen to one mailbox at once (`--max-mailbox-listeners`),
    /// counted per relay process (see the [module docs](self)). Default 8.
    pub listeners_per_mailbox: usize,
    /// Connections in total (`--max-connections`). Default 20,000.
    pub connections: usize,
    /// Connections per source address (`--max-connections-per-source`). Default 200.
    pub connections_per_source: usize,
    /// Nameplate allocations per source address (`--allocations-per-minute`). Default 10.
    pub allocations_per_source: Rate,
    /// Nameplate claims and opens of mailboxes that do not exist yet, per source address
    /// (`--claims-per-minute`). Default 10.
    pub claims_per_source: Rate,
    /// Longest `appid` (`--max-appid-bytes`). Default 256.
    pub appid_bytes: usize,
    /// Longest `side` (`--max-side-bytes`). Default 64.
    pub side_bytes: usize,
    /// Longest `phase` (`--max-phase-bytes`). Default 64.
    pub phase_bytes: usize,
    /// Longest `mailbox` id (`--max-mailbox-id-bytes`). Default 64.
    pub mailbox_id_bytes: usize,
    /// Longest other string the relay keeps or echoes: `mood`, and a frame's `id` as JSON
    /// (`--max-string-bytes`). Default 256.
    pub string_bytes: usize,
    /// A nameplate claimed by one side only, which never added a message to its mailbox and
    /// whose mailbox nobody has listened to for this long, is deleted at the next prune
    /// (`--abandoned-nameplate-secs`). Default 120 s. (A side that sent its `pake` is waiting
    /// for its peer: only the mailbox expiry applies to it.)
    pub abandoned_nameplate_secs: f64,
    /// Apply per-source limits to `127.0.0.1` and `::1` too (`--limit-loopback`).
    /// Default `false`.
    pub limit_loopback: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_mailbox: 128,
            bytes_per_mailbox: 2 << 20,
            listeners_per_mailbox: 8,
            connections: 20_000,
            connections_per_source: 200,
            allocations_per_source: Rate { per_minute: 10 },
            claims_per_source: Rate { per_minute: 10 },
            appid_bytes: 256,
            side_bytes: 64,
            phase_bytes: 64,
            mailbox_id_bytes: 64,
            string_bytes: 256,
            abandoned_nameplate_secs: 120.0,
            limit_loopback: false,
        }
    }
}

/// One limit of [`Limits`], as counted and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`Limits::messages_per_mailbox`].
    MailboxMessages,
    /// [`Limits::bytes_per_mailbox`].
    MailboxBytes,
    /// [`Limits::listeners_per_mailbox`].
    MailboxListeners,
    /// [`Limits::connections`].
    Connections,
    /// [`Limits::connections_per_source`].
    ConnectionsPerSource,
    /// [`Limits::allocations_per_source`].
    Allocations,
    /// [`Limits::claims_per_source`].
    Claims,
    /// [`Limits::appid_bytes`].
    AppidBytes,
    /// [`Limits::side_bytes`].
    SideBytes,
    /// [`Limits::phase_bytes`].
    PhaseBytes,
    /// [`Limits::mailbox_id_bytes`].
    MailboxIdBytes,
    /// [`Limits::string_bytes`].
    StringBytes,
}

impl Limit {
    /// The metric label (`wormhole_relay_limits_hit_total{limit="..."}`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::MailboxMessages => "mailbox_messages",
            Limit::MailboxBytes => "mailbox_bytes",
            Limit::MailboxListeners => "mailbox_listeners",
            Limit::Connections => "connections",
            Limit::ConnectionsPerSource => "connections_per_source",
            Limit::Allocations => "allocations_per_source",
            Limit::Claims => "claims_per_source",
            Limit::AppidBytes => "appid_bytes",
            Limit::SideBytes => "side_bytes",
            Limit::PhaseBytes => "phase_bytes",
            Limit::MailboxIdBytes => "mailbox_id_bytes",
            Limit::StringBytes => "string_bytes",
        }
    }

    /// The `error` text a client gets: what happened and the limit's flag.
    pub fn error(self) -> &'static str {
        match self {
            Limit::MailboxMessages => {
                "limit reached: this mailbox holds too many messages (--max-mailbox-messages)"
            }
            Limit::MailboxBytes => {
                "limit reached: this mailbox holds too many bytes (--max-mailbox-bytes)"
            }
            Limit::MailboxListeners => {
                "limit reached: too many connections listen to this mailbox (--max-mailbox-listeners)"
            }
            Limit::Connections => {
                "limit reached: the relay has too many connections, try again later (--max-connections)"
            }
            Limit::ConnectionsPerSource => {
                "limit reached: too many connections from your address (--max-connections-per-source)"
            }
            Limit::Allocations => {
                "limit reached: too many nameplates allocated from your address, try again in a minute (--allocations-per-minute)"
            }
            Limit::Claims => {
                "limit reached: too many claims from your address, try again in a minute (--claims-per-minute)"
            }
            Limit::AppidBytes => "limit reached: 'appid' is too long (--max-appid-bytes)",
            Limit::SideBytes => "limit reached: 'side' is too long (--max-side-bytes)",
            Limit::PhaseBytes => "limit reached: 'phase' is too long (--max-phase-bytes)",
            Limit::MailboxIdBytes => "limit reached: 'mailbox' is too long (--max-mailbox-id-bytes)",
            Limit::StringBytes => {
                "limit reached: a string ('id' or 'mood') is too long (--max-string-bytes)"
            }
        }
    }

    /// Every limit (for documentation and tests).
    pub const ALL: [Limit; 12] = [
        Limit::MailboxMessages,
        Limit::MailboxBytes,
        Limit::MailboxListeners,
        Limit::Connections,
        Limit::ConnectionsPerSource,
        Limit::Allocations,
        Limit::Claims,
        Limit::AppidBytes,
        Limit::SideBytes,
        Limit::PhaseBytes,
        Limit::MailboxIdBytes,
        Limit::StringBytes,
    ];
}

impl Limits {
    /// Checks the strings of a `bind`.
    pub(super) fn check_bind(&self, appid: &str, side: &str) -> Result<(), Limit> {
        check_len(appid, self.appid_bytes, Limit::AppidBytes)?;
        check_len(side, self.side_bytes, Limit::SideBytes)
    }

    /// Checks a mailbox id of an `open` or `close`.
    pub(super) fn check_mailbox_id(&self, mailbox: &str) -> Result<(), Limit> {
        check_len(mailbox, self.mailbox_id_bytes, Limit::MailboxIdBytes)
    }

    /// Checks the phase of an `add`.
    pub(super) fn check_phase(&self, phase: &str) -> Result<(), Limit> {
        check_len(phase, self.phase_bytes, Limit::PhaseBytes)
    }

    /// Checks a `mood` or a frame's `id` (as its JSON text).
    pub(super) fn check_string(&self, text: &str) -> Result<(), Limit> {
        check_len(text, self.string_bytes, Limit::StringBytes)
    }

    /// The source address `addr` counts for in per-source limits (an IPv4 address, or an IPv6
    /// /64 prefix), or `None` when per-source limits do not apply to it (no address, or
    /// `127.0.0.1`/`::1` without [`limit_loopback`](Self::limit_loopback)).
    pub fn source_key(&self, addr: Option<SocketAddr>) -> Option<IpAddr> {
        let ip = match addr?.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        let loopback =
            ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST);
        if loopback && !self.limit_loopback {
            return None;
        }
        Some(match ip {
            // One IPv6 subscriber usually has a whole /64: count the prefix.
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        })
    }
}

fn check_len(text: &str, max: usize, limit: Limit) -> Result<(), Limit> {
    if text.len() > max {
        Err(limit)
    } else {
        Ok(())
    }
}

impl From<Limit> for Refusal {
    fn from(limit: Limit) -> Self {
        Refusal::Limit(limit)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ipv6_sources_count_by_64_prefix_and_loopback_is_exempt_unless_asked() {
        let limits = Limits::default();
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:5".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:6".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:3::1]:6".parse().unwrap();
        assert_eq!(limits.source_key(Some(a)), limits.source_key(Some(b)));
        assert_ne!(limits.source_key(Some(a)), limits.source_key(Some(c)));
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:1".parse().unwrap();
        assert_eq!(
            limits.source_key(Some(mapped)),
            Some("192.0.2.7".parse().unwrap())
        );
        let lo: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9".parse().unwrap();
        let lo2: SocketAddr = "127.0.0.2:9".parse().unwrap();
        assert_eq!(limits.source_key(Some(lo)), None);
        assert_eq!(limits.source_key(Some(lo6)), None);
        assert_eq!(limits.source_key(Some(lo2)), Some(lo2.ip()));
        assert_eq!(limits.source_key(None), None);
        let strict = Limits {
            limit_loopback: true,
            ..Limits::default()
        };
        assert_eq!(strict.source_key(Some(lo)), Some(lo.ip()));
    }

    #[test]
    fn every_limit_has_a_distinct_name_and_an_error_naming_its_flag() {
        let names: HashSet<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        assert_eq!(names.len(), Limit::ALL.len());
        for limit in Limit::ALL {
            assert!(limit.error().starts_with("limit reached: "), "{limit:?}");
            assert!(limit.error().contains("(--"), "{limit:?}");
        }
    }
}
