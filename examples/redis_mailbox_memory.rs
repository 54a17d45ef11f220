//! Redis memory per open mailbox: opens N mailboxes the way an exchange leaves them while it
//! waits (a nameplate claimed by two sides, a mailbox opened by both, one PAKE message from
//! each, of the size a real client sends), through the relay core on a `RedisStore`, and
//! prints `INFO memory`'s `used_memory` before and after.
//!
//! ```text
//! cargo run --release --example redis_mailbox_memory -- redis://127.0.0.1:6379/0 10000
//! ```
//! Use an empty database: the example writes under the prefix `memtest` and deletes it at the
//! end (by closing every mailbox).

use std::error::Error;

use serde_json::{json, Value};
use wormhole::relay::redis::{RedisOptions, RedisStore};
use wormhole::relay::{Relay, RelayConfig, RelayOutput};

fn used_memory(url: &str) -> Result<u64, Box<dyn Error>> {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", url, "INFO", "memory"])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .ok_or("no used_memory in INFO memory (is redis-cli installed?)")?;
    Ok(line.trim().parse()?)
}

fn run(relay: &mut Relay<RedisStore>, conn: u64, frame: Value) -> Vec<Value> {
    relay.received(conn, &frame.to_string(), 1000.0);
    std::iter::from_fn(|| relay.poll_output())
        .filter_map(|o| match o {
            RelayOutput::Send { conn: c, frame } if c == conn => serde_json::from_str(&frame).ok(),
            _ => None,
        })
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let n: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let options = RedisOptions {
        prefix: "memtest".into(),
        ..RedisOptions::default()
    };
    let store = RedisStore::open(&url, options)?;
    let mut relay = Relay::new(RelayConfig::default(), store, [9; 32]);
    // A PAKE message body as clients send it: hex of {"pake_v1": "<33 bytes hex>"}.
    let pake = hex::encode(format!("{{\"pake_v1\": \"{}\"}}", "ab".repeat(33)));
    let before = used_memory(&url)?;
    let mut mailboxes = Vec::new();
    for i in 0..n {
        let (a, b) = (2 * i + 1, 2 * i + 2);
        relay.connected(a, None, 1000.0);
        relay.connected(b, None, 1000.0);
        run(
            &mut relay,
            a,
            json!({"type": "bind", "appid": "memtest", "side": format!("a{i}")}),
        );
        run(
            &mut relay,
            b,
            json!({"type": "bind", "appid": "memtest", "side": format!("b{i}")}),
        );
        let out = run(&mut relay, a, json!({"type": "allocate"}));
        let nameplate = out
            .iter()
            .find_map(|f| f["nameplate"].as_str())
            .ok_or("no nameplate")?
            .to_owned();
        let out = run(
            &mut relay,
            a,
            json!({"type": "claim", "nameplate": nameplate}),
        );
        let mailbox = out
            .iter()
            .find_map(|f| f["mailbox"].as_str())
            .ok_or("no mailbox")?
            .to_owned();
        run(
            &mut relay,
            b,
            json!({"type": "claim", "nameplate": nameplate}),
        );
        for side in [a, b] {
            run(
                &mut relay,
                side,
                json!({"type": "open", "mailbox": mailbox}),
            );
            run(
                &mut relay,
                side,
                json!({"type": "add", "phase": "pake", "body": pake}),
            );
        }
        mailboxes.push((a, b));
    }
    let after = used_memory(&url)?;
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{n} open mailboxes (nameplate claimed by 2 sides, 2 PAKE messages of {} bytes each): \
         used_memory {before} -> {after} bytes, {per:.0} bytes per mailbox",
        pake.len()
    );
    for (a, b) in mailboxes {
        for side in [a, b] {
            run(&mut relay, side, json!({"type": "close", "mood": "happy"}));
        }
    }
    Ok(())
}
