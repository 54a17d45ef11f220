//! The Redis store against a real `redis-server` each test starts on a loopback port, with a
//! data directory of its own. Without `redis-server` on the PATH these tests fail and say so.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{RedisOptions, RedisStore};
use crate::relay::shared::{SharedMemoryStore, SharedStore};
use crate::relay::store_tests::{differential, dump, tables_behave};
use crate::relay::{
    MailboxChange, MailboxStore, MemoryStore, Relay, RelayConfig, RelayOutput, StoreError,
};

/// A `redis-server` of this test: loopback, a free port, its own directory; killed on drop.
pub(super) struct TestRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl TestRedis {
    pub(super) fn start() -> TestRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        TestRedis::start_on(port)
    }

    fn start_on(port: u16) -> TestRedis {
        let dir =
            std::env::temp_dir().join(format!("wormhole-redis-unit-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis data dir");
        ensure_redis_server();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need redis-server on the PATH (apt-get install redis-server): {e}"
                )
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TestRedis { child, port, dir }
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(super) fn store(&self) -> RedisStore {
        RedisStore::open(&self.url(), quick()).expect("connect to the test redis")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(super) fn quick() -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_secs(2),
        reconnect_delay: Duration::from_millis(50),
        ..RedisOptions::default()
    }
}

pub(super) fn drain<S: MailboxStore>(relay: &mut Relay<S>) -> Vec<(u64, Value)> {
    std::iter::from_fn(|| relay.poll_output())
        .filter_map(|out| match out {
            RelayOutput::Send { conn, frame } => {
                let mut v: Value = serde_json::from_str(&frame).ok()?;
                v.as_object_mut()?.remove("server_tx");
                Some((conn, v))
            }
            RelayOutput::Close { .. } => None,
        })
        .collect()
}

pub(super) fn send<S: MailboxStore>(
    relay: &mut Relay<S>,
    conn: u64,
    frame: Value,
) -> Vec<(u64, Value)> {
    relay.received(conn, &frame.to_string(), 1000.0);
    drain(relay)
}

#[test]
fn redis_store_tables_behave() {
    let redis = TestRedis::start();
    tables_behave(redis.store());
}

#[test]
fn relays_on_memory_and_redis_answer_byte_for_byte_alike() {
    let redis = TestRedis::start();
    for seed in 0..2u8 {
        let mut store = redis.store();
        store.options.prefix = format!("seed{seed}");
        store.keys = super::Keys::new(&store.options.prefix);
        let mut memory = Relay::new(RelayConfig::default(), MemoryStore::default(), [seed; 32]);
        let mut on_redis = Relay::new(RelayConfig::default(), store, [seed; 32]);
        // The same random life through both; compare outputs step by step.
        let mut compared = 0;
        for step_seed in 0..3u64 {
            let seed = u64::from(seed) * 10 + step_seed;
            compared += differential_pair(&mut memory, &mut on_redis, seed, 700);
        }
        assert!(compared > 2000, "only {compared} frames compared");
        let mut memory_store = memory.store().clone();
        assert_eq!(dump(&mut memory_store), dump(&mut on_redis.store));
    }
    // The harness itself agrees with itself.
    let mut relays: Vec<_> = (0..2)
        .map(|_| Relay::new(RelayConfig::default(), MemoryStore::default(), [3; 32]))
        .collect();
    assert!(differential(&mut relays, 1, 200) > 200);
}

/// `differential` for two relays of different store types.
fn differential_pair(
    a: &mut Relay<MemoryStore>,
    b: &mut Relay<RedisStore>,
    seed: u64,
    steps: usize,
) -> usize {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut now = 1.0e9 + seed as f64 * 1e4;
    let mut compared = 0;
    for step in 0..steps {
        now += rng.gen_range(0.0..2.0);
        let conn = rng.gen_range(0..12u64);
        let action = rng.gen_range(0..40);
        let frame = crate::relay::store_tests::random_frame(&mut rng);
        let outs: Vec<Vec<RelayOutput>> = [0, 1]
            .into_iter()
            .map(|which| {
                use crate::relay::store_tests::apply_action;
                if which == 0 {
                    apply_action(a, action, conn, &frame, now)
                } else {
                    apply_action(b, action, conn, &frame, now)
                }
            })
            .collect();
        assert_eq!(outs[0], outs[1], "step {step}: {frame}");
        compared += outs[0].len();
    }
    compared
}

/// Two relays (as two processes) on one store: a side on each. The feed of each carries the
/// other's messages; each listener gets every message once, in insertion order.
fn two_relays_exchange<S: SharedStore>(a: S, b: S) {
    let mut feed_a = a.changes();
    let mut feed_b = b.changes();
    let mut ra = Relay::new(RelayConfig::default(), a, [1; 32]);
    let mut rb = Relay::new(RelayConfig::default(), b, [2; 32]);
    ra.connected(1, None, 1000.0);
    rb.connected(2, None, 1000.0);
    drain(&mut ra);
    drain(&mut rb);
    send(
        &mut ra,
        1,
        json!({"type": "bind", "appid": "x", "side": "sa"}),
    );
    send(
        &mut rb,
        2,
        json!({"type": "bind", "appid": "x", "side": "sb"}),
    );
    let out = send(&mut ra, 1, json!({"type": "allocate"}));
    let nameplate = out[1].1["nameplate"]
        .as_str()
        .expect("allocated")
        .to_owned();
    let out = send(&mut rb, 2, json!({"type": "claim", "nameplate": nameplate}));
    let mailbox = out[1].1["mailbox"].as_str().expect("claimed").to_owned();
    let out = send(&mut ra, 1, json!({"type": "claim", "nameplate": nameplate}));
    assert_eq!(out[1].1["mailbox"], json!(mailbox), "{out:?}");
    send(&mut ra, 1, json!({"type": "open", "mailbox": mailbox}));
    send(&mut rb, 2, json!({"type": "open", "mailbox": mailbox}));
    // A adds two, B adds one before hearing of A's: each sees all three once, in order.
    send(
        &mut ra,
        1,
        json!({"type": "add", "phase": "pake", "body": "a1"}),
    );
    send(
        &mut ra,
        1,
        json!({"type": "add", "phase": "version", "body": "a2"}),
    );
    let b_out = send(
        &mut rb,
        2,
        json!({"type": "add", "phase": "pake", "body": "b1"}),
    );
    let bodies = |out: &[(u64, Value)]| -> Vec<String> {
        out.iter()
            .filter(|(_, v)| v["type"] == "message")
            .map(|(_, v)| v["body"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    // B's own add caught B up: A's two first, then its own.
    assert_eq!(bodies(&b_out), ["a1", "a2", "b1"]);
    // A hears of B's message through its feed (the repeats of its own send nothing).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut a_seen = Vec::new();
    while a_seen.is_empty() {
        assert!(Instant::now() < deadline, "A never heard of B's message");
        while let Ok(change) = feed_a.try_recv() {
            ra.shared_change(change, 1001.0);
        }
        a_seen.extend(bodies(&drain(&mut ra)));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(a_seen, ["b1"]);
    // B's feed repeats everything; B has it all already.
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(change) = feed_b.try_recv() {
        rb.shared_change(change, 1001.0);
    }
    assert!(bodies(&drain(&mut rb)).is_empty());
    // A resync sends nothing new either.
    ra.shared_change(MailboxChange::Resync, 1002.0);
    assert!(drain(&mut ra).is_empty());
    // A closes, B closes: the mailbox is gone for both.
    send(&mut ra, 1, json!({"type": "close", "mood": "happy"}));
    let out = send(&mut rb, 2, json!({"type": "close", "mood": "happy"}));
    assert_eq!(out[1].1["type"], "closed");
}

#[test]
fn two_relays_on_one_redis_echo_each_others_messages_once_in_order() {
    let redis = TestRedis::start();
    two_relays_exchange(redis.store(), redis.store());
}

#[test]
fn two_relays_on_one_shared_memory_store_do_the_same() {
    let shared = SharedMemoryStore::new();
    two_relays_exchange(shared.clone(), shared.clone());
    assert!(shared.snapshot().is_empty());
}

#[test]
fn concurrent_allocations_on_several_connections_are_distinct_and_shortest() {
    let redis = TestRedis::start();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let url = redis.url();
            std::thread::spawn(move || {
                let store = RedisStore::open(&url, quick()).expect("connect");
                let mut relay = Relay::new(RelayConfig::default(), store, [t; 32]);
                let mut names = Vec::new();
                for i in 0..50u64 {
                    relay.connected(i, None, 1000.0);
                    drain(&mut relay);
                    send(
                        &mut relay,
                        i,
                        json!({"type": "bind", "appid": "x", "side": format!("{t}-{i}")}),
                    );
                    let out = send(&mut relay, i, json!({"type": "allocate"}));
                    let name = out[1].1["nameplate"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{out:?}"))
                        .to_owned();
                    names.push(name);
                }
                names
            })
        })
        .collect();
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .map(|n| n.parse().expect("numeric"))
        .collect();
    all.sort();
    let count = all.len();
    all.dedup();
    assert_eq!(all.len(), count, "a nameplate was allocated twice");
    // 200 allocations: all of 1–9 first, then of 10–99, then 101 of 100–999.
    assert_eq!(all.iter().filter(|&&n| n < 100).count(), 99);
    assert!(all.iter().all(|&n| n < 1000));
}

#[test]
fn redis_down_answers_with_the_cause_and_recovers() {
    let mut redis = TestRedis::start();
    let mut relay = Relay::new(RelayConfig::default(), redis.store(), [5; 32]);
    relay.connected(1, None, 1000.0);
    drain(&mut relay);
    send(
        &mut relay,
        1,
        json!({"type": "bind", "appid": "x", "side": "s"}),
    );
    let port = redis.port;
    redis.stop();
    let out = send(&mut relay, 1, json!({"type": "allocate"}));
    assert_eq!(out[0].1["type"], "ack");
    let error = out[1].1["error"]
        .as_str()
        .expect("an error frame")
        .to_owned();
    assert!(
        error.starts_with("internal server error:") && error.contains("Redis"),
        "{error}"
    );
    // Refused at once again (no delay after a refusal).
    let out = send(&mut relay, 1, json!({"type": "list"}));
    assert!(out[1].1["error"]
        .as_str()
        .is_some_and(|e| e.contains("Redis")));
    let _again = TestRedis::start_on(port);
    std::thread::sleep(Duration::from_millis(100));
    let out = send(&mut relay, 1, json!({"type": "allocate"}));
    assert_eq!(out[1].1["type"], "allocated", "{out:?}");
}

#[test]
fn a_bad_url_and_an_unreachable_server_are_clear_errors() {
    let err = RedisStore::open("http://nope", quick()).expect_err("not a redis url");
    assert!(matches!(err, StoreError::Database { .. }));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = RedisStore::open(&format!("redis://127.0.0.1:{port}/0"), quick())
        .expect_err("nobody listens");
    let text = crate::relay::errors::store_failure(&err);
    assert!(text.contains("Redis unreachable (connecting)"), "{text}");
    let debug = format!(
        "{:?}",
        RedisStore::open("redis://:hunter2@127.0.0.1:1/0", quick())
    );
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn any_relay_process_may_prune_and_each_mailbox_goes_once() {
    let redis = TestRedis::start();
    let mut a = Relay::new(RelayConfig::default(), redis.store(), [1; 32]);
    let mut b = Relay::new(RelayConfig::default(), redis.store(), [2; 32]);
    a.connected(1, None, 1000.0);
    drain(&mut a);
    send(
        &mut a,
        1,
        json!({"type": "bind", "appid": "x", "side": "s"}),
    );
    for mailbox in ["m1", "m2", "m3"] {
        a.connected(2, None, 1000.0);
        send(
            &mut a,
            2,
            json!({"type": "bind", "appid": "x", "side": "t"}),
        );
        send(&mut a, 2, json!({"type": "open", "mailbox": mailbox}));
        a.disconnected(2);
    }
    send(&mut a, 1, json!({"type": "claim", "nameplate": "4"}));
    // Not idle yet for either.
    assert_eq!(b.prune(1100.0), 0);
    // Idle: whichever prunes first deletes each mailbox (and the nameplate), once.
    let later = 1000.0 + 11.0 * 60.0 + 1.0;
    assert_eq!(b.prune(later) + a.prune(later), 4);
    assert_eq!(a.prune(later) + b.prune(later), 0);
    let out = send(
        &mut b,
        3,
        json!({"type": "bind", "appid": "x", "side": "u"}),
    );
    assert!(out.iter().all(|(_, f)| f["type"] == "ack"), "{out:?}");
    let out = send(&mut b, 3, json!({"type": "list"}));
    assert_eq!(out[1].1["nameplates"], json!([]));
}

/// Installs redis-server (scripts/setup-redis.sh, Debian's package) once per test process when
/// it is missing, so `cargo test --workspace` works on a fresh machine.
fn ensure_redis_server() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let present = Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !present {
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-redis.sh");
            let _ = Command::new("bash").arg(script).status();
        }
    });
}
