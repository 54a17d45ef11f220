//! HTTP-polling sessions across three `wormhole-relay` processes on one real Redis: requests
//! for a session may reach any process (no sticky sessions); the others forward them to the
//! process that owns the session. Raw requests spread by hand, library clients behind a
//! round-robin TCP balancer, and the owner SIGKILLed mid-exchange. Every wait has a deadline.

#[path = "support/balancer.rs"]
#[allow(dead_code)]
mod balancer;
#[path = "support/redis.rs"]
#[allow(dead_code)]
mod redis_support;
mod support;

use std::net::SocketAddr;

use balancer::Balancer;
use redis_support::{
    deadline, exchange_two_messages_each, three_relays, within, RedisRelay, TestRedis,
};
use serde_json::{json, Value};
use support::DEADLINE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wormhole::Wormhole;

const APPID: &str = "lothar.com/example/redis-http-tests";

/// One HTTP/1.1 request on a fresh connection: the status and the body.
async fn raw(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    deadline("a raw request", async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head[9..12].parse().unwrap(), body.to_string())
    })
    .await
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// A sample of a relay's `/metrics` (fetched from that process itself).
async fn metric(relay: &RedisRelay, line_prefix: &str) -> u64 {
    let (status, text) = raw(relay.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no metric {line_prefix:?} in\n{text}"))
}

const HTTP_OPEN: &str = "wormhole_relay_connections_open{transport=\"http\"}";
const OPENED_TOTAL: &str = "wormhole_relay_connections_total{transport=\"http\"}";
const FORWARDED: &str = "wormhole_relay_http_forwarded_total";

#[tokio::test(flavor = "multi_thread")]
async fn a_session_opened_on_one_process_is_used_on_the_two_others() {
    within(async {
        let redis = TestRedis::start(false).await;
        let mut relays = three_relays(&redis).await;
        let (r1, r2, r3) = (relays[0].addr, relays[1].addr, relays[2].addr);

        let (status, body) = raw(r1, "POST", "/v1/http/session", "").await;
        assert_eq!(status, 201, "{body}");
        let opened = json_of(&body);
        assert_eq!(opened["frames"][0]["type"], "welcome");
        let id = opened["session"].as_str().unwrap().to_owned();
        let (tag, random) = id.split_once('.').expect("an owner-tagged id");
        assert_eq!((tag.len(), random.len()), (16, 32), "{id}");
        let session = format!("/v1/http/session/{id}");

        // A long poll on relay 3 parks (at relay 1) until there are frames.
        let events = format!("{session}/events?after=1&wait=20");
        let poll = tokio::spawn(async move { raw(r3, "GET", &events, "").await });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!poll.is_finished(), "the long poll did not wait");

        // Frames sent on relay 2 reach the relay core at relay 1; the answer has the replies.
        let bind = json!({"seq": 1, "after": 1, "frames": [
            {"type": "bind", "appid": APPID, "side": "aaaa", "id": "b1"},
            {"type": "allocate", "id": "b2"},
        ]})
        .to_string();
        let (status, body) = raw(r2, "POST", &format!("{session}/send"), &bind).await;
        assert_eq!(status, 200, "{body}");
        let sent = json_of(&body);
        assert_eq!(sent["cursor"], 4, "ack, ack, allocated: {sent}");
        assert_eq!(sent["frames"][2]["type"], "allocated");
        let (status, body) = deadline("the long poll", poll).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let polled = json_of(&body);
        assert!(
            !polled["frames"].as_array().unwrap().is_empty(),
            "the long poll was not woken by the frames: {polled}"
        );
        assert_eq!(polled["frames"][0]["type"], "ack");

        // DELETE on relay 2 ends the session at relay 1.
        let (status, body) = raw(r2, "DELETE", &session, "").await;
        assert_eq!((status, json_of(&body)), (200, json!({"closed": true})));
        let (status, _) = raw(r3, "GET", &format!("{session}/events"), "").await;
        assert_eq!(status, 404);
        assert!(metric(&relays[1], FORWARDED).await >= 2);
        assert!(metric(&relays[2], FORWARDED).await >= 2);
        assert_eq!(metric(&relays[0], FORWARDED).await, 0);
        for relay in &relays {
            let log = relay.log();
            assert!(
                !log.contains(random),
                "a session id in a relay's log:\n{log}"
            );
        }

        // The owner gone: 404, "open a new one" (the client's cue to reconnect).
        let (status, body) = raw(r1, "POST", "/v1/http/session", "").await;
        assert_eq!(status, 201, "{body}");
        let second = json_of(&body)["session"].as_str().unwrap().to_owned();
        let events = format!("/v1/http/session/{second}/events");
        assert_eq!(
            raw(r2, "GET", &events, "").await.0,
            200,
            "relay 1 still answers"
        );
        relays[0].kill().await;
        let (status, body) = raw(r2, "GET", &events, "").await;
        assert_eq!(status, 404, "{body}");
        assert!(
            json_of(&body)["error"]
                .as_str()
                .unwrap()
                .contains("process is gone"),
            "{body}"
        );
    })
    .await
}

/// `a` sends two messages and receives two; so does `b`.
async fn exchange(mut a: Wormhole, mut b: Wormhole) {
    let code = deadline("allocate", a.allocate_code(2))
        .await
        .expect("allocate");
    b.set_code(code).await.expect("set code");
    let (va, vb) = deadline("key confirmation", async {
        tokio::join!(a.verify(), b.verify())
    })
    .await;
    assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));
    exchange_two_messages_each(a, b, "the messages").await;
}

fn http_url(balancer: &Balancer) -> String {
    balancer.url().replacen("ws://", "http://", 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_clients_behind_a_round_robin_balancer_complete_an_exchange() {
    within(async {
        let redis = TestRedis::start(false).await;
        let relays = three_relays(&redis).await;
        let balancer = Balancer::start(relays.iter().map(|r| r.addr).collect()).await;
        let url = http_url(&balancer);
        exchange(Wormhole::new(APPID, &url), Wormhole::new(APPID, &url)).await;
        let routed = balancer.routed();
        let backends: std::collections::HashSet<_> = routed.iter().flatten().collect();
        assert_eq!(
            backends.len(),
            3,
            "not spread over the processes: {routed:?}"
        );
        let mut forwarded = 0;
        for relay in &relays {
            forwarded += metric(relay, FORWARDED).await;
        }
        assert!(forwarded > 0, "no request was forwarded: {routed:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_process_killed_mid_exchange_its_client_opens_a_new_session() {
    within(async {
        let redis = TestRedis::start(false).await;
        let mut relays = three_relays(&redis).await;
        let balancer = Balancer::start(relays.iter().map(|r| r.addr).collect()).await;
        let url = http_url(&balancer);

        let mut a = Wormhole::new(APPID, &url);
        let code = deadline("allocate", a.allocate_code(2))
            .await
            .expect("allocate");
        let mut b = Wormhole::new(APPID, &url);
        b.set_code(code).await.expect("set code");
        let (va, vb) = deadline("key confirmation", async { tokio::join!(a.verify(), b.verify()) })
            .await;
        assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));

        // Which processes own the two sessions: their own metrics say.
        let mut owners = Vec::new();
        for (i, relay) in relays.iter().enumerate() {
            let open = metric(relay, HTTP_OPEN).await;
            owners.extend(std::iter::repeat_n(i, open as usize));
        }
        assert_eq!(owners.len(), 2, "two sessions open: {owners:?}");
        let victim = owners[0];
        let mut before = 0;
        for relay in &relays {
            before += metric(relay, OPENED_TOTAL).await;
        }
        let on_victim = metric(&relays[victim], OPENED_TOTAL).await;
        relays[victim].kill().await;

        exchange_two_messages_each(a, b, "the messages").await;

        // The client whose session died opened a new one, on a live process.
        let mut after = 0;
        for (i, relay) in relays.iter().enumerate() {
            if i != victim {
                after += metric(relay, OPENED_TOTAL).await;
            }
        }
        assert!(
            after > before - on_victim,
            "no new session after the kill (all before: {before}, on the victim: {on_victim}, survivors after: {after})"
        );
        let mut forwarded = 0;
        for (i, relay) in relays.iter().enumerate() {
            if i != victim {
                forwarded += metric(relay, FORWARDED).await;
            }
        }
        assert!(forwarded > 0, "no request was forwarded");
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn while_redis_is_down_forwards_fail_fast_with_503_then_work_again() {
    within(async {
        let mut redis = TestRedis::start(false).await;
        let relays = three_relays(&redis).await;
        let (r1, r2) = (relays[0].addr, relays[1].addr);
        let (status, body) = raw(r1, "POST", "/v1/http/session", "").await;
        assert_eq!(status, 201, "{body}");
        let id = json_of(&body)["session"].as_str().unwrap().to_owned();
        let events = format!("/v1/http/session/{id}/events?after=1");
        assert_eq!(raw(r2, "GET", &events, "").await.0, 200);

        redis.kill().await;
        let started = std::time::Instant::now();
        let (status, body) = raw(r2, "GET", &events, "").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "not fast: {:?}",
            started.elapsed()
        );
        // Its owner still serves the session itself.
        assert_eq!(raw(r1, "GET", &events, "").await.0, 200);

        redis.restart().await;
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            let (status, body) = raw(r2, "GET", &events, "").await;
            if status == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "forwarding did not come back after Redis did: {status} {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let log = relays[1].log();
        assert!(
            log.contains("lost Redis"),
            "the loss was not logged:\n{log}"
        );
    })
    .await
}
