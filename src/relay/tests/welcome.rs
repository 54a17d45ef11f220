//! The welcome frame: the connection's address and the configured fields.

use super::*;

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
