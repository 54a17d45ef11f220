//! Messages: echoes to every subscriber, replay order, and ids echoed verbatim.

use std::collections::BTreeSet;

use super::*;

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
