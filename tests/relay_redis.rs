//! Several `wormhole-relay` processes on one Redis (`--store redis://`), on loopback: each
//! test starts its own `redis-server` (a free port, its own data directory) and fails, saying
//! so, if `redis-server` is not installed. Clients of one exchange reach different processes;
//! processes and Redis are killed mid-exchange. Every wait has a deadline.

#[path = "support/balancer.rs"]
mod balancer;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use balancer::Balancer;
use redis_support::{
    deadline, eventually, exchange_two_messages_each, three_relays, within, RedisRelay, TestRedis,
};
use serde_json::{json, Value};
use support::{assert_exit, our_cli, py_receive, py_send_text, python_repr_body, Stream, DEADLINE};
use wormhole::transports::websocket::{raise_nofile_limit, WebSocketOptions, WebSocketTransport};
use wormhole::transports::{Connection, Transport};
use wormhole::{Error, Wormhole};

const APPID: &str = "lothar.com/example/redis-tests";
const TEXT: &str = "across processes \u{e9} \u{1F600} 'q' \"qq\" \\ end";

// ---- a bare mailbox-level client ------------------------------------------------------------

struct Raw {
    conn: Box<dyn Connection>,
}

impl Raw {
    async fn connect(transport: &WebSocketTransport, url: &str, side: &str) -> Raw {
        let conn = deadline("connect", transport.connect(url))
            .await
            .expect("connect to a relay");
        let mut raw = Raw { conn };
        raw.send(json!({"type": "bind", "appid": APPID, "side": side}))
            .await;
        raw
    }

    async fn send(&mut self, frame: Value) {
        deadline("send", self.conn.send(frame.to_string()))
            .await
            .expect("send a frame");
    }

    /// The next frame that is not an ack or welcome.
    async fn next(&mut self) -> Value {
        loop {
            let text = deadline("a frame", self.conn.recv())
                .await
                .expect("receive")
                .expect("the connection stays open");
            let frame: Value = serde_json::from_str(&text).expect("JSON");
            if frame["type"] != "ack" && frame["type"] != "welcome" {
                return frame;
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "{frame}");
        frame
    }
}

fn transport() -> WebSocketTransport {
    WebSocketTransport::new(WebSocketOptions::default())
}

// ---- 1. exchanges across processes, with both CLIs ------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn exchanges_across_three_processes_with_our_cli_and_the_python_cli() {
    within(async {
        let redis = TestRedis::start(false).await;
        let relays = three_relays(&redis).await;
        let (r0, r1, r2) = (&relays[0].url, &relays[1].url, &relays[2].url);

        let ours_to_python = async {
            let sender = our_cli(r0, &["send", "--text", TEXT, "--hide-progress"]);
            let code = sender
                .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
                .await;
            let received = py_receive(r1, &code).wait_with_deadline(DEADLINE).await;
            assert_exit(&received, 0, "python receive");
            assert_eq!(received.stdout, format!("{}\n", python_repr_body(TEXT)));
            assert_exit(&sender.wait_with_deadline(DEADLINE).await, 0, "our send");
        };
        let python_to_ours = async {
            let sender = py_send_text(r2, TEXT, None);
            let code = sender.code().await;
            let got = our_cli(r0, &["receive", &code])
                .wait_with_deadline(DEADLINE)
                .await;
            assert_exit(&got, 0, "our receive");
            assert_eq!(got.stdout, format!("{TEXT}\n"));
            assert_exit(&sender.finish().await, 0, "python send");
        };
        let ours_to_ours = async {
            let receiver = our_cli(r1, &["receive", "--allocate"]);
            let code = receiver
                .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
                .await;
            let sent = our_cli(
                r2,
                &["send", "--text", TEXT, "--code", &code, "--hide-progress"],
            )
            .wait_with_deadline(DEADLINE)
            .await;
            assert_exit(&sent, 0, "our send");
            let got = receiver.wait_with_deadline(DEADLINE).await;
            assert_exit(&got, 0, "our receive");
            assert_eq!(got.stdout, format!("{TEXT}\n"));
        };
        tokio::join!(ours_to_python, python_to_ours, ours_to_ours);
        // Both sides closed: nothing is left in Redis but the change stream.
        let key = format!("wormhole:app:{}:mailboxes", support::TEXT_APPID);
        assert_eq!(redis.query(&["ZCARD", &key]), ":0");
    })
    .await
}

// ---- 2. 1,000 concurrent allocations --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_allocations_over_three_processes_are_distinct() {
    within(async {
        let _ = raise_nofile_limit();
        let redis = TestRedis::start(false).await;
        let relays = three_relays(&redis).await;
        let transport = Arc::new(transport());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1000usize {
            let url = relays[i % 3].url.clone();
            let transport = transport.clone();
            tasks.spawn(async move {
                let mut raw = Raw::connect(&transport, &url, &format!("side{i}")).await;
                raw.send(json!({"type": "allocate"})).await;
                let frame = raw.next().await;
                let name = frame["nameplate"]
                    .as_str()
                    .unwrap_or_else(|| panic!("allocation {i}: {frame}"))
                    .to_owned();
                (name, raw) // keep the connection (and so the claim) until all are done
            });
        }
        let mut names = Vec::new();
        let mut conns = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (name, raw) = done.expect("allocation task");
            names.push(name);
            conns.push(raw);
        }
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(names.len(), 1000);
        assert_eq!(distinct.len(), 1000, "a nameplate was handed out twice");
        // The shortest free ones, as the Python server chooses: all of 1–999, then one longer.
        let numbers: HashSet<u32> = names.iter().map(|n| n.parse().expect("numeric")).collect();
        assert!((1..1000).all(|n| numbers.contains(&n)));
        assert_eq!(numbers.iter().filter(|&&n| n >= 1000).count(), 1);
        let key = format!("wormhole:app:{APPID}:nameplates");
        assert_eq!(redis.query(&["SCARD", &key]), ":1000");
        drop(conns);
    })
    .await
}

// ---- 3. a relay process killed mid-exchange -------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_process_killed_mid_exchange_its_client_resumes_on_another() {
    within(async {
        let redis = TestRedis::start(false).await;
        let mut relays = three_relays(&redis).await;
        let balancer = Balancer::start(relays.iter().map(|r| r.addr).collect()).await;
        let url = balancer.url();

        let mut a = Wormhole::new(APPID, &url);
        let code = deadline("allocate", a.allocate_code(2))
            .await
            .expect("allocate through the balancer");
        let mut b = Wormhole::new(APPID, &url);
        b.set_code(code).await.expect("set code");
        let (va, vb) = deadline("key confirmation", async {
            tokio::join!(a.verify(), b.verify())
        })
        .await;
        assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));
        let routed = balancer.routed();
        let (Some(a_on), Some(b_on)) = (routed[0], routed[1]) else {
            panic!("connections not routed: {routed:?}");
        };
        assert_ne!(a_on, b_on, "both sides on one process: {routed:?}");
        // SIGKILL a's relay process, mid-exchange.
        relays[a_on].kill().await;

        exchange_two_messages_each(a, b, "messages after the kill").await;
        let routed = balancer.routed();
        assert!(
            routed[2..].iter().all(|r| r.is_some_and(|r| r != a_on)),
            "a reconnection went to the dead process: {routed:?}"
        );
        assert!(routed.len() >= 3, "a did not reconnect: {routed:?}");
    })
    .await
}

/// The same at the frame level, to see every message: after its process dies, a side that
/// reconnects elsewhere gets each message once, in order; its peer gets each once too.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_process_dies_every_message_arrives_once_in_order() {
    within(async {
        let redis = TestRedis::start(false).await;
        let mut relays = three_relays(&redis).await;
        let t = transport();
        let mut a = Raw::connect(&t, &relays[0].url, "sa").await;
        let mut b = Raw::connect(&t, &relays[1].url, "sb").await;
        a.send(json!({"type": "claim", "nameplate": "7"})).await;
        let mailbox = a.expect("claimed").await["mailbox"].clone();
        b.send(json!({"type": "claim", "nameplate": "7"})).await;
        assert_eq!(b.expect("claimed").await["mailbox"], mailbox);
        a.send(json!({"type": "open", "mailbox": mailbox})).await;
        b.send(json!({"type": "open", "mailbox": mailbox})).await;
        for phase in ["a1", "a2"] {
            a.send(json!({"type": "add", "phase": phase, "body": "00"}))
                .await;
        }
        // b hears a1, a2 (added through the other process), each once, in order; then its own.
        assert_eq!(b.expect("message").await["phase"], "a1");
        assert_eq!(b.expect("message").await["phase"], "a2");
        b.send(json!({"type": "add", "phase": "b1", "body": "00"}))
            .await;
        assert_eq!(b.expect("message").await["phase"], "b1");
        for phase in ["a1", "a2", "b1"] {
            assert_eq!(a.expect("message").await["phase"], phase);
        }

        relays[0].kill().await;
        // a's connection is gone with its process; a comes back on the third one.
        let _ = deadline("a's connection ends", a.conn.recv()).await;
        let mut a = Raw::connect(&t, &relays[2].url, "sa").await;
        a.send(json!({"type": "open", "mailbox": mailbox})).await;
        let mut replay = Vec::new();
        for _ in 0..3 {
            replay.push(a.expect("message").await["phase"].clone());
        }
        assert_eq!(replay, [json!("a1"), json!("a2"), json!("b1")]);
        b.send(json!({"type": "add", "phase": "b2", "body": "00"}))
            .await;
        assert_eq!(b.expect("message").await["phase"], "b2");
        assert_eq!(a.expect("message").await["phase"], "b2");
        a.send(json!({"type": "add", "phase": "a3", "body": "00"}))
            .await;
        assert_eq!(a.expect("message").await["phase"], "a3");
        assert_eq!(b.expect("message").await["phase"], "a3");
        // Nothing more: a ping's pong comes next on both.
        for raw in [&mut a, &mut b] {
            raw.send(json!({"type": "ping", "ping": 9})).await;
            assert_eq!(raw.next().await["type"], "pong");
        }
        let key = format!(
            "wormhole:app:{APPID}:msgs:{}",
            mailbox.as_str().unwrap_or("")
        );
        assert_eq!(redis.query(&["LLEN", &key]), ":5");
    })
    .await
}

// ---- 4. Redis restarted mid-exchange --------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn exchanges_complete_after_redis_restarts_with_append_only_persistence() {
    within(async {
        let mut redis = TestRedis::start(true).await;
        let relays = three_relays(&redis).await;
        let mut a = Wormhole::new(APPID, &relays[0].url);
        let code = deadline("allocate", a.allocate_code(2))
            .await
            .expect("allocate");
        let mut b = Wormhole::new(APPID, &relays[1].url);
        b.set_code(code).await.expect("set code");
        let (va, vb) = deadline("key confirmation", async {
            tokio::join!(a.verify(), b.verify())
        })
        .await;
        assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));

        // Both have released the nameplate (each does on the peer's first message): the
        // exchange is idle between the key confirmation and the application messages. (A
        // command that arrives while Redis is away gets an `error` frame, which clients,
        // ours and Python's, treat as fatal.)
        let nameplates = format!("wormhole:app:{APPID}:nameplates");
        eventually("both sides to release", || {
            redis.query(&["SCARD", &nameplates]) == ":0"
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        redis.kill().await;
        // While Redis is away, a command gets an error frame naming the cause, and the
        // connection stays.
        let t = transport();
        let mut probe = Raw::connect(&t, &relays[2].url, "probe").await;
        probe.send(json!({"type": "allocate"})).await;
        let error = probe.expect("error").await;
        let text = error["error"].as_str().unwrap_or("");
        assert!(
            text.starts_with("internal server error:") && text.contains("Redis"),
            "{error}"
        );
        probe.send(json!({"type": "ping", "ping": 1})).await;
        assert_eq!(probe.next().await["type"], "pong");

        redis.restart().await;
        let ta = tokio::spawn(async move {
            a.send(b"after the restart, from a").await?;
            let got = a.recv().await?;
            a.close().await?;
            Ok::<_, Error>(got)
        });
        let tb = tokio::spawn(async move {
            b.send(b"after the restart, from b").await?;
            let got = b.recv().await?;
            b.close().await?;
            Ok::<_, Error>(got)
        });
        let Ok((ra, rb)) = tokio::time::timeout(DEADLINE, async { (ta.await, tb.await) }).await
        else {
            let logs: Vec<String> = relays.iter().map(|r| r.log()).collect();
            panic!("messages after the restart: none within {DEADLINE:?}; relay logs: {logs:#?}");
        };
        assert_eq!(ra.expect("task").expect("a"), b"after the restart, from b");
        assert_eq!(rb.expect("task").expect("b"), b"after the restart, from a");
        // Each process's change feed noticed the outage and resumed where it was.
        for relay in &relays {
            eventually("the feed to say it is back", || {
                relay.log().contains("the change feed is back")
            })
            .await;
        }
        // A fresh exchange across processes works too.
        let mut c = Wormhole::new(APPID, &relays[2].url);
        let code = deadline("allocate", c.allocate_code(2))
            .await
            .expect("allocate");
        let mut d = Wormhole::new(APPID, &relays[0].url);
        d.set_code(code).await.expect("set code");
        let (vc, vd) = deadline("key confirmation", async {
            tokio::join!(c.verify(), d.verify())
        })
        .await;
        assert_eq!(vc.expect("c"), vd.expect("d"));
    })
    .await
}

// ---- 5. per-mailbox limits across processes --------------------------------------------------

/// A `wormhole-relay` on `store` with `--max-mailbox-messages 5`.
async fn relay_with_a_message_limit(store: &str) -> RedisRelay {
    RedisRelay::start_with(store, &["--max-mailbox-messages", "5"]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn adds_spread_over_two_processes_stop_at_the_mailbox_limit() {
    within(async {
        let redis = TestRedis::start(false).await;
        let relays = [
            relay_with_a_message_limit(&redis.url()).await,
            relay_with_a_message_limit(&redis.url()).await,
        ];
        let t = transport();
        let mut clients = Vec::new();
        for (i, relay) in relays.iter().enumerate() {
            let mut raw = Raw::connect(&t, &relay.url, &format!("side{i}")).await;
            raw.send(json!({"type": "open", "mailbox": "limited"}))
                .await;
            clients.push(raw);
        }
        // Each add: its own echo (accepted) or an error (refused); the other process's echoes
        // are skipped.
        async fn add(raw: &mut Raw, side: usize, phase: usize) -> Option<String> {
            let (side, phase) = (format!("side{side}"), phase.to_string());
            raw.send(json!({"type": "add", "phase": phase, "body": "aa"}))
                .await;
            loop {
                let frame = raw.next().await;
                match frame["type"].as_str() {
                    Some("error") => return Some(frame["error"].as_str().unwrap_or("").into()),
                    Some("message")
                        if frame["side"] == side.as_str() && frame["phase"] == phase.as_str() =>
                    {
                        return None
                    }
                    _ => {}
                }
            }
        }
        for phase in 0..5 {
            let side = phase % 2;
            assert_eq!(
                add(&mut clients[side], side, phase).await,
                None,
                "add {phase}"
            );
        }
        let limit = "limit reached: this mailbox holds too many messages (--max-mailbox-messages)";
        for side in [1, 0] {
            let refused = add(&mut clients[side], side, 5).await;
            assert_eq!(refused.as_deref(), Some(limit), "side {side}");
        }
        let key = format!("wormhole:app:{APPID}:msgs:limited");
        assert_eq!(redis.query(&["LLEN", &key]), ":5");
    })
    .await
}
