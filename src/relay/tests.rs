//! Unit tests of the relay core: every probe of test-vectors.md §7, allocation, release,
//! close, pruning, bad frames and store failures.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;

use serde_json::{json, Value};

use super::tables::base32_lower;
use super::*;

const T0: f64 = 1_795_698_600.0;

/// Drives a relay with a virtual clock that advances 1 ms per input.
struct Harness<S: MailboxStore = MemoryStore> {
    relay: Relay<S>,
    now: f64,
}

impl Harness {
    fn new() -> Self {
        Harness::with(RelayConfig::default(), [1; 32])
    }

    fn with(config: RelayConfig, seed: [u8; 32]) -> Self {
        Harness::with_store(config, MemoryStore::default(), seed)
    }
}

impl<S: MailboxStore> Harness<S> {
    fn with_store(config: RelayConfig, store: S, seed: [u8; 32]) -> Self {
        Harness {
            relay: Relay::new(config, store, seed),
            now: T0,
        }
    }

    fn tick(&mut self) -> f64 {
        self.now += 0.001;
        self.now
    }

    /// Every queued output, as `(conn, frame)`; `server_tx` is checked and removed.
    fn drain(&mut self) -> Vec<(ConnId, Value)> {
        let mut out = Vec::new();
        while let Some(output) = self.relay.poll_output() {
            match output {
                RelayOutput::Send { conn, frame } => {
                    let mut value: Value = serde_json::from_str(&frame).expect("valid JSON out");
                    let tx = value
                        .as_object_mut()
                        .and_then(|map| map.remove("server_tx"))
                        .expect("server_tx on every frame");
                    // serde_json's float parsing may differ from the printed value by an ulp.
                    let tx = tx.as_f64().expect("server_tx is a number");
                    assert!((tx - self.now).abs() < 1e-6, "server_tx = now");
                    if let Some(rx) = value.get_mut("server_rx") {
                        *rx = json!(millis(rx.as_f64().expect("server_rx is a number")));
                    }
                    out.push((conn, value));
                }
                RelayOutput::Close { conn } => panic!("unexpected close of {conn}"),
            }
        }
        out
    }

    /// Connects and returns the welcome.
    fn connect(&mut self, conn: ConnId) -> Value {
        let now = self.tick();
        self.relay.connected(conn, None, now);
        let out = self.drain();
        assert_eq!(out.len(), 1);
        out.into_iter()
            .next()
            .map(|(_, frame)| frame)
            .unwrap_or_default()
    }

    /// Sends raw text; returns every output.
    fn raw(&mut self, conn: ConnId, text: &str) -> Vec<(ConnId, Value)> {
        let now = self.tick();
        self.relay.received(conn, text, now);
        self.drain()
    }

    /// Sends a command; returns every output.
    fn send_all(&mut self, conn: ConnId, frame: Value) -> Vec<(ConnId, Value)> {
        self.raw(conn, &frame.to_string())
    }

    /// Sends a command; returns the frames to `conn` (there must be no others).
    fn send(&mut self, conn: ConnId, frame: Value) -> Vec<Value> {
        let out = self.send_all(conn, frame);
        assert!(
            out.iter().all(|(c, _)| *c == conn),
            "frames to others: {out:?}"
        );
        out.into_iter().map(|(_, frame)| frame).collect()
    }

    /// Sends a command that must be acked (id null) and answered with exactly `reply`.
    fn expect(&mut self, conn: ConnId, frame: Value, reply: Value) {
        let out = self.send(conn, frame);
        assert_eq!(out, vec![ack(None), reply]);
    }

    /// Sends a command that must be acked and get no other frame.
    fn expect_ack(&mut self, conn: ConnId, frame: Value) {
        assert_eq!(self.send(conn, frame), vec![ack(None)]);
    }

    fn error(&mut self, conn: ConnId, frame: Value, error: &str) {
        let orig = frame.clone();
        self.expect(
            conn,
            frame,
            json!({"type": "error", "error": error, "orig": orig}),
        );
    }

    fn connect_bound(&mut self, conn: ConnId, appid: &str, side: &str) {
        self.connect(conn);
        self.expect_ack(conn, json!({"type": "bind", "appid": appid, "side": side}));
    }

    fn allocate(&mut self, conn: ConnId) -> String {
        let out = self.send(conn, json!({"type": "allocate"}));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], ack(None));
        assert_eq!(out[1]["type"], "allocated");
        out[1]["nameplate"].as_str().expect("nameplate").to_owned()
    }

    fn claim(&mut self, conn: ConnId, nameplate: &str) -> String {
        let out = self.send(conn, json!({"type": "claim", "nameplate": nameplate}));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], ack(None));
        assert_eq!(out[1]["type"], "claimed", "{out:?}");
        out[1]["mailbox"].as_str().expect("mailbox").to_owned()
    }

    /// Opens and returns the replayed messages.
    fn open(&mut self, conn: ConnId, mailbox: &str) -> Vec<Value> {
        let out = self.send(conn, json!({"type": "open", "mailbox": mailbox}));
        assert_eq!(out.first(), Some(&ack(None)), "{out:?}");
        out.into_iter().skip(1).collect()
    }

    fn list(&mut self, conn: ConnId) -> Vec<String> {
        let out = self.send(conn, json!({"type": "list"}));
        assert_eq!(out.len(), 2);
        out[1]["nameplates"]
            .as_array()
            .expect("list")
            .iter()
            .map(|entry| entry["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

fn ack(id: Option<&str>) -> Value {
    json!({"type": "ack", "id": id})
}

/// Rounds to milliseconds (the harness clock's step), so times survive a JSON round trip.
fn millis(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

fn message(side: &str, phase: &str, body: &str, server_rx: f64, id: Option<&str>) -> Value {
    json!({"type": "message", "side": side, "phase": phase, "body": body,
           "server_rx": millis(server_rx), "id": id})
}

// ----- test-vectors.md §7, row by row ------------------------------------------------------

#[test]
fn ping_before_bind_is_answered() {
    let mut h = Harness::new();
    h.connect(1);
    let out = h.send(1, json!({"type": "ping", "ping": 7, "id": "0001"}));
    assert_eq!(
        out,
        vec![ack(Some("0001")), json!({"type": "pong", "pong": 7})]
    );
}

#[test]
fn list_before_bind_must_bind_first() {
    let mut h = Harness::new();
    h.connect(1);
    let frame = json!({"type": "list", "id": "0002"});
    let out = h.send(1, frame.clone());
    assert_eq!(
        out,
        vec![
            ack(Some("0002")),
            json!({"type": "error", "error": "must bind first", "orig": frame})
        ]
    );
}

#[test]
fn missing_type_gets_error_and_no_ack() {
    let mut h = Harness::new();
    h.connect(1);
    let out = h.send(1, json!({"id": "0003"}));
    assert_eq!(
        out,
        vec![json!({"type": "error", "error": "missing 'type'", "orig": {"id": "0003"}})]
    );
}

#[test]
fn unknown_type_before_and_after_bind() {
    let mut h = Harness::new();
    h.connect(1);
    h.error(1, json!({"type": "bogus"}), "must bind first");
    h.expect_ack(1, json!({"type": "bind", "appid": "a", "side": "s"}));
    h.error(1, json!({"type": "bogus"}), "unknown type");
    // A non-string type is just another unknown type (and is acked).
    h.error(1, json!({"type": 5}), "unknown type");
}

#[test]
fn bind_requires_appid_and_side() {
    let mut h = Harness::new();
    h.connect(1);
    h.error(
        1,
        json!({"type": "bind", "side": "s"}),
        "bind requires 'appid'",
    );
    h.error(
        1,
        json!({"type": "bind", "appid": "a"}),
        "bind requires 'side'",
    );
    h.error(
        1,
        json!({"type": "bind", "appid": 1, "side": "s"}),
        errors::BIND_NEEDS_STRING_APPID,
    );
    h.error(
        1,
        json!({"type": "bind", "appid": "a", "side": []}),
        errors::BIND_NEEDS_STRING_SIDE,
    );
    // None of those bound the connection.
    h.expect_ack(
        1,
        json!({"type": "bind", "appid": "a", "side": "s", "client_version": ["rust", "0"]}),
    );
}

#[test]
fn second_bind_is_already_bound() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(
        1,
        json!({"type": "bind", "appid": "a", "side": "s"}),
        "already bound",
    );
}

#[test]
fn list_with_no_nameplates_is_empty() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.expect(
        1,
        json!({"type": "list"}),
        json!({"type": "nameplates", "nameplates": []}),
    );
}

#[test]
fn add_before_open() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(
        1,
        json!({"type": "add", "phase": "pake", "body": "00"}),
        "must open mailbox before adding",
    );
}

#[test]
fn release_without_nameplate_before_claim() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(
        1,
        json!({"type": "release"}),
        "release without nameplate must follow claim",
    );
}

#[test]
fn close_without_mailbox_before_open() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(
        1,
        json!({"type": "close"}),
        "close without mailbox must follow open",
    );
}

#[test]
fn claim_without_nameplate() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(1, json!({"type": "claim"}), "claim requires 'nameplate'");
}

#[test]
fn allocate_twice_is_greedy() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    let nameplate = h.allocate(1);
    assert!(("1"..="9").contains(&nameplate.as_str()) && nameplate.len() == 1);
    h.error(
        1,
        json!({"type": "allocate"}),
        "you already allocated one, don't be greedy",
    );
    assert_eq!(h.list(1), vec![nameplate]);
}

#[test]
fn ping_without_ping_and_without_id() {
    let mut h = Harness::new();
    h.connect(1);
    let out = h.send(1, json!({"type": "ping"}));
    assert_eq!(
        out,
        vec![
            json!({"type": "ack", "id": null}),
            json!({"type": "error", "error": "ping requires 'ping'", "orig": {"type": "ping"}})
        ]
    );
    h.error(
        1,
        json!({"type": "ping", "ping": "x"}),
        errors::PING_NEEDS_INTEGER,
    );
}

#[test]
fn claim_of_non_numeric_nameplate_is_an_error_and_the_connection_survives() {
    // Python 0.8 drops the connection here; we answer and keep going.
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    for bad in [
        json!("abc"),
        json!(""),
        json!("1a"),
        json!("٣"),
        json!(7),
        json!("1".repeat(41)),
    ] {
        h.error(
            1,
            json!({"type": "claim", "nameplate": bad, "id": null}),
            errors::CLAIM_NEEDS_NUMERIC,
        );
    }
    // The bad claims did not use up the connection's claim, and 40 digits are fine.
    h.claim(1, &"1".repeat(40));
    assert_eq!(h.list(1), vec!["1".repeat(40)]);
}

#[test]
fn second_claim_on_a_connection() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.claim(1, "123");
    h.error(
        1,
        json!({"type": "claim", "nameplate": "123"}),
        "only one claim per connection",
    );
}

#[test]
fn second_open_on_a_connection() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    let mailbox = h.claim(1, "123");
    assert!(h.open(1, &mailbox).is_empty());
    h.error(
        1,
        json!({"type": "open", "mailbox": mailbox}),
        "only one open per connection",
    );
    h.error(1, json!({"type": "open"}), errors::ONE_OPEN);
}

#[test]
fn open_requires_a_string_mailbox() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(1, json!({"type": "open"}), "open requires 'mailbox'");
    h.error(
        1,
        json!({"type": "open", "mailbox": 3}),
        errors::OPEN_NEEDS_STRING,
    );
}

#[test]
fn add_twice_with_same_phase_echoes_twice() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sideA");
    let mailbox = h.claim(1, "123");
    h.open(1, &mailbox);
    for id in ["a1", "a2"] {
        let out = h.send(
            1,
            json!({"type": "add", "phase": "pake", "body": "aa01", "id": id}),
        );
        let rx = h.now;
        assert_eq!(
            out,
            vec![
                ack(Some(id)),
                message("sideA", "pake", "aa01", rx, Some(id))
            ]
        );
    }
}

#[test]
fn add_requires_phase_and_body() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.open(1, "mbox");
    h.error(1, json!({"type": "add", "body": "00"}), "missing 'phase'");
    h.error(1, json!({"type": "add", "phase": "0"}), "missing 'body'");
    h.error(
        1,
        json!({"type": "add", "phase": 0, "body": "00"}),
        errors::ADD_NEEDS_STRING_PHASE,
    );
    h.error(
        1,
        json!({"type": "add", "phase": "0", "body": {}}),
        errors::ADD_NEEDS_STRING_BODY,
    );
}

#[test]
fn reconnect_same_side_claims_again_and_gets_a_replay() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sideA");
    let mailbox = h.claim(1, "123");
    h.open(1, &mailbox);
    h.send(
        1,
        json!({"type": "add", "phase": "pake", "body": "aa01", "id": "a1"}),
    );
    let rx1 = h.now;
    h.send(
        1,
        json!({"type": "add", "phase": "pake", "body": "aa01", "id": "a2"}),
    );
    let rx2 = h.now;
    h.relay.disconnected(1);

    h.connect_bound(2, "a", "sideA");
    assert_eq!(h.claim(2, "123"), mailbox);
    assert_eq!(
        h.open(2, &mailbox),
        vec![
            message("sideA", "pake", "aa01", rx1, Some("a1")),
            message("sideA", "pake", "aa01", rx2, Some("a2"))
        ]
    );
}

#[test]
fn third_side_is_crowded_and_the_quirk_follows() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sideA");
    let mailbox = h.claim(1, "123");
    h.open(1, &mailbox);
    h.connect_bound(2, "a", "sideB");
    assert_eq!(h.claim(2, "123"), mailbox);
    h.open(2, &mailbox);

    // A third side: crowded, on claim and on open.
    h.connect_bound(3, "a", "sideC");
    h.error(3, json!({"type": "claim", "nameplate": "123"}), "crowded");
    h.error(3, json!({"type": "open", "mailbox": mailbox}), "crowded");
    // Its open failed, so it cannot add.
    h.error(
        3,
        json!({"type": "add", "phase": "x", "body": ""}),
        errors::MUST_OPEN,
    );

    // The two legitimate sides still talk on their open connections...
    let out = h.send_all(1, json!({"type": "add", "phase": "pake", "body": "aa"}));
    assert_eq!(out.len(), 3, "ack plus an echo to each subscriber: {out:?}");
    // ...but (the quirk) a new open, or a close on a connection that did not open, is crowded
    // even for them.
    h.connect_bound(4, "a", "sideB");
    h.error(4, json!({"type": "open", "mailbox": mailbox}), "crowded");
    h.connect_bound(5, "a", "sideA");
    h.error(
        5,
        json!({"type": "close", "mailbox": mailbox, "mood": "happy"}),
        "crowded",
    );
    // A close on the connection that opened works.
    h.expect(
        1,
        json!({"type": "close", "mailbox": mailbox, "mood": "happy"}),
        json!({"type": "closed"}),
    );
    // The third side's claim keeps the nameplate listed after both legitimate sides release.
    h.expect(
        2,
        json!({"type": "release", "nameplate": "123"}),
        json!({"type": "released"}),
    );
    h.connect_bound(6, "a", "sideA");
    h.expect(
        6,
        json!({"type": "release", "nameplate": "123"}),
        json!({"type": "released"}),
    );
    assert_eq!(h.list(6), vec!["123"]);
}

#[test]
fn release_of_another_nameplate_than_claimed() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.claim(1, "123");
    h.error(
        1,
        json!({"type": "release", "nameplate": "999"}),
        "release and claim must use same nameplate",
    );
    h.error(
        1,
        json!({"type": "release", "nameplate": 123}),
        errors::RELEASE_SAME_NAMEPLATE,
    );
    h.expect(
        1,
        json!({"type": "release", "nameplate": "123"}),
        json!({"type": "released"}),
    );
    h.error(
        1,
        json!({"type": "release"}),
        "only one release per connection",
    );
}

#[test]
fn release_without_claim_needs_a_string() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.error(
        1,
        json!({"type": "release", "nameplate": []}),
        errors::RELEASE_NEEDS_STRING,
    );
    // Releasing a nameplate nobody holds is fine.
    h.expect(
        1,
        json!({"type": "release", "nameplate": "77"}),
        json!({"type": "released"}),
    );
}

#[test]
fn released_side_cannot_reclaim() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sideA");
    h.claim(1, "123");
    h.connect_bound(2, "a", "sideB");
    h.claim(2, "123");
    h.expect(2, json!({"type": "release"}), json!({"type": "released"}));
    h.connect_bound(3, "a", "sideB");
    h.error(3, json!({"type": "claim", "nameplate": "123"}), "reclaimed");
    // The same side on another connection may claim again while it still holds the claim.
    h.connect_bound(4, "a", "sideA");
    h.claim(4, "123");
}

#[test]
fn binary_frame_content_is_processed_like_text() {
    // The core takes the frame's text; a runner passes binary frames' bytes the same way.
    let mut h = Harness::new();
    h.connect(1);
    let bytes: &[u8] = br#"{"type": "ping", "ping": 1}"#;
    let text = std::str::from_utf8(bytes).expect("utf-8");
    let out = h.raw(1, text);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].1, json!({"type": "pong", "pong": 1}));
}

#[test]
fn open_of_unknown_mailbox_creates_it() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sideE");
    assert!(h.open(1, "zzzzzzzzzzzzz").is_empty());
    let out = h.send(
        1,
        json!({"type": "add", "phase": "x", "body": "", "id": "a1"}),
    );
    let rx = h.now;
    assert_eq!(
        out,
        vec![ack(Some("a1")), message("sideE", "x", "", rx, Some("a1"))]
    );
    assert!(h
        .relay
        .store()
        .mailbox("a", "zzzzzzzzzzzzz")
        .unwrap()
        .is_some());
}

#[test]
fn both_sides_close_deletes_the_mailbox() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    let nameplate = h.allocate(1);
    let mailbox = h.claim(1, &nameplate);
    h.open(1, &mailbox);
    h.send(1, json!({"type": "add", "phase": "pake", "body": "01"}));
    h.connect_bound(2, "a", "sb");
    h.claim(2, &nameplate);
    assert_eq!(h.open(2, &mailbox).len(), 1);

    h.expect(
        1,
        json!({"type": "close", "mood": "happy"}),
        json!({"type": "closed"}),
    );
    h.error(1, json!({"type": "close"}), "only one close per connection");
    // After its close, connection 1 hears nothing more.
    let out = h.send(2, json!({"type": "add", "phase": "0", "body": "03"}));
    assert_eq!(out.len(), 2);
    let stored = h
        .relay
        .store()
        .mailbox("a", &mailbox)
        .unwrap()
        .expect("still there");
    assert_eq!(stored.sides[0].mood.as_deref(), Some("happy"));

    h.expect(
        2,
        json!({"type": "close", "mailbox": mailbox, "mood": "happy"}),
        json!({"type": "closed"}),
    );
    assert!(h.relay.store().mailbox("a", &mailbox).unwrap().is_none());
    // The nameplate pointing at it went too.
    assert!(h.list(2).is_empty());
    // A later open of the same id gets an empty new mailbox.
    h.connect_bound(3, "a", "sc");
    assert!(h.open(3, &mailbox).is_empty());
}

#[test]
fn close_must_match_open() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.open(1, "m1");
    h.error(
        1,
        json!({"type": "close", "mailbox": "m2"}),
        "open and close must use same mailbox",
    );
    h.expect(
        1,
        json!({"type": "close", "mailbox": "m1"}),
        json!({"type": "closed"}),
    );
    // As in Python, a connection may open again after its close.
    assert!(h.open(1, "m1").is_empty());
}

#[test]
fn close_without_open_opens_implicitly() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    let mailbox = h.claim(1, "5");
    h.open(1, &mailbox);
    h.expect(
        1,
        json!({"type": "close", "mood": "lonely"}),
        json!({"type": "closed"}),
    );
    // The mailbox is gone (the only side closed); a reconnecting client re-sending `close`
    // still gets `closed`.
    h.connect_bound(2, "a", "sa");
    h.error(
        2,
        json!({"type": "close", "mailbox": 5}),
        errors::CLOSE_NEEDS_STRING,
    );
    h.expect(
        2,
        json!({"type": "close", "mailbox": mailbox}),
        json!({"type": "closed"}),
    );
    assert!(h.relay.store().mailbox("a", &mailbox).unwrap().is_none());
}

#[test]
fn allocate_on_three_fresh_connections_then_list_sorted() {
    let mut h = Harness::new();
    let mut allocated = Vec::new();
    for conn in 1..=3 {
        h.connect_bound(conn, "a", &format!("n{conn}"));
        allocated.push(h.allocate(conn));
    }
    h.connect_bound(9, "a", "lister");
    let mut sorted = allocated.clone();
    sorted.sort();
    assert_eq!(h.list(9), sorted);
    assert_eq!(allocated.iter().collect::<BTreeSet<_>>().len(), 3);
}

// ----- allocation ------------------------------------------------------------------------

fn allocate_many(h: &mut Harness, appid: &str, count: u64, first_conn: ConnId) -> Vec<String> {
    (0..count)
        .map(|i| {
            let conn = first_conn + i;
            h.connect_bound(conn, appid, &format!("side{conn}"));
            h.allocate(conn)
        })
        .collect()
}

#[test]
fn allocation_is_shortest_first() {
    let mut h = Harness::new();
    let first = allocate_many(&mut h, "a", 9, 1);
    let set: BTreeSet<u32> = first.iter().map(|n| n.parse().unwrap()).collect();
    assert_eq!(set, (1..=9).collect(), "the first 9 are 1–9: {first:?}");
    let tenth = allocate_many(&mut h, "a", 1, 100);
    assert_eq!(tenth[0].len(), 2, "{tenth:?}");
    assert!((10..=99).contains(&tenth[0].parse::<u32>().unwrap()));
}

#[test]
fn allocation_is_random_not_ascending() {
    let orders: BTreeSet<Vec<String>> = (0u8..4)
        .map(|seed| {
            let mut h = Harness::with(RelayConfig::default(), [seed; 32]);
            allocate_many(&mut h, "a", 9, 1)
        })
        .collect();
    assert!(orders.len() > 1, "different seeds give different orders");
    let ascending: Vec<String> = (1..=9).map(|n| n.to_string()).collect();
    assert!(orders.iter().any(|order| *order != ascending));
    // Deterministic for a seed.
    let again = allocate_many(
        &mut Harness::with(RelayConfig::default(), [0; 32]),
        "a",
        9,
        1,
    );
    assert!(orders.contains(&again));
}

#[test]
fn allocation_goes_to_three_digits_and_beyond() {
    let mut h = Harness::new();
    // Fill 1–999 by claiming directly (cheaper than allocating).
    h.connect_bound(1, "a", "filler");
    for n in 1..=999 {
        let conn = 10_000 + n;
        h.connect_bound(conn, "a", "filler");
        h.claim(conn, &n.to_string());
    }
    let next = allocate_many(&mut h, "a", 1, 2)[0].parse::<u32>().unwrap();
    assert!((1000..1_000_000).contains(&next), "{next}");
}

#[test]
fn nameplates_are_scoped_per_appid() {
    let mut h = Harness::new();
    h.connect_bound(1, "app1", "s1");
    let m1 = h.claim(1, "4");
    h.connect_bound(2, "app2", "s2");
    let m2 = h.claim(2, "4");
    assert_ne!(m1, m2, "the same number in two app ids is two nameplates");
    h.connect_bound(3, "app3", "s3");
    assert!(h.list(3).is_empty());
    assert_eq!(h.list(1), vec!["4"]);
    // Allocation in one app ignores the others.
    let first = allocate_many(&mut h, "app3", 9, 10);
    assert!(first.contains(&"4".to_owned()));
}

#[test]
fn release_frees_the_nameplate_for_reallocation() {
    let mut h = Harness::new();
    let all = allocate_many(&mut h, "a", 9, 1);
    // Release one of them: it is the only free one-digit id, so the next allocation takes it.
    let conn = 5;
    let freed = all[4].clone();
    h.expect(
        conn,
        json!({"type": "release", "nameplate": freed}),
        json!({"type": "released"}),
    );
    assert_eq!(h.list(conn).len(), 8);
    assert_eq!(allocate_many(&mut h, "a", 1, 50), vec![freed]);
}

#[test]
fn nameplate_stays_until_every_claimed_side_released() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    let n = h.allocate(1);
    h.connect_bound(2, "a", "sb");
    h.claim(2, &n);
    h.expect(
        1,
        json!({"type": "release", "nameplate": n}),
        json!({"type": "released"}),
    );
    assert_eq!(h.list(1), vec![n.clone()]);
    h.expect(2, json!({"type": "release"}), json!({"type": "released"}));
    assert!(h.list(1).is_empty());
}

#[test]
fn allocate_then_release_without_claim_needs_nameplate() {
    // As in Python, `allocate` claims in the store but does not count as this connection's claim.
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    let n = h.allocate(1);
    h.error(1, json!({"type": "release"}), errors::RELEASE_NEEDS_CLAIM);
    h.claim(1, &n);
    h.expect(1, json!({"type": "release"}), json!({"type": "released"}));
}

#[test]
fn list_is_sorted_as_strings_and_can_be_disallowed() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    for (conn, n) in [(2, "2"), (3, "10"), (4, "1")] {
        h.connect_bound(conn, "a", "s");
        h.claim(conn, n);
    }
    assert_eq!(h.list(1), vec!["1", "10", "2"]);

    let config = RelayConfig {
        allow_list: false,
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    h.connect_bound(1, "a", "s");
    h.claim(1, "3");
    assert!(h.list(1).is_empty());
}

// ----- messages --------------------------------------------------------------------------

#[test]
fn add_echoes_to_every_subscriber_and_replays_in_server_rx_order() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.open(1, "m");
    h.connect_bound(2, "a", "sb");
    h.open(2, "m");
    let out = h.send_all(
        1,
        json!({"type": "add", "phase": "pake", "body": "aa", "id": "x"}),
    );
    let rx_a = h.now;
    let expected = message("sa", "pake", "aa", rx_a, Some("x"));
    assert_eq!(out[0], (1, ack(Some("x"))));
    let echoes: BTreeSet<ConnId> = out[1..].iter().map(|(c, _)| *c).collect();
    assert_eq!(echoes, BTreeSet::from([1, 2]));
    assert!(out[1..].iter().all(|(_, frame)| *frame == expected));

    let out = h.send_all(2, json!({"type": "add", "phase": "pake", "body": "bb"}));
    let rx_b = h.now;
    assert_eq!(out.len(), 3);
    assert!(out[1..]
        .iter()
        .all(|(_, f)| *f == message("sb", "pake", "bb", rx_b, None)));

    // A disconnected connection hears nothing more.
    h.relay.disconnected(2);
    let out = h.send_all(1, json!({"type": "add", "phase": "0", "body": "cc"}));
    let rx_c = h.now;
    assert_eq!(out.iter().filter(|(c, _)| *c == 2).count(), 0);

    h.connect_bound(3, "a", "sb");
    assert_eq!(
        h.open(3, "m"),
        vec![
            expected,
            message("sb", "pake", "bb", rx_b, None),
            message("sa", "0", "cc", rx_c, None)
        ]
    );
}

#[test]
fn non_string_ids_are_echoed_verbatim() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.open(1, "m");
    let out = h.send(
        1,
        json!({"type": "add", "phase": "p", "body": "", "id": 17}),
    );
    assert_eq!(out[0], json!({"type": "ack", "id": 17}));
    assert_eq!(out[1]["id"], json!(17));
}

// ----- welcome ---------------------------------------------------------------------------

#[test]
fn welcome_carries_address_and_configured_fields() {
    let mut h = Harness::new();
    h.relay
        .connected(1, Some("127.0.0.1:49044".parse().unwrap()), T0);
    h.now = T0;
    let out = h.drain();
    assert_eq!(
        out,
        vec![(
            1,
            json!({"type": "welcome", "welcome": {"your-address": {"port": 49044, "ipv4": "127.0.0.1"}}})
        )]
    );
    h.relay.connected(2, Some("[::1]:5".parse().unwrap()), T0);
    assert_eq!(
        h.drain()[0].1["welcome"]["your-address"],
        json!({"port": 5, "ipv6": "::1"})
    );
    assert_eq!(h.connect(3), json!({"type": "welcome", "welcome": {}}));

    let config = RelayConfig {
        motd: Some("hi".into()),
        advertise_version: Some("0.24.0".into()),
        signal_error: Some("closed".into()),
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    assert_eq!(
        h.connect(1),
        json!({"type": "welcome", "welcome": {"motd": "hi", "current_cli_version": "0.24.0", "error": "closed"}})
    );
}

// ----- pruning ---------------------------------------------------------------------------

#[test]
fn prune_deletes_mailboxes_idle_for_eleven_minutes() {
    // Python's rule alone: without ours for abandoned single-side nameplates (limits_tests).
    let limits = Limits {
        abandoned_nameplate_secs: 3600.0,
        ..Limits::default()
    };
    let config = RelayConfig {
        limits,
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    h.connect_bound(1, "a", "sa");
    let n = h.allocate(1);
    let mailbox = h.claim(1, &n);
    h.open(1, &mailbox);
    h.send(1, json!({"type": "add", "phase": "pake", "body": "aa"}));
    let last_activity = h.now;
    h.relay.disconnected(1);

    assert_eq!(h.relay.prune(last_activity + 659.0), 0);
    assert!(h.relay.store().mailbox("a", &mailbox).unwrap().is_some());
    assert_eq!(h.relay.prune(last_activity + 660.0), 1);
    assert!(h.relay.store().mailbox("a", &mailbox).unwrap().is_none());
    assert!(h.relay.store().messages("a", &mailbox).unwrap().is_empty());
    // Its nameplate went too, and the store is empty.
    assert!(h.relay.store().nameplate("a", &n).unwrap().is_none());
    assert_eq!(h.relay.store(), &MemoryStore::default());
}

#[test]
fn prune_spares_mailboxes_with_a_live_subscriber() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.open(1, "m");
    let start = h.now;
    // Each prune touches it, so it never gets old while the connection listens.
    for minutes in [5.0, 10.0, 15.0, 20.0, 25.0] {
        assert_eq!(h.relay.prune(start + minutes * 60.0), 0);
    }
    let touched = start + 25.0 * 60.0;
    assert_eq!(
        h.relay.store().mailbox("a", "m").unwrap().unwrap().updated,
        touched
    );
    h.relay.disconnected(1);
    assert_eq!(h.relay.prune(touched + 5.0 * 60.0), 0);
    assert_eq!(h.relay.prune(touched + 11.0 * 60.0), 1);
}

#[test]
fn custom_expiration() {
    let config = RelayConfig {
        channel_expiration_secs: 10.0,
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    h.connect_bound(1, "a", "sa");
    h.open(1, "m");
    h.relay.disconnected(1);
    assert_eq!(h.relay.prune(h.now + 10.0), 1);
}

// ----- bad frames ------------------------------------------------------------------------

#[test]
fn oversized_frame_is_refused_and_the_connection_stays_usable() {
    let config = RelayConfig {
        max_frame_bytes: 64,
        ..RelayConfig::default()
    };
    let mut h = Harness::with(config, [1; 32]);
    h.connect_bound(1, "a", "s");
    let big = json!({"type": "ping", "ping": 1, "pad": "x".repeat(100)}).to_string();
    let out = h.raw(1, &big);
    assert_eq!(
        out,
        vec![(
            1,
            json!({"type": "error", "error": errors::FRAME_TOO_LARGE, "orig": null})
        )]
    );
    h.expect(
        1,
        json!({"type": "ping", "ping": 2}),
        json!({"type": "pong", "pong": 2}),
    );
}

#[test]
fn malformed_and_non_object_frames() {
    let mut h = Harness::new();
    h.connect(1);
    for text in ["{", "", "not json", "{\"type\": \"ping\",}", "\u{0}"] {
        let out = h.raw(1, text);
        assert_eq!(
            out,
            vec![(
                1,
                json!({"type": "error", "error": errors::MALFORMED_JSON, "orig": text})
            )]
        );
    }
    for value in [json!([1, 2]), json!("ping"), json!(3), json!(null)] {
        let out = h.raw(1, &value.to_string());
        assert_eq!(
            out,
            vec![(
                1,
                json!({"type": "error", "error": errors::NOT_AN_OBJECT, "orig": value})
            )]
        );
    }
    h.expect(
        1,
        json!({"type": "ping", "ping": 3}),
        json!({"type": "pong", "pong": 3}),
    );
}

#[test]
fn frames_on_an_unknown_connection_do_not_panic() {
    let mut h = Harness::new();
    let out = h.send(42, json!({"type": "list"}));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["error"], "must bind first");
    h.relay.disconnected(42);
    h.relay.disconnected(43);
}

#[test]
fn reused_connection_id_starts_afresh() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    h.open(1, "m");
    h.connect(1);
    h.error(1, json!({"type": "list"}), errors::MUST_BIND_FIRST);
    h.connect_bound(2, "a", "t");
    h.open(2, "m");
    let out = h.send_all(2, json!({"type": "add", "phase": "p", "body": ""}));
    assert!(
        out.iter().all(|(c, _)| *c == 2),
        "the old subscription is gone: {out:?}"
    );
}

// ----- store failures --------------------------------------------------------------------

/// A store that fails every call while its switch is on, or (with `fail_at`) the n-th call
/// from now (counting from 0, reads and writes alike).
struct FailingStore {
    inner: MemoryStore,
    failing: Rc<Cell<bool>>,
    fail_at: Rc<Cell<Option<usize>>>,
}

impl FailingStore {
    fn new() -> Self {
        FailingStore {
            inner: MemoryStore::default(),
            failing: Rc::default(),
            fail_at: Rc::default(),
        }
    }
}

impl MailboxStore for FailingStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (failing, fail_at) = (self.failing.clone(), self.fail_at.clone());
        self.inner.transaction(&mut |tx| {
            work(&mut FailingTables {
                inner: tx,
                failing: &failing,
                fail_at: &fail_at,
            })
        })
    }
}

struct FailingTables<'a> {
    inner: &'a mut dyn MailboxTables,
    failing: &'a Cell<bool>,
    fail_at: &'a Cell<Option<usize>>,
}

impl FailingTables<'_> {
    fn check(&self) -> Result<(), StoreError> {
        let due = match self.fail_at.get() {
            Some(0) => true,
            Some(n) => {
                self.fail_at.set(Some(n - 1));
                false
            }
            None => false,
        };
        if due {
            self.fail_at.set(None);
        }
        if self.failing.get() || due {
            Err(StoreError::Backend("disk on fire".into()))
        } else {
            Ok(())
        }
    }
}

impl MailboxTables for FailingTables<'_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.app_ids()
    }
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.nameplate_names(appid)
    }
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.check()?;
        self.inner.nameplate(appid, name)
    }
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_nameplate(appid, name, mailbox_id)
    }
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_nameplate_side(appid, name, side)
    }
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplate(appid, name)
    }
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplate_sides_of(appid, side)
    }
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplates_for_mailbox(appid, mailbox_id)
    }
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.mailbox_ids(appid)
    }
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.check()?;
        self.inner.mailbox(appid, id)
    }
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_mailbox(appid, id, for_nameplate, updated)
    }
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_mailbox_side(appid, id, side)
    }
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch_mailbox(appid, id, when)
    }
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_mailbox(appid, id)
    }
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_message(appid, mailbox_id, message)
    }
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.check()?;
        self.inner.messages(appid, mailbox_id)
    }
}

#[test]
fn store_failure_becomes_an_error_frame() {
    let store = FailingStore::new();
    let failing = store.failing.clone();
    let mut h = Harness::with_store(RelayConfig::default(), store, [1; 32]);
    h.connect(1);
    h.expect_ack(1, json!({"type": "bind", "appid": "a", "side": "s"}));
    let mailbox = {
        let out = h.send(1, json!({"type": "claim", "nameplate": "1"}));
        out[1]["mailbox"].as_str().unwrap().to_owned()
    };
    failing.set(true);
    for frame in [
        json!({"type": "list"}),
        json!({"type": "allocate"}),
        json!({"type": "open", "mailbox": mailbox}),
    ] {
        let out = h.send(1, frame.clone());
        assert_eq!(
            out,
            vec![
                ack(None),
                json!({"type": "error", "error": errors::INTERNAL, "orig": frame})
            ]
        );
    }
    assert_eq!(h.relay.prune(h.now + 1e6), 0);
    // Ping needs no store, and the connection recovers with the store.
    let out = h.send(1, json!({"type": "ping", "ping": 1}));
    assert_eq!(out[1], json!({"type": "pong", "pong": 1}));
    failing.set(false);
    let out = h.send(1, json!({"type": "list"}));
    assert_eq!(
        out[1],
        json!({"type": "nameplates", "nameplates": [{"id": "1"}]})
    );
    let out = h.send(1, json!({"type": "open", "mailbox": mailbox}));
    assert_eq!(out, vec![ack(None)]);
}

// ----- helpers ---------------------------------------------------------------------------

#[test]
fn base32_matches_rfc4648() {
    // RFC 4648 §10 test vectors, lower-cased and without padding.
    for (input, expected) in [
        ("", ""),
        ("f", "my"),
        ("fo", "mzxq"),
        ("foo", "mzxw6"),
        ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ] {
        assert_eq!(base32_lower(input.as_bytes()), expected);
    }
    assert_eq!(base32_lower(&[0xff; 8]), "7777777777776");
    assert_eq!(base32_lower(&[0; 8]).len(), 13);
}

#[test]
fn mailbox_ids_are_13_base32_characters() {
    let mut h = Harness::new();
    let mut seen = BTreeSet::new();
    for conn in 1..=20 {
        h.connect_bound(conn, "a", "s");
        let mailbox = h.claim(conn, &conn.to_string());
        assert_eq!(mailbox.len(), 13, "{mailbox}");
        assert!(mailbox
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        seen.insert(mailbox);
    }
    assert_eq!(seen.len(), 20);
}

#[test]
fn memory_store_round_trips_through_serde() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "s");
    let mailbox = h.claim(1, "12");
    h.open(1, &mailbox);
    h.send(
        1,
        json!({"type": "add", "phase": "pake", "body": "ab", "id": "i"}),
    );
    let json = serde_json::to_string(h.relay.store()).unwrap();
    let back: MemoryStore = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, h.relay.store());
}

// ----- transactions ----------------------------------------------------------------------

#[test]
fn replays_follow_insertion_order_even_when_the_clock_steps_back() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.open(1, "m");
    h.send(1, json!({"type": "add", "phase": "0", "body": "first"}));
    let first_rx = h.now;
    // The wall clock steps back ten seconds (NTP) before the second add.
    h.now -= 10.0;
    h.send(1, json!({"type": "add", "phase": "1", "body": "second"}));
    let second_rx = h.now;
    assert!(second_rx < first_rx);
    h.connect_bound(2, "a", "sb");
    assert_eq!(
        h.open(2, "m"),
        vec![
            message("sa", "0", "first", first_rx, None),
            message("sa", "1", "second", second_rx, None),
        ]
    );
}

/// Runs `frame` on connection 2 (bound as side `sb` after `setup` ran on a fresh relay) with the
/// store failing at its k-th call, for every k until the command goes through. Every failed
/// attempt must answer `internal server error` and leave the tables exactly as before; the
/// retry then behaves as on a store that never failed (so the connection's state was left
/// alone too), except that `allocate` draws fresh randomness (compared without the nameplate).
/// Returns the successful replies.
fn fails_atomically(setup: impl Fn(&mut Harness<FailingStore>), frame: Value) -> Vec<Value> {
    let fresh = || {
        let mut h = Harness::with_store(RelayConfig::default(), FailingStore::new(), [1; 32]);
        setup(&mut h);
        h.connect_bound(2, "a", "sb");
        h
    };
    // The replies without failures, with a relay in the same state and the same randomness.
    let expected = fresh().send(2, frame.clone());
    let mut h = fresh();
    for k in 0.. {
        assert!(k < 100, "{frame}: still failing after {k} store calls");
        let before = h.relay.store().inner.clone();
        h.relay.store().fail_at.set(Some(k));
        let out = h.send(2, frame.clone());
        let failed = h.relay.store().fail_at.get().is_none();
        h.relay.store().fail_at.set(None);
        if !failed {
            // The command made fewer than k+1 calls: it went through.
            let fresh_draw = |mut frames: Vec<Value>| {
                if let Some(nameplate) = frames.get_mut(1).and_then(|f| f.get_mut("nameplate")) {
                    *nameplate = json!("any");
                }
                frames
            };
            assert_eq!(
                fresh_draw(out.clone()),
                fresh_draw(expected),
                "{frame}: the retry after {k} failures"
            );
            return out;
        }
        assert_eq!(
            out,
            vec![
                ack(None),
                json!({"type": "error", "error": errors::INTERNAL, "orig": frame})
            ],
            "{frame}: failing at call {k}"
        );
        assert_eq!(
            h.relay.store().inner,
            before,
            "{frame}: failing at call {k} left changes behind"
        );
    }
    unreachable!()
}

#[test]
fn a_store_error_at_any_point_rolls_the_whole_command_back() {
    // Side sa has claimed nameplate 5, opened its mailbox and added a message.
    let claimed = |h: &mut Harness<FailingStore>| {
        h.connect_bound(1, "a", "sa");
        let mailbox = h.claim(1, "5");
        h.open(1, &mailbox);
        h.send(1, json!({"type": "add", "phase": "pake", "body": "aa"}));
    };
    let mut probe = Harness::with_store(RelayConfig::default(), FailingStore::new(), [1; 32]);
    claimed(&mut probe);
    let mailbox = probe
        .relay
        .store()
        .inner
        .nameplate("a", "5")
        .unwrap()
        .unwrap()
        .mailbox_id;

    let out = fails_atomically(claimed, json!({"type": "claim", "nameplate": "5"}));
    assert_eq!(out[1]["mailbox"], json!(mailbox));
    fails_atomically(claimed, json!({"type": "allocate"}));
    let out = fails_atomically(claimed, json!({"type": "open", "mailbox": mailbox}));
    assert_eq!(out.len(), 2, "ack and the replayed message: {out:?}");
    // Side sb has the mailbox open too (add and close need it).
    let both = |h: &mut Harness<FailingStore>| {
        claimed(h);
        h.connect_bound(3, "a", "sb");
        h.claim(3, "5");
    };
    fails_atomically(both, json!({"type": "release", "nameplate": "5"}));
    let both_open = |h: &mut Harness<FailingStore>| {
        both(h);
        h.open(
            3,
            &h.relay
                .store()
                .inner
                .nameplate("a", "5")
                .unwrap()
                .unwrap()
                .mailbox_id
                .clone(),
        );
    };
    // A close that deletes the mailbox (sa closed first) and one that opens it implicitly.
    fails_atomically(
        |h| {
            both_open(h);
            h.send(1, json!({"type": "close"}));
        },
        json!({"type": "close", "mailbox": mailbox, "mood": "happy"}),
    );
    // A third side's claim is refused as crowded, and its rows stay (the quirk), atomically.
    let crowded = |h: &mut Harness<FailingStore>| {
        claimed(h);
        h.connect_bound(4, "a", "sc");
        h.claim(4, "5");
    };
    let out = fails_atomically(crowded, json!({"type": "claim", "nameplate": "5"}));
    assert_eq!(out[1]["error"], json!(errors::CROWDED));
}

#[test]
fn a_refused_claim_commits_the_rows_written_before_the_refusal() {
    let mut h = Harness::new();
    for (conn, side) in [(1, "sa"), (2, "sb")] {
        h.connect_bound(conn, "a", side);
        h.claim(conn, "4");
    }
    h.connect_bound(3, "a", "sc");
    h.error(
        3,
        json!({"type": "claim", "nameplate": "4"}),
        errors::CROWDED,
    );
    let record = h.relay.store().nameplate("a", "4").unwrap().unwrap();
    assert_eq!(record.sides.len(), 3, "the crowded side's row was kept");
    let mailbox = h
        .relay
        .store()
        .mailbox("a", &record.mailbox_id)
        .unwrap()
        .unwrap();
    assert_eq!(mailbox.sides.len(), 3);
}

#[test]
fn a_batch_holds_its_outputs_until_it_commits() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.relay.begin_batch();
    h.tick();
    h.relay
        .received(1, r#"{"type": "claim", "nameplate": "3"}"#, h.now);
    h.relay.received(1, r#"{"type": "ping", "ping": 8}"#, h.now);
    assert_eq!(h.relay.poll_output(), None, "held while the batch is open");
    h.relay.end_batch();
    let out: Vec<Value> = h.drain().into_iter().map(|(_, f)| f).collect();
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[1]["type"], json!("claimed"));
    assert_eq!(out[3], json!({"type": "pong", "pong": 8}));
}

/// A store whose batches fail to commit (a [`MemoryStore`] cannot lose them, so the rows
/// stay: this tests only what the relay does about it).
#[derive(Default)]
struct UncommittableStore(MemoryStore);

impl MailboxStore for UncommittableStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.0.transaction(work)
    }
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Err(StoreError::Backend("disk full".into()))
    }
}

#[test]
fn a_batch_that_fails_to_commit_drops_its_replies_and_closes_its_connections() {
    let mut h = Harness::with_store(
        RelayConfig::default(),
        UncommittableStore::default(),
        [1; 32],
    );
    h.connect_bound(1, "a", "sa");
    h.connect_bound(2, "a", "sb");
    h.connect_bound(3, "a", "sc");
    h.relay.begin_batch();
    h.tick();
    h.relay
        .received(1, r#"{"type": "claim", "nameplate": "3"}"#, h.now);
    h.relay.received(2, r#"{"type": "list"}"#, h.now);
    h.relay.end_batch();
    let mut closed = Vec::new();
    while let Some(out) = h.relay.poll_output() {
        match out {
            RelayOutput::Close { conn } => closed.push(conn),
            RelayOutput::Send { conn, frame } => panic!("{conn} was sent {frame}"),
        }
    }
    assert_eq!(closed, [1, 2], "the connections of the lost batch, not 3");
    // They are forgotten: a frame on 1 is as on a fresh connection (not bound).
    h.error(1, json!({"type": "list"}), errors::MUST_BIND_FIRST);
    let out = h.send(3, json!({"type": "ping", "ping": 1}));
    assert_eq!(out[1], json!({"type": "pong", "pong": 1}), "3 is untouched");
}
