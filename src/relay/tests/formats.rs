//! The relay's encodings: base32 (RFC 4648, lower case), mailbox ids, and the memory store's
//! serde round trip.

use std::collections::BTreeSet;

use crate::relay::tables::base32_lower;

use super::*;

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
