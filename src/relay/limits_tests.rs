//! Tests of the relay core's limits: each one answers the command at fault with its `error`
//! (or refuses the connection), counts the hit, and leaves every other connection alone.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{json, Value};

use super::*;

const T0: f64 = 1_795_698_600.0;

struct Harness {
    relay: Relay,
    now: f64,
}

impl Harness {
    fn new(limits: Limits) -> Self {
        let config = RelayConfig {
            limits,
            ..RelayConfig::default()
        };
        Harness {
            relay: Relay::new(config, MemoryStore::default(), [3; 32]),
            now: T0,
        }
    }

    fn drain(&mut self) -> Vec<RelayOutput> {
        std::iter::from_fn(|| self.relay.poll_output()).collect()
    }

    /// Every frame sent, as `(conn, frame)`; a close is an error here.
    fn frames(&mut self) -> Vec<(ConnId, Value)> {
        self.drain()
            .into_iter()
            .map(|out| match out {
                RelayOutput::Send { conn, frame } => (conn, serde_json::from_str(&frame).unwrap()),
                RelayOutput::Close { conn } => panic!("unexpected close of {conn}"),
            })
            .collect()
    }

    fn connect_from(&mut self, conn: ConnId, addr: Option<&str>) -> Vec<RelayOutput> {
        let addr: Option<SocketAddr> = addr.map(|a| a.parse().unwrap());
        self.relay.connected(conn, addr, self.now);
        self.drain()
    }

    fn bound(&mut self, conn: ConnId, addr: Option<&str>, side: &str) {
        let out = self.connect_from(conn, addr);
        assert_eq!(out.len(), 1, "a welcome only: {out:?}");
        let replies = self.send(conn, json!({"type": "bind", "appid": "a", "side": side}));
        assert_eq!(types(&replies), ["ack"]);
    }

    fn send(&mut self, conn: ConnId, frame: Value) -> Vec<(ConnId, Value)> {
        self.now += 0.001;
        self.relay.received(conn, &frame.to_string(), self.now);
        self.frames()
    }

    /// Sends a command that must be refused with `limit`'s error, and only that.
    fn refused(&mut self, conn: ConnId, frame: Value, limit: Limit) {
        let before = self.relay.metrics().limit_hits(limit.name());
        let out = self.send(conn, frame);
        let errors: Vec<_> = out.iter().filter(|(_, f)| f["type"] == "error").collect();
        assert_eq!(errors.len(), 1, "{out:?}");
        assert_eq!(errors[0].0, conn);
        assert_eq!(errors[0].1["error"], limit.error());
        assert!(
            out.iter().all(|(c, _)| *c == conn),
            "others got frames: {out:?}"
        );
        assert_eq!(self.relay.metrics().limit_hits(limit.name()), before + 1);
    }

    fn add(&mut self, conn: ConnId, phase: &str, body: &str) -> Vec<(ConnId, Value)> {
        self.send(conn, json!({"type": "add", "phase": phase, "body": body}))
    }
}

fn types(frames: &[(ConnId, Value)]) -> Vec<&str> {
    frames
        .iter()
        .map(|(_, f)| f["type"].as_str().unwrap_or("?"))
        .collect()
}

fn open(h: &mut Harness, conn: ConnId, mailbox: &str) {
    let out = h.send(conn, json!({"type": "open", "mailbox": mailbox}));
    assert!(!types(&out).contains(&"error"), "{out:?}");
}

#[test]
fn messages_per_mailbox() {
    let mut h = Harness::new(Limits {
        messages_per_mailbox: 3,
        ..Limits::default()
    });
    h.bound(1, None, "s1");
    h.bound(2, None, "s2");
    h.bound(3, None, "s3");
    open(&mut h, 1, "mb");
    open(&mut h, 2, "mb");
    open(&mut h, 3, "other");
    for phase in ["0", "1", "2"] {
        assert_eq!(types(&h.add(1, phase, "aa")), ["ack", "message", "message"]);
    }
    // The fourth is refused; the other listener hears nothing of it.
    h.refused(
        1,
        json!({"type": "add", "phase": "3", "body": "aa"}),
        Limit::MailboxMessages,
    );
    h.refused(
        2,
        json!({"type": "add", "phase": "4", "body": "aa"}),
        Limit::MailboxMessages,
    );
    // Another mailbox is unaffected.
    for phase in ["0", "1", "2"] {
        assert_eq!(types(&h.add(3, phase, "aa")), ["ack", "message"]);
    }
    // A reopen replays exactly the three stored messages.
    h.bound(4, None, "s1");
    let replay = h.send(4, json!({"type": "open", "mailbox": "mb"}));
    assert_eq!(types(&replay), ["ack", "message", "message", "message"]);
}

#[test]
fn bytes_per_mailbox_count_side_phase_body_and_id() {
    let mut h = Harness::new(Limits {
        bytes_per_mailbox: 100,
        ..Limits::default()
    });
    h.bound(1, None, "s1");
    open(&mut h, 1, "mb");
    // 2 (side) + 1 (phase) + 60 (body) = 63.
    assert_eq!(types(&h.add(1, "0", &"a".repeat(60))), ["ack", "message"]);
    h.refused(
        1,
        json!({"type": "add", "phase": "1", "body": "a".repeat(40)}),
        Limit::MailboxBytes,
    );
    // 2 + 1 + 30 + 4 (the id `"ab"` as JSON) = 37: exactly 100.
    let out = h.send(
        1,
        json!({"type": "add", "phase": "1", "body": "a".repeat(30), "id": "ab"}),
    );
    assert_eq!(types(&out), ["ack", "message"]);
    h.refused(
        1,
        json!({"type": "add", "phase": "2", "body": ""}),
        Limit::MailboxBytes,
    );
}

#[test]
fn usage_is_forgotten_when_the_mailbox_is_deleted() {
    let mut h = Harness::new(Limits {
        messages_per_mailbox: 1,
        ..Limits::default()
    });
    h.bound(1, None, "s1");
    open(&mut h, 1, "mb");
    h.add(1, "0", "aa");
    let out = h.send(1, json!({"type": "close", "mailbox": "mb"}));
    assert_eq!(types(&out), ["ack", "closed"]);
    // The same id again is a fresh, empty mailbox.
    h.bound(2, None, "s1");
    open(&mut h, 2, "mb");
    assert_eq!(types(&h.add(2, "0", "aa")), ["ack", "message"]);
}

#[test]
fn listeners_per_mailbox_counts_connections_not_sides() {
    let mut h = Harness::new(Limits {
        listeners_per_mailbox: 2,
        ..Limits::default()
    });
    for conn in 1..=3 {
        h.bound(conn, None, "same-side");
    }
    open(&mut h, 1, "mb");
    open(&mut h, 2, "mb");
    h.refused(
        3,
        json!({"type": "open", "mailbox": "mb"}),
        Limit::MailboxListeners,
    );
    // The refused open changed nothing: two listeners hear an add.
    let out = h.add(1, "0", "aa");
    assert_eq!(types(&out), ["ack", "message", "message"]);
    // Once one listener is gone, the third may listen.
    h.relay.disconnected(2);
    open(&mut h, 3, "mb");
    let out = h.add(1, "1", "aa");
    let to: Vec<_> = out
        .iter()
        .filter(|(_, f)| f["type"] == "message")
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(to, [1, 3]);
}

#[test]
fn connections_in_total() {
    let mut h = Harness::new(Limits {
        connections: 2,
        ..Limits::default()
    });
    h.bound(1, Some("192.0.2.1:1"), "s1");
    h.bound(2, None, "s2");
    let out = h.connect_from(3, Some("192.0.2.9:1"));
    match &out[..] {
        [RelayOutput::Send { conn: 3, frame }, RelayOutput::Close { conn: 3 }] => {
            let frame: Value = serde_json::from_str(frame).unwrap();
            assert_eq!(frame["type"], "error");
            assert_eq!(frame["error"], Limit::Connections.error());
        }
        other => panic!("expected an error and a close: {other:?}"),
    }
    assert_eq!(h.relay.metrics().limit_hits("connections"), 1);
    // Its frames are ignored until it is gone.
    assert!(h.send(3, json!({"type": "ping", "ping": 1})).is_empty());
    // The others are unaffected.
    assert_eq!(
        types(&h.send(1, json!({"type": "ping", "ping": 1}))),
        ["ack", "pong"]
    );
    h.relay.disconnected(3);
    h.relay.disconnected(1);
    h.bound(4, Some("192.0.2.9:2"), "s4");
}

#[test]
fn connections_per_source_spare_loopback_unless_asked() {
    let mut h = Harness::new(Limits {
        connections_per_source: 2,
        ..Limits::default()
    });
    h.bound(1, Some("192.0.2.1:1"), "s1");
    h.bound(2, Some("192.0.2.1:2"), "s2");
    let out = h.connect_from(3, Some("192.0.2.1:3"));
    assert!(matches!(
        out[..],
        [
            RelayOutput::Send { conn: 3, .. },
            RelayOutput::Close { conn: 3 }
        ]
    ));
    assert_eq!(h.relay.metrics().limit_hits("connections_per_source"), 1);
    // IPv6 addresses of one /64 are one source.
    h.bound(4, Some("[2001:db8::1]:1"), "s4");
    h.bound(5, Some("[2001:db8::2]:1"), "s5");
    let out = h.connect_from(6, Some("[2001:db8::3]:1"));
    assert!(matches!(out[..], [_, RelayOutput::Close { conn: 6 }]));
    // Other sources, loopback and in-process connections are not limited.
    h.bound(7, Some("192.0.2.2:1"), "s7");
    for conn in 10..20 {
        h.bound(conn, Some("127.0.0.1:1"), "lo");
    }
    for conn in 20..30 {
        h.bound(conn, None, "mem");
    }
    // A connection that went away frees its place.
    h.relay.disconnected(1);
    h.bound(8, Some("192.0.2.1:4"), "s8");

    let mut strict = Harness::new(Limits {
        connections_per_source: 2,
        limit_loopback: true,
        ..Limits::default()
    });
    strict.bound(1, Some("127.0.0.1:1"), "a");
    strict.bound(2, Some("[::1]:1"), "b");
    strict.bound(3, Some("[::1]:2"), "c");
    let out = strict.connect_from(4, Some("[::1]:3"));
    assert!(matches!(out[..], [_, RelayOutput::Close { conn: 4 }]));
}

#[test]
fn allocations_per_source_over_time() {
    let mut h = Harness::new(Limits {
        allocations_per_source: Rate { per_minute: 2 },
        ..Limits::default()
    });
    for conn in 1..=3 {
        h.bound(conn, Some("192.0.2.1:1"), &format!("s{conn}"));
    }
    h.bound(4, Some("192.0.2.2:1"), "other");
    h.bound(5, Some("127.0.0.1:1"), "local");
    for conn in 1..=2 {
        assert_eq!(
            types(&h.send(conn, json!({"type": "allocate"}))),
            ["ack", "allocated"]
        );
    }
    h.refused(3, json!({"type": "allocate"}), Limit::Allocations);
    // Another source and loopback are unaffected.
    assert_eq!(
        types(&h.send(4, json!({"type": "allocate"}))),
        ["ack", "allocated"]
    );
    assert_eq!(
        types(&h.send(5, json!({"type": "allocate"}))),
        ["ack", "allocated"]
    );
    // A refused allocation did not use up the connection's one allocation: 30 s later (one
    // token at 2 a minute) it succeeds.
    h.now += 30.0;
    assert_eq!(
        types(&h.send(3, json!({"type": "allocate"}))),
        ["ack", "allocated"]
    );
}

#[test]
fn claims_per_source_count_claims_and_opens_of_new_mailboxes() {
    let mut h = Harness::new(Limits {
        claims_per_source: Rate { per_minute: 2 },
        ..Limits::default()
    });
    for conn in 1..=5 {
        h.bound(conn, Some("192.0.2.1:1"), &format!("s{conn}"));
    }
    h.bound(9, None, "owner");
    open(&mut h, 9, "existing");
    let out = h.send(1, json!({"type": "claim", "nameplate": "5"}));
    assert_eq!(types(&out), ["ack", "claimed"]);
    open(&mut h, 2, "new-mailbox");
    h.refused(3, json!({"type": "claim", "nameplate": "6"}), Limit::Claims);
    h.refused(
        3,
        json!({"type": "open", "mailbox": "another"}),
        Limit::Claims,
    );
    // Opening an existing mailbox is not a claim.
    open(&mut h, 4, "existing");
    // The refused claim did not use up the connection's one claim.
    h.now += 30.0;
    let out = h.send(3, json!({"type": "claim", "nameplate": "6"}));
    assert_eq!(types(&out), ["ack", "claimed"]);
}

#[test]
fn string_lengths() {
    let mut h = Harness::new(Limits::default());
    h.connect_from(1, None);
    let long = |n: usize| "x".repeat(n);
    h.refused(
        1,
        json!({"type": "bind", "appid": long(257), "side": "s"}),
        Limit::AppidBytes,
    );
    h.refused(
        1,
        json!({"type": "bind", "appid": "a", "side": long(65)}),
        Limit::SideBytes,
    );
    // A refused bind leaves the connection unbound: a good one still works.
    let out = h.send(
        1,
        json!({"type": "bind", "appid": long(256), "side": long(64)}),
    );
    assert_eq!(types(&out), ["ack"]);
    h.refused(
        1,
        json!({"type": "open", "mailbox": long(65)}),
        Limit::MailboxIdBytes,
    );
    open(&mut h, 1, &long(64));
    h.refused(
        1,
        json!({"type": "add", "phase": long(65), "body": ""}),
        Limit::PhaseBytes,
    );
    assert_eq!(types(&h.add(1, &long(64), "")), ["ack", "message"]);
    h.refused(
        1,
        json!({"type": "close", "mood": long(257)}),
        Limit::StringBytes,
    );
    // An id too long is refused before the ack (which would echo it).
    let out = h.send(1, json!({"type": "ping", "ping": 1, "id": long(300)}));
    assert_eq!(types(&out), ["error"]);
    assert_eq!(out[0].1["error"], Limit::StringBytes.error());
    let out = h.send(1, json!({"type": "close", "mood": "happy", "id": "abcd"}));
    assert_eq!(types(&out), ["ack", "closed"]);
}

#[test]
fn abandoned_single_side_nameplates_expire_early_and_others_do_not() {
    let mut h = Harness::new(Limits::default());
    let list = |h: &mut Harness| -> Vec<String> {
        h.bound(99, None, "lister");
        let out = h.send(99, json!({"type": "list"}));
        h.relay.disconnected(99);
        out[1].1["nameplates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // 1 allocates and goes away; 2 allocates, opens its mailbox and stays; 3 and 4 are both
    // sides of nameplate 77 and go away.
    h.bound(1, None, "gone");
    h.send(1, json!({"type": "allocate"}));
    h.bound(2, None, "waiting");
    let out = h.send(2, json!({"type": "allocate"}));
    let waiting = out[1].1["nameplate"].as_str().unwrap().to_owned();
    let out = h.send(2, json!({"type": "claim", "nameplate": waiting}));
    let mailbox = out[1].1["mailbox"].as_str().unwrap().to_owned();
    open(&mut h, 2, &mailbox);
    h.bound(3, None, "x");
    h.bound(4, None, "y");
    h.send(3, json!({"type": "claim", "nameplate": "77"}));
    h.send(4, json!({"type": "claim", "nameplate": "77"}));
    h.relay.disconnected_at(1, h.now);
    h.relay.disconnected_at(3, h.now);
    h.relay.disconnected_at(4, h.now);
    assert_eq!(list(&mut h).len(), 3);
    assert_eq!(h.relay.prune(h.now + 119.0), 0);
    assert_eq!(list(&mut h).len(), 3);
    assert_eq!(h.relay.prune(h.now + 121.0), 1);
    let left = list(&mut h);
    assert_eq!(left.len(), 2);
    assert!(left.contains(&waiting) && left.contains(&"77".to_string()));
    // The waiting side goes away later: its time counts from then, not from its allocation.
    h.now += 200.0;
    h.relay.disconnected_at(2, h.now);
    assert_eq!(h.relay.prune(h.now + 100.0), 0);
    assert_eq!(h.relay.prune(h.now + 121.0), 1);
    assert_eq!(list(&mut h), ["77"]);
}

#[test]
fn a_broadcast_is_serialized_once_and_shared() {
    let mut h = Harness::new(Limits::default());
    h.bound(1, None, "a");
    h.bound(2, None, "b");
    open(&mut h, 1, "mb");
    open(&mut h, 2, "mb");
    h.relay
        .received(1, r#"{"type":"add","phase":"0","body":"aa"}"#, T0 + 1.0);
    let messages: Vec<Arc<str>> = h
        .drain()
        .into_iter()
        .filter_map(|out| match out {
            RelayOutput::Send { frame, .. } if frame.contains(r#""type":"message""#) => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 2);
    assert!(Arc::ptr_eq(&messages[0], &messages[1]));
}

/// Two relay processes (`a`, `b`) over one shared store, with room for 5 messages and 103
/// bytes per mailbox: adds spread over both are refused at the limit exactly, as on one
/// process, because the count is read in the transaction that adds. (With a per-process
/// count, each process would admit its own 5 messages.)
#[cfg(any(feature = "relay-server", feature = "sqlite"))]
pub(super) fn spread_adds_are_limited_exactly<S: MailboxStore>(a: S, b: S) {
    let limits = Limits {
        messages_per_mailbox: 5,
        bytes_per_mailbox: 103,
        ..Limits::default()
    };
    let config = RelayConfig {
        limits,
        ..RelayConfig::default()
    };
    let mut relays = [
        Relay::new(config.clone(), a, [1; 32]),
        Relay::new(config, b, [2; 32]),
    ];
    let mut now = T0;
    let mut send = |relay: &mut Relay<S>, conn: ConnId, frame: Value| -> Vec<Value> {
        now += 0.001;
        relay.received(conn, &frame.to_string(), now);
        std::iter::from_fn(|| relay.poll_output())
            .filter_map(|out| match out {
                RelayOutput::Send { frame, .. } => serde_json::from_str(&frame).ok(),
                RelayOutput::Close { .. } => None,
            })
            .collect()
    };
    let kinds = |frames: &[Value]| -> Vec<String> {
        let kind = |f: &Value| f["type"].as_str().unwrap_or("?").to_owned();
        frames.iter().map(kind).collect()
    };
    // Connections 1 and 3 on `a`, 2 and 4 on `b`; 1 and 2 share "msgs", 3 and 4 "bytes".
    for (conn, mailbox) in [(1, "msgs"), (2, "msgs"), (3, "bytes"), (4, "bytes")] {
        let relay = &mut relays[(conn as usize + 1) % 2];
        relay.connected(conn, None, T0);
        let side = format!("s{conn}");
        send(
            relay,
            conn,
            json!({"type": "bind", "appid": "a", "side": side}),
        );
        let out = send(relay, conn, json!({"type": "open", "mailbox": mailbox}));
        assert!(!kinds(&out).contains(&"error".to_owned()), "{out:?}");
    }
    let mut add = |conn: ConnId, phase: &str, body: &str, id: Option<&str>| {
        let relay = &mut relays[(conn as usize + 1) % 2];
        let frame = json!({"type": "add", "phase": phase, "body": body, "id": id});
        let out = send(relay, conn, frame);
        let error = out.iter().find(|f| f["type"] == "error");
        error.map(|f| f["error"].as_str().unwrap_or("?").to_owned())
    };
    // Five messages (4 bytes each), alternating processes; the sixth is refused on both.
    for (i, conn) in [1, 2, 1, 2, 1].into_iter().enumerate() {
        assert_eq!(add(conn, &i.to_string(), "a", None), None, "add {i}");
    }
    for conn in [2, 1] {
        let refused = add(conn, "5", "a", None);
        assert_eq!(refused.as_deref(), Some(Limit::MailboxMessages.error()));
    }
    // 33 + 33 + 33 + 4 = 103 bytes fit exactly; 3 more do not, on either process. A big
    // message: side and phase (3), a body of 27 bytes in 26 characters, and the id `"x"` as
    // JSON (3).
    let body = format!("\u{e9}{}", "b".repeat(25));
    for (i, conn) in [3, 4, 3].into_iter().enumerate() {
        assert_eq!(add(conn, &i.to_string(), &body, Some("x")), None, "add {i}");
    }
    assert_eq!(add(4, "3", "b", None), None);
    for conn in [3, 4] {
        let refused = add(conn, "4", "", None);
        assert_eq!(refused.as_deref(), Some(Limit::MailboxBytes.error()));
    }
    // Each process counted its own refusals; the store holds exactly what was admitted.
    for relay in &relays {
        assert_eq!(relay.metrics().limit_hits(Limit::MailboxMessages.name()), 1);
        assert_eq!(relay.metrics().limit_hits(Limit::MailboxBytes.name()), 1);
    }
    let store = &mut relays[0].store;
    let held = store
        .transaction(&mut |tx| Ok((tx.mailbox_usage("a", "msgs")?, tx.messages("a", "bytes")?)))
        .unwrap();
    assert_eq!(
        held.0,
        MailboxUsage {
            messages: 5,
            bytes: 20
        }
    );
    let phases: Vec<_> = held.1.iter().map(|m| m.phase.as_str()).collect();
    assert_eq!(phases, ["0", "1", "2", "3"]);
}

#[cfg(feature = "relay-server")]
#[test]
fn mailbox_limits_hold_across_relays_sharing_a_store() {
    let shared = shared::SharedMemoryStore::new();
    spread_adds_are_limited_exactly(shared.clone(), shared);
}

#[cfg(feature = "sqlite")]
#[test]
fn mailbox_limits_hold_across_relays_on_one_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("wormhole-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.sqlite");
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    spread_adds_are_limited_exactly(a, b);
    let _ = std::fs::remove_dir_all(&dir);
}
