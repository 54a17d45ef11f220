//! Hostile input never panics: thousands of mutated frames, built from the real captured
//! frames, are fed to the relay core and to the client core. Seeded, so a failure replays.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::{json, Map, Value};
use wormhole::code::Code;
use wormhole::core::{Config, Input, Session};
use wormhole::relay::{MemoryStore, Relay, RelayConfig};

const SEED: u64 = 0x5eed_2026_1126;

/// Every frame of the captures, client and server side.
fn captured_frames() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/captures");
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".frames.txt") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            if let Some(i) = line.find(" TEXT ") {
                let rest = line[i + 6..].trim_start_matches("masked ");
                if let Ok(v) = serde_json::from_str::<Value>(rest) {
                    frames.push(v);
                }
            }
        }
    }
    assert!(frames.len() > 300, "captures not found");
    frames
}

fn random_value(rng: &mut ChaCha20Rng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => json!(""),
        5 => {
            let pool = [
                "pake",
                "version",
                "0",
                "1",
                "99999999999999999999",
                "-1",
                "abc",
                "\u{0}",
                "☃",
                "7b7d",
                "zz",
                "bind",
                "claim",
                "open",
                "add",
                "close",
                "crowded",
            ];
            json!(pool.choose(rng).copied().unwrap_or(""))
        }
        6 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..4) {
                m.insert(
                    format!("k{}", rng.gen_range(0..5)),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// A captured frame with a few fields removed, replaced or added, or the text itself mangled.
fn mutate(rng: &mut ChaCha20Rng, frames: &[Value]) -> String {
    let mut v = frames.choose(rng).cloned().unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for _ in 0..rng.gen_range(1..4) {
            let keys: Vec<String> = m.keys().cloned().collect();
            match rng.gen_range(0..3) {
                0 => {
                    if let Some(k) = keys.choose(rng) {
                        m.remove(k);
                    }
                }
                1 => {
                    if let Some(k) = keys.choose(rng) {
                        m.insert(k.clone(), random_value(rng, 0));
                    }
                }
                _ => {
                    let k = [
                        "type",
                        "side",
                        "phase",
                        "body",
                        "nameplate",
                        "mailbox",
                        "id",
                    ]
                    .choose(rng)
                    .copied()
                    .unwrap_or("type");
                    m.insert(k.to_string(), random_value(rng, 0));
                }
            }
        }
    }
    let text = v.to_string();
    match rng.gen_range(0..10) {
        0 => {
            let cut = rng.gen_range(0..=text.len());
            let cut = (0..=cut)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[..cut].to_string()
        }
        1 => format!("{text}{text}"),
        _ => text,
    }
}

#[test]
fn the_relay_core_survives_mutated_frames() {
    let frames = captured_frames();
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let mut relay = Relay::new(RelayConfig::default(), MemoryStore::default(), [1; 32]);
    let mut sent = 0usize;
    for conn in 0..40u64 {
        relay.connected(conn, None, 1.0e9);
        // A valid bind first, half of the time, so that deeper commands are reached.
        if rng.gen_bool(0.5) {
            relay.received(
                conn,
                r#"{"type":"bind","appid":"fuzz","side":"aaaaaaaaaa"}"#,
                1.0e9,
            );
        }
        for i in 0..250 {
            let text = mutate(&mut rng, &frames);
            relay.received(conn, &text, 1.0e9 + i as f64);
            while let Some(out) = relay.poll_output() {
                sent += 1;
                drop(out);
            }
        }
        if rng.gen_bool(0.5) {
            relay.disconnected(conn);
        }
    }
    relay.prune(1.0e9 + 3600.0);
    assert!(sent > 10_000, "the relay answered {sent} frames");
}

#[test]
fn the_client_core_survives_mutated_frames() {
    let frames = captured_frames();
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 1);
    for round in 0..40u8 {
        let mut s = Session::new(
            Config::new("lothar.com/wormhole/text-or-file-xfer"),
            [round; 32],
        );
        let code = Code::parse("9-amulet-wallet").unwrap();
        s.handle(Duration::ZERO, Input::SetCode(code)).unwrap();
        s.handle(Duration::ZERO, Input::Connected { pull: false })
            .unwrap();
        let _ = s.handle(Duration::ZERO, Input::Send(b"x".to_vec()));
        for i in 0..250u64 {
            let text = mutate(&mut rng, &frames);
            s.handle(Duration::from_millis(i), Input::Frame(text))
                .unwrap();
            while s.poll_output().is_some() {}
            if rng.gen_ratio(1, 50) {
                s.handle(Duration::from_millis(i), Input::Disconnected)
                    .unwrap();
                s.handle(Duration::from_millis(i + 600), Input::Tick)
                    .unwrap();
                s.handle(
                    Duration::from_millis(i + 600),
                    Input::Connected { pull: false },
                )
                .unwrap();
            }
        }
        // Whatever happened, the session can still be saved and restored.
        let restored = s
            .to_json()
            .map_err(|e| e.to_string())
            .and_then(|json| Session::from_json(&json, [round; 32]).map_err(|e| e.to_string()));
        assert!(restored.is_ok(), "round {round}: {:?}", restored.err());
    }
}
