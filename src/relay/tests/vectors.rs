//! test-vectors.md §7, row by row: each probe of the relay's behaviour (binding, listing,
//! claims, opens, adds, releases, closes and their errors) as the table gives it.

use std::collections::BTreeSet;

use super::*;

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
