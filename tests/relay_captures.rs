//! Replays the client → server frames of real captures (Python CLI 0.24 ⇄ mailbox server 0.8,
//! `tests/data/captures/`) into the relay core and checks that every connection gets the same
//! frames as from the Python server, in the same order.
//!
//! Compared: every field except the `server_tx`/`server_rx` values. Random values (allocated
//! nameplates, mailbox ids) are mapped from the captured ones to ours as they first appear, and
//! later client frames are rewritten with that map before they are fed in. Connections are
//! disconnected after their last captured frame (the capture does not log disconnects).
//! The one deliberate difference: `claim` with a non-numeric nameplate, on which Python 0.8
//! drops the connection, gets an ack and our `error` instead.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use serde_json::{json, Map, Value};
use wormhole::relay::{errors, ConnId, MemoryStore, Relay, RelayConfig, RelayOutput};

#[derive(Debug)]
enum Kind {
    /// The WebSocket upgrade (multi-line; only its first line is kept).
    Http,
    /// A text or binary frame carrying JSON text.
    Frame(String),
}

#[derive(Debug)]
struct Event {
    time: f64,
    conn: ConnId,
    to_server: bool,
    kind: Kind,
}

/// Parses lines like `   0.003 c1 C>S TEXT masked {...}`; continuation lines of HTTP
/// messages (and anything else) are skipped.
fn parse_capture(text: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for line in text.lines() {
        let mut parts = line.trim_start().splitn(5, ' ');
        let (Some(time), Some(conn), Some(dir), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(time), Some(Ok(conn)), true) = (
            time.parse::<f64>(),
            conn.strip_prefix('c').map(str::parse::<ConnId>),
            dir == "C>S" || dir == "S>C",
        ) else {
            continue;
        };
        let rest = parts.next().unwrap_or("");
        let kind = match kind {
            "HTTP" => Kind::Http,
            "TEXT" | "BINARY" => {
                Kind::Frame(rest.strip_prefix("masked ").unwrap_or(rest).to_owned())
            }
            other => panic!("unexpected frame kind {other} in {line:?}"),
        };
        events.push(Event {
            time,
            conn,
            to_server: dir == "C>S",
            kind,
        });
    }
    events
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("not a JSON object: {text:?} ({other:?})"),
    }
}

/// Captured value → our value, per app id (nameplates are scoped per app id).
#[derive(Default)]
struct Substitutions {
    map: HashMap<(String, String), String>,
}

impl Substitutions {
    fn get(&self, appid: &str, captured: &str) -> String {
        self.map
            .get(&(appid.to_owned(), captured.to_owned()))
            .cloned()
            .unwrap_or_else(|| captured.to_owned())
    }

    /// Rewrites `nameplate` and `mailbox` string fields of an object.
    fn rewrite(&self, appid: &str, map: &mut Map<String, Value>) {
        for key in ["nameplate", "mailbox"] {
            if let Some(Value::String(captured)) = map.get(key) {
                let ours = self.get(appid, captured);
                map.insert(key.to_owned(), Value::String(ours));
            }
        }
    }
}

struct Replay {
    relay: Relay,
    subs: Substitutions,
    /// Captured S>C frames per connection, still to be matched.
    expected: HashMap<ConnId, VecDeque<Map<String, Value>>>,
    appid: HashMap<ConnId, String>,
    compared: usize,
}

impl Replay {
    fn appid(&self, conn: ConnId) -> String {
        self.appid.get(&conn).cloned().unwrap_or_default()
    }

    /// Drains the relay's output and matches each frame against the next captured frame of its
    /// connection. Returns the frames, for ordering checks.
    fn drain(&mut self) -> Vec<(ConnId, Map<String, Value>)> {
        let mut sent = Vec::new();
        while let Some(output) = self.relay.poll_output() {
            let RelayOutput::Send { conn, frame } = output else {
                panic!("unexpected output {output:?}");
            };
            let ours = object(&frame);
            let Some(expected) = self.expected.get_mut(&conn).and_then(VecDeque::pop_front) else {
                panic!("c{conn}: unexpected frame {frame}");
            };
            self.compare(conn, expected, ours.clone());
            sent.push((conn, ours));
        }
        sent
    }

    fn compare(
        &mut self,
        conn: ConnId,
        mut expected: Map<String, Value>,
        mut ours: Map<String, Value>,
    ) {
        let appid = self.appid(conn);
        let context = format!("c{conn}: expected {expected:?}, ours {ours:?}");
        assert!(
            ours.remove("server_tx").is_some_and(|t| t.is_f64()),
            "{context}"
        );
        assert!(expected.remove("server_tx").is_some(), "{context}");
        assert_eq!(ours.get("type"), expected.get("type"), "{context}");
        match expected.get("type").and_then(Value::as_str) {
            Some("message") => {
                assert!(
                    ours.remove("server_rx").is_some_and(|t| t.is_f64()),
                    "{context}"
                );
                assert!(expected.remove("server_rx").is_some(), "{context}");
            }
            Some("allocated") => {
                let (Some(Value::String(captured)), Some(Value::String(mine))) =
                    (expected.get("nameplate"), ours.get("nameplate"))
                else {
                    panic!("{context}");
                };
                assert!(mine.bytes().all(|b| b.is_ascii_digit()), "{context}");
                // A fresh allocation: the captured number may have been used before.
                self.subs
                    .map
                    .insert((appid.clone(), captured.clone()), mine.clone());
            }
            Some("claimed") => {
                let (Some(Value::String(captured)), Some(Value::String(mine))) =
                    (expected.get("mailbox"), ours.get("mailbox"))
                else {
                    panic!("{context}");
                };
                assert_eq!(mine.len(), 13, "{context}");
                assert!(
                    mine.bytes()
                        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
                    "{context}"
                );
                let key = (appid.clone(), captured.clone());
                let known = self.subs.map.entry(key).or_insert_with(|| mine.clone());
                assert_eq!(known, mine, "{context}");
            }
            Some("nameplates") => {
                let Some(Value::Array(list)) = expected.get_mut("nameplates") else {
                    panic!("{context}");
                };
                for entry in list.iter_mut() {
                    if let Some(Value::String(id)) = entry.get("id") {
                        let mapped = self.subs.get(&appid, id);
                        entry["id"] = Value::String(mapped);
                    }
                }
                list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            }
            Some("error") => {
                if let Some(Value::Object(orig)) = expected.get_mut("orig") {
                    self.subs.rewrite(&appid, orig);
                }
            }
            _ => {}
        }
        self.subs.rewrite(&appid, &mut expected);
        assert_eq!(Value::Object(ours), Value::Object(expected), "{context}");
        self.compared += 1;
    }
}

fn welcome_address(welcome: &Map<String, Value>) -> Option<SocketAddr> {
    let address = welcome.get("welcome")?.get("your-address")?;
    let port = address.get("port")?.as_u64()?;
    let ip = address
        .get("ipv4")
        .or_else(|| address.get("ipv6"))?
        .as_str()?;
    format!("{ip}:{port}").parse().ok()
}

fn read_capture(name: &str) -> Vec<Event> {
    let path = format!("{}/tests/data/captures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let events = parse_capture(&text);
    assert!(!events.is_empty(), "{name}: no events");
    events
}

/// Replays one capture; returns how many frames were compared.
fn replay(name: &str, config: RelayConfig) -> usize {
    replay_events(name, read_capture(name), config)
}

/// Replays captures made one after the other against the same server, as one session
/// (connection numbers of the later files are offset by 100 per file).
fn replay_sequence(names: &[&str]) -> usize {
    let mut events = Vec::new();
    let mut time_offset = 0.0;
    for (index, name) in names.iter().enumerate() {
        let mut later = read_capture(name);
        let offset = 100 * index as ConnId;
        for event in &mut later {
            event.conn += offset;
            event.time += time_offset;
        }
        time_offset = later.last().map_or(time_offset, |e| e.time) + 1.0;
        events.extend(later);
    }
    replay_events(&names.join("+"), events, RelayConfig::default())
}

fn replay_events(name: &str, events: Vec<Event>, config: RelayConfig) -> usize {
    // Captured S>C frames per connection, with our deliberate divergence spliced in.
    let mut expected: HashMap<ConnId, VecDeque<Map<String, Value>>> = HashMap::new();
    let mut last_event: HashMap<ConnId, usize> = HashMap::new();
    let mut addresses: HashMap<ConnId, SocketAddr> = HashMap::new();
    let mut divergences = 0;
    for (index, event) in events.iter().enumerate() {
        last_event.insert(event.conn, index);
        let Kind::Frame(text) = &event.kind else {
            continue;
        };
        let frame = object(text);
        if event.to_server {
            let bad_claim = frame.get("type") == Some(&json!("claim"))
                && frame
                    .get("nameplate")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.bytes().all(|b| b.is_ascii_digit()));
            if bad_claim {
                let ack = json!({"type": "ack", "id": frame.get("id"), "server_tx": 0.0});
                let error = json!({"type": "error", "error": errors::CLAIM_NEEDS_NUMERIC,
                                   "orig": frame.clone(), "server_tx": 0.0});
                let queue = expected.entry(event.conn).or_default();
                for extra in [ack, error] {
                    if let Value::Object(extra) = extra {
                        queue.push_back(extra);
                    }
                }
                divergences += 1;
            }
        } else {
            if frame.get("type") == Some(&json!("welcome")) {
                if let Some(addr) = welcome_address(&frame) {
                    addresses.insert(event.conn, addr);
                }
            }
            expected.entry(event.conn).or_default().push_back(frame);
        }
    }
    if name == "run2.frames.txt" {
        assert_eq!(divergences, 1, "run2 has the claim \"abc\" probe");
    }

    let mut replay = Replay {
        relay: Relay::new(config, MemoryStore::default(), [42; 32]),
        subs: Substitutions::default(),
        expected,
        appid: HashMap::new(),
        compared: 0,
    };
    let base = 1_795_698_600.0;
    let mut seen = std::collections::HashSet::new();
    for (index, event) in events.iter().enumerate() {
        let now = base + event.time;
        if seen.insert(event.conn) {
            replay
                .relay
                .connected(event.conn, addresses.get(&event.conn).copied(), now);
            let sent = replay.drain();
            assert_eq!(
                sent.len(),
                1,
                "{name}: c{} gets exactly a welcome",
                event.conn
            );
        }
        if let (true, Kind::Frame(text)) = (event.to_server, &event.kind) {
            let mut frame = object(text);
            if frame.get("type") == Some(&json!("bind")) && !replay.appid.contains_key(&event.conn)
            {
                if let (Some(Value::String(appid)), Some(_)) =
                    (frame.get("appid"), frame.get("side"))
                {
                    replay.appid.insert(event.conn, appid.clone());
                }
            }
            let appid = replay.appid(event.conn);
            replay.subs.rewrite(&appid, &mut frame);
            let text = Value::Object(frame.clone()).to_string();
            replay.relay.received(event.conn, &text, now);
            let sent = replay.drain();
            // Ack first (copying the id), before any reply; no ack without a type.
            let mine: Vec<_> = sent.iter().filter(|(c, _)| *c == event.conn).collect();
            match frame.get("type") {
                Some(_) => {
                    let first = mine.first().map(|(_, f)| f);
                    assert_eq!(
                        first.and_then(|f| f.get("type")),
                        Some(&json!("ack")),
                        "{name} #{index}"
                    );
                    assert_eq!(
                        first.and_then(|f| f.get("id")),
                        Some(frame.get("id").unwrap_or(&Value::Null)),
                        "{name} #{index}"
                    );
                    assert!(
                        mine.iter()
                            .skip(1)
                            .all(|(_, f)| f.get("type") != Some(&json!("ack"))),
                        "{name} #{index}: one ack"
                    );
                }
                None => assert!(
                    mine.iter()
                        .all(|(_, f)| f.get("type") != Some(&json!("ack"))),
                    "{name} #{index}: no ack without type"
                ),
            }
        }
        for (&conn, &last) in &last_event {
            if last == index {
                replay.relay.disconnected(conn);
            }
        }
    }
    for (conn, rest) in &replay.expected {
        assert!(rest.is_empty(), "{name}: c{conn} never got {rest:?}");
    }
    replay.compared
}

#[test]
fn run1_success() {
    // Every captured S>C frame was matched.
    let compared = replay("run1.frames.txt", RelayConfig::default());
    assert_eq!(compared, 38);
}

#[test]
fn run2_wrong_code_and_server_probes() {
    // 193 captured S>C frames, plus our ack and error for `claim "abc"`.
    let compared = replay("run2.frames.txt", RelayConfig::default());
    assert_eq!(compared, 193 + 2);
}

#[test]
fn run4_success_with_crypto_logging() {
    assert_eq!(replay("run4.frames.txt", RelayConfig::default()), 38);
}

#[test]
fn run3_cut_and_run3b_reconnect() {
    // run3b's reconnect sends only `bind` and `open`, and gets the stored `pake` replayed.
    let compared = replay_sequence(&["run3.frames.txt", "run3b.frames.txt"]);
    assert_eq!(compared, 9 + 33);
}

#[test]
fn run5_welcome_with_motd_version_and_error() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/captures/run5.frames.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("run5 capture");
    let welcome = parse_capture(&text)
        .into_iter()
        .find_map(|event| match event.kind {
            Kind::Frame(text) if !event.to_server => Some(object(&text)),
            _ => None,
        })
        .expect("a welcome");
    let fields = &welcome["welcome"];
    let config = RelayConfig {
        motd: fields["motd"].as_str().map(str::to_owned),
        advertise_version: fields["current_cli_version"].as_str().map(str::to_owned),
        signal_error: fields["error"].as_str().map(str::to_owned),
        ..RelayConfig::default()
    };
    assert!(
        config.motd.is_some()
            && config.advertise_version.is_some()
            && config.signal_error.is_some()
    );
    assert_eq!(replay("run5.frames.txt", config), 2);
}
