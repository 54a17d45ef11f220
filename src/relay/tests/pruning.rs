//! Pruning: idle mailboxes deleted after their expiration, live subscribers spared.

use super::*;

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
