//! `wormhole-relay bench --flood KIND`: hostile load against a relay on loopback.
//!
//! Each flood runs for `--duration` seconds (and is bounded in connections and bytes as well)
//! from `--flood-source` (127.0.0.2 by default: the relay spares 127.0.0.1 from per-source
//! limits, so the normal exchanges that run meanwhile, from 127.0.0.1, are not limited by the
//! flood's doings, only slowed by its load). Before the floods, the same normal exchanges run
//! alone for the baseline p99. For each flood it prints the relay's peak resident memory
//! growth (`VmHWM` after resetting it through `/proc/PID/clear_refs`, and the largest
//! `VmRSS` sampled every 20 ms), whether every normal exchange completed, their p99 against
//! the baseline, what the relay answered the flood, and whether the relay is still alive.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wormhole::transports::websocket::{parse_ws_url, WebSocketConnection, WebSocketOptions};
use wormhole::transports::Connection;

use crate::bench::{proc_status_kib, rss_kib, run_exchanges, BenchArgs, Stats};

/// The floods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flood {
    /// 100 connections per round listen to one mailbox and never read, while another adds
    /// 30 messages of 400 KiB to it.
    Listeners,
    /// Connections that each allocate, claim and open a fresh mailbox, fill it with large
    /// messages and go away.
    Mailboxes,
    /// Up to 2,000 connections from one source, held open.
    Connections,
    /// Allocate-and-disconnect loops in the normal exchanges' app id.
    Allocate,
    /// 20 connections sending frames over the size limit (2 MiB), and above the transport's
    /// hard limit (5 MiB) every fifth time.
    Oversized,
    /// 200 connections that announce a 1 MiB frame (or send an HTTP request head) and drip it
    /// slowly.
    Slowdrip,
    /// Every flood above, one after the other.
    All,
}

const ALL: [Flood; 6] = [
    Flood::Listeners,
    Flood::Mailboxes,
    Flood::Connections,
    Flood::Allocate,
    Flood::Oversized,
    Flood::Slowdrip,
];

/// How long one connect, handshake or answer may take.
const STEP: Duration = Duration::from_secs(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where and until when a flood runs, and what it saw.
#[derive(Clone)]
struct Ctx {
    url: String,
    relay: SocketAddr,
    source: IpAddr,
    deadline: Instant,
    appid: String,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default, Debug)]
struct Seen {
    connections: u64,
    frames: u64,
    bytes: u64,
    /// Error texts from the relay, and connection failures, with their counts.
    answers: BTreeMap<String, u64>,
}

impl Ctx {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn note(&self, what: impl Into<String>) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen.answers.entry(what.into()).or_default() += 1;
    }

    fn sent(&self, bytes: usize) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.frames += 1;
        seen.bytes += bytes as u64;
    }

    /// A TCP connection to the relay from the flood's source address.
    async fn tcp(&self) -> Result<TcpStream, Error> {
        let socket = if self.source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(self.source, 0))?;
        let stream = tokio::time::timeout(STEP, socket.connect(self.relay)).await??;
        stream.set_nodelay(true)?;
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections += 1;
        Ok(stream)
    }

    /// A WebSocket connection from the flood's source, bound as `side`; `None` (noted) if the
    /// relay refused it.
    async fn bound(&self, side: &str) -> Option<Box<dyn Connection>> {
        let conn = async {
            let stream = self.tcp().await?;
            let options = WebSocketOptions::default().with_handshake_timeout(STEP);
            let mut conn: Box<dyn Connection> =
                Box::new(WebSocketConnection::client_over_with(stream, &self.url, &options).await?);
            let welcome = recv(&mut conn).await?;
            if welcome["type"] != "welcome" {
                return Err(Error::from(format!("{}", welcome["error"])));
            }
            send(
                self,
                &mut conn,
                json!({"type": "bind", "appid": self.appid, "side": side}),
            )
            .await?;
            Ok::<_, Error>(conn)
        };
        match conn.await {
            Ok(conn) => Some(conn),
            Err(e) => {
                self.note(format!("connection refused or failed: {e}"));
                None
            }
        }
    }
}

async fn send(ctx: &Ctx, conn: &mut Box<dyn Connection>, frame: Value) -> Result<(), Error> {
    let text = frame.to_string();
    ctx.sent(text.len());
    tokio::time::timeout(STEP, conn.send(text)).await??;
    Ok(())
}

async fn recv(conn: &mut Box<dyn Connection>) -> Result<Value, Error> {
    let text = tokio::time::timeout(STEP, conn.recv())
        .await??
        .ok_or("closed by the relay")?;
    Ok(serde_json::from_str(&text)?)
}

/// Reads until a frame of one of `types` or an `error` (noted) arrives.
async fn answer(ctx: &Ctx, conn: &mut Box<dyn Connection>, types: &[&str]) -> Option<Value> {
    loop {
        match recv(conn).await {
            Ok(frame) if frame["type"] == "error" => {
                ctx.note(frame["error"].as_str().unwrap_or("?").to_string());
                return None;
            }
            Ok(frame) if types.iter().any(|t| frame["type"] == *t) => return Some(frame),
            Ok(_) => {}
            Err(e) => {
                ctx.note(format!("connection failed: {e}"));
                return None;
            }
        }
    }
}

/// Runs the flood(s) and prints a report for each.
pub async fn run(
    args: &BenchArgs,
    flood: Flood,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let parsed = parse_ws_url(&args.url)?;
    let host: IpAddr = match parsed.host.as_str() {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| "--flood needs a relay URL with an IP address")?,
    };
    if !host.is_loopback() || !args.flood_source.is_loopback() || parsed.secure {
        return Err("floods run only against a ws:// relay on loopback, from loopback".into());
    }
    let Some(pid) = args.relay_pid else {
        return Err("--flood needs --relay-pid (to measure the relay's memory)".into());
    };
    let kinds: Vec<Flood> = if flood == Flood::All {
        ALL.to_vec()
    } else {
        vec![flood]
    };
    if !args.json {
        println!(
            "normal exchanges: {} pairs, {}; each flood is compared with a run without it just before",
            args.pairs,
            args.rate
                .map_or("closed loop".to_string(), |r| format!("{r} offered/s")),
        );
    }
    let mut nonce = 0u64;
    for kind in kinds {
        nonce += 1;
        // The baseline right before each flood: the machine's other load changes over time.
        let base = run_exchanges(args, duration).await?;
        let ctx = Ctx {
            url: args.url.clone(),
            relay: SocketAddr::new(host, parsed.port),
            source: args.flood_source,
            deadline: Instant::now() + duration,
            appid: if kind == Flood::Allocate {
                args.appid.clone()
            } else {
                format!("wormhole-relay/flood-{}-{nonce}", std::process::id())
            },
            seen: Arc::default(),
        };
        let mut report = one(args, pid, kind, ctx, duration, &base).await;
        report.base_failed = base.failed;
        report.print(args.json);
        // Let the relay drop what the flood left before the next one.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

struct Report {
    kind: Flood,
    rss_before_kib: Option<u64>,
    peak_kib: Option<u64>,
    normal: Stats,
    base_p99_ms: f64,
    base_failed: u64,
    alive: bool,
    seen: Seen,
}

impl Report {
    fn growth_mib(&self) -> Option<f64> {
        Some(self.peak_kib?.saturating_sub(self.rss_before_kib?) as f64 / 1024.0)
    }

    fn print(&self, json: bool) {
        let growth = self.growth_mib();
        let ratio = if self.base_p99_ms > 0.0 {
            self.normal.p99_ms / self.base_p99_ms
        } else {
            0.0
        };
        if json {
            let out = json!({
                "flood": format!("{:?}", self.kind).to_lowercase(),
                "relay_rss_before_kib": self.rss_before_kib,
                "relay_peak_kib": self.peak_kib,
                "relay_growth_mib": growth,
                "normal_exchanges": self.normal.done,
                "normal_failed": self.normal.failed,
                "normal_first_error": self.normal.first_error,
                "normal_p99_ms": self.normal.p99_ms,
                "baseline_p99_ms": self.base_p99_ms,
                "baseline_failed": self.base_failed,
                "p99_ratio": ratio,
                "relay_alive": self.alive,
                "flood_connections": self.seen.connections,
                "flood_frames": self.seen.frames,
                "flood_bytes": self.seen.bytes,
                "flood_answers": self.seen.answers,
            });
            println!("{out}");
            return;
        }
        println!(
            "flood {:?}: {} connections, {} frames, {:.1} MiB sent",
            self.kind,
            self.seen.connections,
            self.seen.frames,
            self.seen.bytes as f64 / 1048576.0
        );
        for (answer, count) in &self.seen.answers {
            println!("  {count:>6} x {answer}");
        }
        match (self.rss_before_kib, growth) {
            (Some(before), Some(growth)) => println!(
                "  relay memory: {:.1} MiB before, peak growth {growth:.1} MiB (goal <= 64)",
                before as f64 / 1024.0
            ),
            _ => println!("  relay memory: unknown"),
        }
        println!(
            "  normal exchanges: {} completed, {} failed; p99 {:.2} ms vs {:.2} ms without a flood ({ratio:.1}x; goal <= 10x)",
            self.normal.done, self.normal.failed, self.normal.p99_ms, self.base_p99_ms
        );
        if let Some(e) = &self.normal.first_error {
            println!("  first normal failure: {e}");
        }
        println!("  relay alive: {}", if self.alive { "yes" } else { "NO" });
    }
}

async fn one(
    args: &BenchArgs,
    pid: u32,
    kind: Flood,
    ctx: Ctx,
    duration: Duration,
    base: &Stats,
) -> Report {
    // Reset the relay's peak RSS (VmHWM); if that is not allowed, sampling still works.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let rss_before_kib = rss_kib(pid);
    let sampling_until = ctx.deadline + Duration::from_secs(3);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while Instant::now() < sampling_until {
            peak = peak.max(rss_kib(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    // The flood runs on a thread and runtime of its own, so that its work does not delay the
    // normal exchanges' tasks here (the relay still shares the machine with both).
    let flood_ctx = ctx.clone();
    let flood = tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(flood(kind, flood_ctx)),
            Err(e) => eprintln!("cannot start the flood's runtime: {e}"),
        }
    });
    let normal = match run_exchanges(args, duration).await {
        Ok(stats) => stats,
        Err(e) => Stats {
            elapsed: 0.0,
            done: 0,
            failed: 1,
            p50_ms: 0.0,
            p99_ms: 0.0,
            first_error: Some(e.to_string()),
        },
    };
    // The flood stops at its deadline; whatever it still holds is dropped here.
    // Every step of a flood has a deadline, so it ends soon after its own.
    if tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .is_err()
    {
        eprintln!("the flood did not stop in time");
    }
    let sampled = sampler.await.unwrap_or(0);
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak_kib = Some(sampled.max(hwm)).filter(|&p| p > 0);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists() && ping(&args.url).await;
    let seen = std::mem::take(&mut *ctx.seen.lock().unwrap_or_else(|e| e.into_inner()));
    Report {
        kind,
        rss_before_kib,
        peak_kib,
        normal,
        base_p99_ms: base.p99_ms,
        base_failed: 0,
        alive,
        seen,
    }
}

/// Whether the relay answers a ping from 127.0.0.1.
async fn ping(url: &str) -> bool {
    use wormhole::transports::websocket::WebSocketTransport;
    use wormhole::transports::Transport;
    let check = async {
        let mut c = WebSocketTransport::default().connect(url).await.ok()?;
        c.send(r#"{"type":"ping","ping":42}"#.into()).await.ok()?;
        loop {
            let frame: Value = serde_json::from_str(&c.recv().await.ok()??).ok()?;
            if frame["type"] == "pong" {
                return Some(());
            }
        }
    };
    matches!(tokio::time::timeout(STEP, check).await, Ok(Some(())))
}

async fn flood(kind: Flood, ctx: Ctx) {
    match kind {
        Flood::Listeners => listeners(ctx).await,
        Flood::Mailboxes => mailboxes(ctx).await,
        Flood::Connections => connections(ctx).await,
        Flood::Allocate => allocate(ctx).await,
        Flood::Oversized => oversized(ctx).await,
        Flood::Slowdrip => slowdrip(ctx).await,
        Flood::All => {}
    }
}

/// A hex body of about `bytes`.
fn body(bytes: usize) -> String {
    "ab".repeat(bytes / 2)
}

async fn listeners(ctx: Ctx) {
    for round in 0..20 {
        if !ctx.running() {
            return;
        }
        let mailbox = format!("flood-{round}");
        let Some(mut adder) = ctx.bound("adder").await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if send(
            &ctx,
            &mut adder,
            json!({"type": "open", "mailbox": mailbox}),
        )
        .await
        .is_err()
        {
            continue;
        }
        let mut deaf = Vec::new();
        for i in 0..100 {
            if !ctx.running() {
                break;
            }
            if let Some(mut c) = ctx.bound(&format!("deaf{i}")).await {
                let _ = send(&ctx, &mut c, json!({"type": "open", "mailbox": mailbox})).await;
                deaf.push(c); // never read
            }
        }
        for phase in 0..30 {
            if !ctx.running() {
                break;
            }
            let frame =
                json!({"type": "add", "phase": phase.to_string(), "body": body(400 * 1024)});
            if send(&ctx, &mut adder, frame).await.is_err()
                || answer(&ctx, &mut adder, &["message"]).await.is_none()
            {
                break;
            }
        }
        drop(deaf);
    }
}

async fn mailboxes(ctx: Ctx) {
    // 20 workers at once, as an attacker would.
    let mut tasks = Vec::new();
    for worker in 0..20u64 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(
            async move { mailboxes_worker(ctx, worker).await },
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn mailboxes_worker(ctx: Ctx, worker: u64) {
    let mut n = worker * 1000;
    while ctx.running() && n < worker * 1000 + 100 {
        n += 1;
        let Some(mut c) = ctx.bound(&format!("m{n}")).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Up to three mailboxes held by this one connection: an allocated nameplate's, a
        // claimed one's, and a bare one filled with messages.
        let _ = send(&ctx, &mut c, json!({"type": "allocate"})).await;
        answer(&ctx, &mut c, &["allocated"]).await;
        let _ = send(
            &ctx,
            &mut c,
            json!({"type": "claim", "nameplate": (500 + n).to_string()}),
        )
        .await;
        answer(&ctx, &mut c, &["claimed"]).await;
        let _ = send(
            &ctx,
            &mut c,
            json!({"type": "open", "mailbox": format!("fill-{n}")}),
        )
        .await;
        for phase in 0..8 {
            let frame =
                json!({"type": "add", "phase": phase.to_string(), "body": body(512 * 1024)});
            if !ctx.running()
                || send(&ctx, &mut c, frame).await.is_err()
                || answer(&ctx, &mut c, &["message"]).await.is_none()
            {
                break;
            }
        }
        // Gone without closing anything.
    }
}

async fn connections(ctx: Ctx) {
    let mut held = Vec::new();
    let mut n = 0;
    while ctx.running() && n < 2000 {
        n += 1;
        if let Some(c) = ctx.bound(&format!("c{n}")).await {
            held.push(c);
        }
    }
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    drop(held);
}

async fn allocate(ctx: Ctx) {
    let mut n = 0;
    while ctx.running() && n < 5000 {
        n += 1;
        let Some(mut c) = ctx.bound(&format!("alloc{n}")).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = send(&ctx, &mut c, json!({"type": "allocate"})).await;
        if answer(&ctx, &mut c, &["allocated"]).await.is_some() {
            ctx.note("allocated");
        }
        drop(c); // and disconnect, keeping the nameplate
    }
}

async fn oversized(ctx: Ctx) {
    let mut tasks = Vec::new();
    for worker in 0..20 {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while ctx.running() && n < 500 {
                let Some(mut c) = ctx.bound(&format!("big{worker}-{n}")).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    n += 1;
                    continue;
                };
                while ctx.running() && n < 500 {
                    n += 1;
                    let size = if n.is_multiple_of(5) {
                        5 << 20
                    } else {
                        2 << 20
                    };
                    let frame = json!({"type": "ping", "ping": 1, "pad": "x".repeat(size)});
                    if send(&ctx, &mut c, frame).await.is_err() {
                        ctx.note("connection failed while sending");
                        break;
                    }
                    if answer(&ctx, &mut c, &["pong"]).await.is_none() && size > 4 << 20 {
                        break; // over the hard limit the relay drops the connection
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn slowdrip(ctx: Ctx) {
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        if !ctx.running() {
            break;
        }
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut tcp) = ctx.tcp().await else {
                ctx.note("connect failed");
                return;
            };
            let head = format!(
                "GET /v1 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                ctx.relay
            );
            let result = if i.is_multiple_of(2) {
                // The request head, a byte every 100 ms.
                drip(&ctx, &mut tcp, head.as_bytes(), 1).await
            } else {
                // A whole handshake, then a 1 MiB frame, 4 KiB every 100 ms.
                async {
                    tcp.write_all(head.as_bytes()).await?;
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = tokio::time::timeout(STEP, tcp.read(&mut buf)).await??;
                        if n == 0 {
                            return Err(Error::from("closed in the handshake"));
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    // FIN + text; masked, 64-bit length; a zero mask key.
                    let len: u64 = 1 << 20;
                    let mut header = vec![0x81u8, 0x80 | 127];
                    header.extend_from_slice(&len.to_be_bytes());
                    header.extend_from_slice(&[0, 0, 0, 0]);
                    tcp.write_all(&header).await?;
                    drip(&ctx, &mut tcp, &vec![b'a'; len as usize], 4096).await
                }
                .await
            };
            match result {
                Ok(()) => ctx.note("drip finished"),
                Err(e) => ctx.note(format!("drip cut: {e}")),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Writes `bytes` in pieces of `piece` every 100 ms until done or the deadline.
async fn drip(ctx: &Ctx, tcp: &mut TcpStream, bytes: &[u8], piece: usize) -> Result<(), Error> {
    for chunk in bytes.chunks(piece) {
        if !ctx.running() {
            return Ok(());
        }
        tokio::time::timeout(STEP, tcp.write_all(chunk)).await??;
        ctx.sent(chunk.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
