//! Bad frames: oversized, malformed and non-object frames, unknown and reused connection
//! ids.

use super::*;

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
