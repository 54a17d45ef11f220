//! The relay core's cost per exchange on each store, without sockets: `cargo bench --bench
//! relay_store`. Drives `Relay` directly with the frames of `wormhole-relay bench`'s exchange
//! (two connections: bind, allocate, claim, open, add, release, close) while `BACKGROUND`
//! other nameplates and mailboxes stay open (as with 100 concurrent pairs), and prints
//! exchanges per second and microseconds per exchange, side by side in one run, for: the
//! memory store; SQLite on a file committing each command by itself (a relay with one client
//! at a time); and SQLite committing the commands of one exchange step together (the runner
//! batches what arrives together); and, when `redis-server` is on the PATH, the Redis store on
//! a server of its own on loopback, with the round trips to Redis per exchange.

use std::time::{Duration, Instant};

use serde_json::Value;
use wormhole::relay::{MailboxStore, MemoryStore, Relay, RelayConfig, RelayOutput, SqliteStore};

const EXCHANGES: u64 = 3000;
const BACKGROUND: u64 = 100;

struct Driver<S: MailboxStore> {
    relay: Relay<S>,
    batched: bool,
    open: bool,
    now: f64,
}

impl<S: MailboxStore> Driver<S> {
    fn new(store: S, batched: bool) -> Self {
        Driver {
            relay: Relay::new(RelayConfig::default(), store, [7; 32]),
            batched,
            open: false,
            now: 1.0e9,
        }
    }

    fn input(&mut self, conn: u64, frame: &str) {
        if self.batched && !self.open {
            self.relay.begin_batch();
            self.open = true;
        }
        self.now += 0.0001;
        self.relay.received(conn, frame, self.now);
    }

    /// Ends the step (commits a batch) and returns its frames.
    fn flush(&mut self) -> Vec<Value> {
        if self.open {
            self.relay.end_batch();
            self.open = false;
        }
        let mut frames = Vec::new();
        while let Some(out) = self.relay.poll_output() {
            if let RelayOutput::Send { frame, .. } = out {
                frames.push(serde_json::from_str(&frame).expect("JSON out"));
            }
        }
        frames
    }

    fn field(frames: &[Value], kind: &str, field: &str) -> String {
        frames
            .iter()
            .find(|f| f["type"] == kind)
            .and_then(|f| f[field].as_str())
            .unwrap_or_else(|| panic!("no {kind} in {frames:?}"))
            .to_owned()
    }

    /// One exchange; with `finish` false, the pair stays (bound, claimed, open).
    fn exchange(&mut self, n: u64, finish: bool) {
        let (a, b) = (2 * n, 2 * n + 1);
        self.relay.connected(a, None, self.now);
        self.relay.connected(b, None, self.now);
        self.input(
            a,
            &format!(r#"{{"type":"bind","appid":"bench","side":"a{n}"}}"#),
        );
        self.input(
            b,
            &format!(r#"{{"type":"bind","appid":"bench","side":"b{n}"}}"#),
        );
        self.input(a, r#"{"type":"allocate"}"#);
        let nameplate = Self::field(&self.flush(), "allocated", "nameplate");
        for c in [a, b] {
            self.input(
                c,
                &format!(r#"{{"type":"claim","nameplate":"{nameplate}"}}"#),
            );
        }
        let mailbox = Self::field(&self.flush(), "claimed", "mailbox");
        for c in [a, b] {
            self.input(c, &format!(r#"{{"type":"open","mailbox":"{mailbox}"}}"#));
            self.input(
                c,
                &format!(r#"{{"type":"add","phase":"pake","body":"{n:064}"}}"#),
            );
        }
        let echoes = self.flush();
        assert_eq!(echoes.iter().filter(|f| f["type"] == "message").count(), 4);
        if !finish {
            return;
        }
        for c in [a, b] {
            self.input(
                c,
                &format!(r#"{{"type":"release","nameplate":"{nameplate}"}}"#),
            );
            self.input(c, r#"{"type":"close","mood":"happy"}"#);
        }
        let closed = self.flush();
        assert_eq!(closed.iter().filter(|f| f["type"] == "closed").count(), 2);
        self.relay.disconnected(a);
        self.relay.disconnected(b);
    }
}

/// CPU time this thread has used (Linux: `/proc/thread-self/schedstat`), if known. Unlike
/// wall time, it hardly depends on what else the machine runs.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs the exchanges; returns CPU microseconds per exchange (wall time if CPU time is not
/// available).
fn run<S: MailboxStore>(name: &str, store: S, batched: bool) -> f64 {
    run_counting(name, store, batched, |_| 0).0
}

/// [`run`], also returning how much `count` (of the store) grew per timed exchange.
fn run_counting<S: MailboxStore>(
    name: &str,
    store: S,
    batched: bool,
    count: impl Fn(&S) -> u64,
) -> (f64, f64) {
    let mut d = Driver::new(store, batched);
    for n in 0..BACKGROUND {
        d.exchange(n, false);
    }
    let counted = count(d.relay.store());
    let (start, cpu_start) = (Instant::now(), cpu_time());
    for n in BACKGROUND..BACKGROUND + EXCHANGES {
        d.exchange(n, true);
    }
    let wall = start.elapsed();
    let counted = (count(d.relay.store()) - counted) as f64 / EXCHANGES as f64;
    let cpu = cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end.saturating_sub(start));
    let per = |t: Duration| t.as_secs_f64() * 1e6 / EXCHANGES as f64;
    let cpu_us = cpu.map(per);
    println!(
        "| {name} | {:.0} | {:.1} | {} |",
        EXCHANGES as f64 / wall.as_secs_f64(),
        per(wall),
        cpu_us.map_or("n/a".to_string(), |c| format!("{c:.1}")),
    );
    (cpu_us.unwrap_or(per(wall)), counted)
}

/// The Redis store on a `redis-server` of its own (loopback, a free port, no persistence),
/// or a note that it was skipped.
#[cfg(feature = "redis")]
fn run_redis(dir: &std::path::Path) -> Option<f64> {
    use std::process::{Command, Stdio};
    use wormhole::relay::redis::{RedisOptions, RedisStore};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        println!("| Redis | skipped: no redis-server on the PATH | | |");
        return None;
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match RedisStore::open(&url, RedisOptions::default()) {
            Ok(store) => break Some(store),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                println!("| Redis | skipped: redis-server did not start: {e} | | |");
                break None;
            }
        }
    };
    let trips = store.map(|store| {
        let name = "Redis on loopback, a transaction per command";
        run_counting(name, store, false, RedisStore::round_trips).1
    });
    let _ = child.kill();
    let _ = child.wait();
    trips
}

fn main() {
    let dir = std::env::temp_dir().join(format!("wormhole-bench-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("{EXCHANGES} exchanges, {BACKGROUND} other pairs open, no sockets\n");
    println!("| store | exchanges/s (wall) | µs per exchange (wall) | CPU µs per exchange |");
    println!("|---|---|---|---|");
    let memory = run("memory", MemoryStore::default(), false);
    let each = run(
        "SQLite file, a commit per command",
        SqliteStore::open(dir.join("each.sqlite")).expect("db"),
        false,
    );
    run(
        "SQLite in memory (no file), a commit per command",
        SqliteStore::in_memory().expect("db"),
        false,
    );
    let batched = run(
        "SQLite file, a commit per step (batch)",
        SqliteStore::open(dir.join("batched.sqlite")).expect("db"),
        true,
    );
    #[cfg(feature = "redis")]
    let redis_trips = run_redis(&dir);
    println!(
        "\nCPU per exchange added by SQLite: {:.0} µs committing each command, {:.0} µs batched",
        each - memory,
        batched - memory
    );
    #[cfg(feature = "redis")]
    if let Some(trips) = redis_trips {
        println!("Round trips to Redis per exchange (13 commands): {trips:.1}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
