//! Unit tests of the relay core: every probe of test-vectors.md §7, allocation, release,
//! close, pruning, bad frames and store failures.
//!
//! Here: the [`Harness`] that drives a relay on a virtual clock, and the frame helpers; each
//! submodule is one topic.

mod allocation;
mod bad_frames;
mod formats;
mod messages;
mod pruning;
mod store_failures;
mod vectors;
mod welcome;

use serde_json::{json, Value};

use super::*;

const T0: f64 = 1_795_698_600.0;

/// Drives a relay with a virtual clock that advances 1 ms per input.
struct Harness<S: MailboxStore = MemoryStore> {
    relay: Relay<S>,
    now: f64,
}

impl Harness {
    fn new() -> Self {
        Harness::with(RelayConfig::default(), [1; 32])
    }

    fn with(config: RelayConfig, seed: [u8; 32]) -> Self {
        Harness::with_store(config, MemoryStore::default(), seed)
    }
}

impl<S: MailboxStore> Harness<S> {
    fn with_store(config: RelayConfig, store: S, seed: [u8; 32]) -> Self {
        Harness {
            relay: Relay::new(config, store, seed),
            now: T0,
        }
    }

    fn tick(&mut self) -> f64 {
        self.now += 0.001;
        self.now
    }

    /// Every queued output, as `(conn, frame)`; `server_tx` is checked and removed.
    fn drain(&mut self) -> Vec<(ConnId, Value)> {
        let mut out = Vec::new();
        while let Some(output) = self.relay.poll_output() {
            match output {
                RelayOutput::Send { conn, frame } => {
                    let mut value: Value = serde_json::from_str(&frame).expect("valid JSON out");
                    let tx = value
                        .as_object_mut()
                        .and_then(|map| map.remove("server_tx"))
                        .expect("server_tx on every frame");
                    // serde_json's float parsing may differ from the printed value by an ulp.
                    let tx = tx.as_f64().expect("server_tx is a number");
                    assert!((tx - self.now).abs() < 1e-6, "server_tx = now");
                    if let Some(rx) = value.get_mut("server_rx") {
                        *rx = json!(millis(rx.as_f64().expect("server_rx is a number")));
                    }
                    out.push((conn, value));
                }
                RelayOutput::Close { conn } => panic!("unexpected close of {conn}"),
            }
        }
        out
    }

    /// Connects and returns the welcome.
    fn connect(&mut self, conn: ConnId) -> Value {
        let now = self.tick();
        self.relay.connected(conn, None, now);
        let out = self.drain();
        assert_eq!(out.len(), 1);
        out.into_iter()
            .next()
            .map(|(_, frame)| frame)
            .unwrap_or_default()
    }

    /// Sends raw text; returns every output.
    fn raw(&mut self, conn: ConnId, text: &str) -> Vec<(ConnId, Value)> {
        let now = self.tick();
        self.relay.received(conn, text, now);
        self.drain()
    }

    /// Sends a command; returns every output.
    fn send_all(&mut self, conn: ConnId, frame: Value) -> Vec<(ConnId, Value)> {
        self.raw(conn, &frame.to_string())
    }

    /// Sends a command; returns the frames to `conn` (there must be no others).
    fn send(&mut self, conn: ConnId, frame: Value) -> Vec<Value> {
        let out = self.send_all(conn, frame);
        assert!(
            out.iter().all(|(c, _)| *c == conn),
            "frames to others: {out:?}"
        );
        out.into_iter().map(|(_, frame)| frame).collect()
    }

    /// Sends a command that must be acked (id null) and answered with exactly `reply`.
    fn expect(&mut self, conn: ConnId, frame: Value, reply: Value) {
        let out = self.send(conn, frame);
        assert_eq!(out, vec![ack(None), reply]);
    }

    /// Sends a command that must be acked and get no other frame.
    fn expect_ack(&mut self, conn: ConnId, frame: Value) {
        assert_eq!(self.send(conn, frame), vec![ack(None)]);
    }

    fn error(&mut self, conn: ConnId, frame: Value, error: &str) {
        let orig = frame.clone();
        self.expect(
            conn,
            frame,
            json!({"type": "error", "error": error, "orig": orig}),
        );
    }

    fn connect_bound(&mut self, conn: ConnId, appid: &str, side: &str) {
        self.connect(conn);
        self.expect_ack(conn, json!({"type": "bind", "appid": appid, "side": side}));
    }

    fn allocate(&mut self, conn: ConnId) -> String {
        let out = self.send(conn, json!({"type": "allocate"}));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], ack(None));
        assert_eq!(out[1]["type"], "allocated");
        out[1]["nameplate"].as_str().expect("nameplate").to_owned()
    }

    fn claim(&mut self, conn: ConnId, nameplate: &str) -> String {
        let out = self.send(conn, json!({"type": "claim", "nameplate": nameplate}));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0], ack(None));
        assert_eq!(out[1]["type"], "claimed", "{out:?}");
        out[1]["mailbox"].as_str().expect("mailbox").to_owned()
    }

    /// Opens and returns the replayed messages.
    fn open(&mut self, conn: ConnId, mailbox: &str) -> Vec<Value> {
        let out = self.send(conn, json!({"type": "open", "mailbox": mailbox}));
        assert_eq!(out.first(), Some(&ack(None)), "{out:?}");
        out.into_iter().skip(1).collect()
    }

    fn list(&mut self, conn: ConnId) -> Vec<String> {
        let out = self.send(conn, json!({"type": "list"}));
        assert_eq!(out.len(), 2);
        out[1]["nameplates"]
            .as_array()
            .expect("list")
            .iter()
            .map(|entry| entry["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

fn ack(id: Option<&str>) -> Value {
    json!({"type": "ack", "id": id})
}

/// Rounds to milliseconds (the harness clock's step), so times survive a JSON round trip.
fn millis(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

fn message(side: &str, phase: &str, body: &str, server_rx: f64, id: Option<&str>) -> Value {
    json!({"type": "message", "side": side, "phase": phase, "body": body,
           "server_rx": millis(server_rx), "id": id})
}
