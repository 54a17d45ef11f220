//! The Redis store's per-mailbox usage against a real `redis-server`: the message and byte
//! limits across relay processes (and under concurrent adds), the byte counter, and the round
//! trips an exchange costs.

use serde_json::{json, Value};

use super::tests::{drain, quick, send, TestRedis};
use super::RedisStore;
use crate::relay::{MailboxStore, Relay, RelayConfig};

#[test]
fn mailbox_limits_hold_across_relays_on_one_redis() {
    let redis = TestRedis::start();
    crate::relay::limits_tests::spread_adds_are_limited_exactly(redis.store(), redis.store());
}

#[test]
fn a_mailbox_without_a_byte_counter_is_counted_once_and_gets_one() {
    use crate::relay::{MailboxUsage, StoredMessage};
    let redis = TestRedis::start();
    let mut store = redis.store();
    let message = |body: &str| StoredMessage {
        side: "s".into(),
        phase: "p".into(),
        body: body.into(),
        server_rx: 1.0,
        msg_id: Some(json!("id")),
    };
    store
        .transaction(&mut |tx| {
            tx.insert_mailbox("x", "m", false, 1.0)?;
            tx.add_message("x", "m", message("abc"))?;
            tx.add_message("x", "m", message("de"))
        })
        .unwrap();
    // Each counts side + phase + body + `"id"` (4 bytes as JSON): 9 + 8.
    let expected = MailboxUsage {
        messages: 2,
        bytes: 17,
    };
    let usage = |store: &mut RedisStore| {
        store
            .transaction(&mut |tx| tx.mailbox_usage("x", "m"))
            .unwrap()
    };
    assert_eq!(usage(&mut store), expected);
    // As a mailbox written before the counter existed: counted from its messages, and the
    // count is stored with the transaction.
    let counter = super::keys::Keys::new("wormhole").message_bytes("x", "m");
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let get = |con: &mut redis::Connection| -> Option<usize> {
        redis::cmd("GET").arg(&counter).query(con).unwrap()
    };
    assert_eq!(get(&mut con), Some(17));
    redis::cmd("DEL").arg(&counter).exec(&mut con).unwrap();
    assert_eq!(usage(&mut store), expected);
    assert_eq!(get(&mut con), Some(17));
    store
        .transaction(&mut |tx| tx.add_message("x", "m", message("f")))
        .unwrap();
    assert_eq!(get(&mut con), Some(24));
    // Deleting the mailbox deletes its counter.
    store
        .transaction(&mut |tx| tx.delete_mailbox("x", "m"))
        .unwrap();
    assert_eq!(get(&mut con), None);
}

#[test]
fn concurrent_adds_on_several_processes_stop_at_the_limit_exactly() {
    let redis = TestRedis::start();
    let config = RelayConfig {
        limits: crate::relay::Limits {
            messages_per_mailbox: 10,
            ..crate::relay::Limits::default()
        },
        ..RelayConfig::default()
    };
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let (url, config) = (redis.url(), config.clone());
            std::thread::spawn(move || {
                let store = RedisStore::open(&url, quick()).expect("connect");
                let mut relay = Relay::new(config, store, [t; 32]);
                relay.connected(1, None, 1000.0);
                drain(&mut relay);
                // One side for all: a third side would make the mailbox crowded.
                let side = "s";
                send(
                    &mut relay,
                    1,
                    json!({"type": "bind", "appid": "x", "side": side}),
                );
                send(&mut relay, 1, json!({"type": "open", "mailbox": "m"}));
                let mut admitted = 0;
                for i in 0..8 {
                    let out = send(
                        &mut relay,
                        1,
                        json!({"type": "add", "phase": i.to_string(), "body": "aa"}),
                    );
                    match out.iter().find(|(_, f)| f["type"] == "error") {
                        None => admitted += 1,
                        Some((_, f)) => {
                            assert_eq!(f["error"], crate::relay::Limit::MailboxMessages.error())
                        }
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    assert_eq!(admitted, 10);
    let mut store = redis.store();
    let held = store
        .transaction(&mut |tx| tx.message_count("x", "m"))
        .unwrap();
    assert_eq!(held, 10);
}

/// Round trips to Redis of each command of one exchange (as `benches/relay_store.rs` drives
/// it, with `background` other pairs open).
fn round_trips_per_command(background: u64) -> Vec<(String, u64)> {
    let redis = TestRedis::start();
    let mut relay = Relay::new(RelayConfig::default(), redis.store(), [7; 32]);
    let mut trips = Vec::new();
    for n in 0..=background {
        let (a, b) = (2 * n, 2 * n + 1);
        let mut step = |relay: &mut Relay<RedisStore>, conn: u64, frame: Value| {
            let kind = frame["type"].as_str().unwrap_or("?").to_owned();
            let before = relay.store().round_trips();
            let out = send(relay, conn, frame);
            if n == background {
                trips.push((kind, relay.store().round_trips() - before));
            }
            out
        };
        relay.connected(a, None, 1000.0);
        relay.connected(b, None, 1000.0);
        drain(&mut relay);
        step(
            &mut relay,
            a,
            json!({"type": "bind", "appid": "bench", "side": format!("a{n}")}),
        );
        step(
            &mut relay,
            b,
            json!({"type": "bind", "appid": "bench", "side": format!("b{n}")}),
        );
        let out = step(&mut relay, a, json!({"type": "allocate"}));
        let nameplate = out[1].1["nameplate"].clone();
        let mut mailbox = Value::Null;
        for c in [a, b] {
            let out = step(
                &mut relay,
                c,
                json!({"type": "claim", "nameplate": nameplate}),
            );
            mailbox = out[1].1["mailbox"].clone();
        }
        for c in [a, b] {
            step(&mut relay, c, json!({"type": "open", "mailbox": mailbox}));
            step(
                &mut relay,
                c,
                json!({"type": "add", "phase": "pake", "body": "00"}),
            );
        }
        if n < background {
            continue;
        }
        for c in [a, b] {
            step(
                &mut relay,
                c,
                json!({"type": "release", "nameplate": nameplate}),
            );
            step(&mut relay, c, json!({"type": "close", "mood": "happy"}));
        }
    }
    trips
}

/// The round trips of an exchange do not grow unnoticed: with 100 other pairs open, 41 when
/// they were first counted, 34 since a mailbox's record and usage are read together and an
/// `open` checks for the mailbox in its own transaction.
#[test]
fn round_trips_of_an_exchange() {
    let trips = round_trips_per_command(100);
    let total: u64 = trips.iter().map(|(_, n)| n).sum();
    eprintln!("round trips per command: {trips:?}, total {total}");
    assert!(total <= 34, "{trips:?}");
    // An add: its mailbox's record and usage in one read, then the commit.
    assert!(trips
        .iter()
        .filter(|(kind, _)| kind == "add")
        .all(|(_, n)| *n == 2));
    assert!(trips
        .iter()
        .filter(|(kind, _)| kind == "bind")
        .all(|(_, n)| *n == 0));
}
