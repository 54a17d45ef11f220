//! `wormhole-relay bench`: a load generator at the mailbox level, over WebSocket (`ws://`)
//! or HTTP polling (`http://`).
//!
//! Each exchange uses two fresh connections (sessions, over HTTP), as two wormhole clients
//! would: side A
//! binds, allocates, claims and opens; side B binds, claims the same nameplate and opens; each
//! adds one message and waits for the other's; then both release and close. Latency is the
//! wall time of a whole exchange. With `--idle M` it instead holds M bound connections for the
//! duration and reports how many still answer a `ping` at the end (and the relay's memory if
//! `--relay-pid` is given). `--latency N` measures message delivery: one side adds N messages,
//! one at a time, and the other's receipt of each is timed (over HTTP, through its long poll).
//! `--idle-client SECS` runs one real client (the library, with `--schedule`) that allocates a
//! code and waits, and reports the HTTP requests the relay counted meanwhile (from its
//! `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::oneshot;
use wormhole::transports::http::{HttpClientOptions, HttpTransport};
use wormhole::transports::websocket::{raise_nofile_limit, WebSocketOptions, WebSocketTransport};
use wormhole::transports::{split_scheme, Connection, Delivery, Transport};
use wormhole::wire::{ClientFrame, ClientMessage, ServerFrame, ServerMessage};

/// How long one exchange may take before it counts as failed.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `wormhole-relay bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Relay URL: `ws://HOST:PORT/v1` (any mailbox server, the Python one included) or
    /// `http://HOST:PORT/v1` (HTTP polling on our relay).
    #[arg(long)]
    pub url: String,
    /// Concurrent pairs, each running exchanges back to back.
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Open loop: start exchanges at this total rate (per second, spread over the pairs)
    /// instead of back to back. Latency is then measured from each exchange's scheduled
    /// start, so a relay that falls behind shows it.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Hold this many idle bound connections instead of running exchanges.
    #[arg(long)]
    pub idle: Option<usize>,
    /// With `--idle` over HTTP: each idle client keeps a long poll parked at the relay.
    #[arg(long)]
    pub long_poll: bool,
    /// Time the delivery of this many messages, one at a time, from one side to the other.
    #[arg(long)]
    pub latency: Option<usize>,
    /// Run one real client that allocates a code and waits this many seconds; report the
    /// HTTP requests the relay counted meanwhile (needs its `/metrics` on the same port).
    #[arg(long, value_name = "SECS")]
    pub idle_client: Option<f64>,
    /// The schedule of `--idle-client`: face-to-face or long-lived.
    #[arg(long, default_value = "face-to-face")]
    pub schedule: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// PID of the relay process, to report its resident memory (Linux).
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Application id used for the exchanges.
    #[arg(long, default_value = "wormhole-relay/bench")]
    pub appid: String,
    /// Worker threads of the load generator (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hostile load instead: run this flood (or `all`) against a relay on loopback, with
    /// normal exchanges (`--pairs`, `--rate`) going on at the same time, and report the
    /// relay's memory growth (needs `--relay-pid`) and the normal exchanges' p99 latency
    /// against a run without the flood. Each flood lasts `--duration` seconds.
    #[arg(long, value_enum)]
    pub flood: Option<crate::flood::Flood>,
    /// The loopback address floods connect from (the relay spares 127.0.0.1 from per-source
    /// limits unless run with --limit-loopback, so normal exchanges come from there).
    #[arg(long, default_value = "127.0.0.2")]
    pub flood_source: std::net::IpAddr,
}

type BenchError = Box<dyn std::error::Error + Send + Sync>;

pub async fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let _ = raise_nofile_limit();
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        return Err("--duration must be a positive number of seconds".into());
    }
    let duration = Duration::from_secs_f64(args.duration);
    if let Some(flood) = args.flood {
        return crate::flood::run(&args, flood, duration).await;
    }
    if let Some(secs) = args.idle_client {
        return idle_client(&args, secs).await;
    }
    if let Some(n) = args.latency {
        return latency(&args, n).await;
    }
    match args.idle {
        Some(m) => idle(&args, m, duration).await,
        None => exchanges(&args, duration).await,
    }
}

/// The transport for the URL's scheme.
fn transport_for(url: &str) -> Result<Arc<dyn Transport>, Box<dyn std::error::Error>> {
    let (scheme, _) = split_scheme(url)?;
    Ok(match scheme {
        "ws" | "wss" => Arc::new(WebSocketTransport::new(WebSocketOptions::default())),
        "http" | "https" => Arc::new(HttpTransport::default()),
        other => return Err(format!("the bench speaks ws:// and http://, not {other}://").into()),
    })
}

/// What a run of normal exchanges did.
#[derive(Debug, Clone)]
pub struct Stats {
    pub elapsed: f64,
    pub done: usize,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub first_error: Option<String>,
}

async fn exchanges(args: &BenchArgs, duration: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let stats = run_exchanges(args, duration).await?;
    let Stats {
        elapsed,
        done,
        failed,
        p50_ms,
        p99_ms,
        first_error,
    } = stats;
    let rate = done as f64 / elapsed;
    if args.json {
        let out = serde_json::json!({
            "url": args.url,
            "pairs": args.pairs,
            "rate": args.rate,
            "duration_s": elapsed,
            "exchanges": done,
            "exchanges_per_s": rate,
            "p50_ms": p50_ms,
            "p99_ms": p99_ms,
            "failed": failed,
            "first_error": first_error,
        });
        println!("{out}");
    } else {
        let mode = match args.rate {
            Some(r) => format!(" (open loop, {r} offered/s)"),
            None => String::new(),
        };
        println!(
            "{done} exchanges in {elapsed:.1} s with {} pairs{mode}: {rate:.0} exchanges/s, \
             p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms, {failed} failed",
            args.pairs,
        );
        if let Some(e) = first_error {
            println!("first failure: {e}");
        }
    }
    Ok(())
}

/// Runs `--pairs` pairs of exchanges (closed loop, or open loop at `--rate`) for `duration`.
pub async fn run_exchanges(
    args: &BenchArgs,
    duration: Duration,
) -> Result<Stats, Box<dyn std::error::Error>> {
    let transport = transport_for(&args.url)?;
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let end = start + duration;
    let pairs = args.pairs.max(1);
    // With --rate, each pair starts an exchange every `pairs / rate` seconds, staggered.
    let interval = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Some(Duration::from_secs_f64(pairs as f64 / rate))
        }
        Some(_) => return Err("--rate must be a positive number".into()),
        None => None,
    };
    let mut workers = Vec::new();
    for worker in 0..pairs {
        let transport = transport.clone();
        let url = args.url.clone();
        let appid = args.appid.clone();
        let failed = failed.clone();
        let first_error = first_error.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            let mut scheduled = interval.map(|i| start + i.mul_f64(worker as f64 / pairs as f64));
            while Instant::now() < end {
                n += 1;
                let sides = (format!("a{worker:05}{n:04}"), format!("b{worker:05}{n:04}"));
                let t0 = match (scheduled, interval) {
                    (Some(at), Some(i)) => {
                        if at >= end {
                            break;
                        }
                        tokio::time::sleep_until(at.into()).await;
                        scheduled = Some(at + i);
                        at
                    }
                    _ => Instant::now(),
                };
                let outcome = tokio::time::timeout(
                    EXCHANGE_TIMEOUT,
                    exchange(&transport, &url, &appid, sides),
                )
                .await;
                match outcome {
                    Ok(Ok(())) => latencies.push(t0.elapsed()),
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "exchange timed out".to_string(),
                        };
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(why);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let first_error = first_error.lock().ok().and_then(|e| e.clone());
    Ok(Stats {
        elapsed,
        done: latencies.len(),
        failed: failed.load(Ordering::Relaxed),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        first_error,
    })
}

/// One exchange between two fresh connections.
async fn exchange(
    transport: &Arc<dyn Transport>,
    url: &str,
    appid: &str,
    (side_a, side_b): (String, String),
) -> Result<(), BenchError> {
    let (nameplate_tx, nameplate_rx) = oneshot::channel::<String>();
    let a = async {
        let mut c = Mini::connect(transport, url, appid, &side_a).await?;
        c.send(ClientMessage::Allocate).await?;
        let nameplate = match c
            .expect(|m| matches!(m, ServerMessage::Allocated { .. }))
            .await?
        {
            ServerMessage::Allocated { nameplate } => nameplate,
            _ => return Err("no nameplate".into()),
        };
        let _ = nameplate_tx.send(nameplate.clone());
        c.run_side(&nameplate, &side_b).await
    };
    let b = async {
        let nameplate = nameplate_rx.await.map_err(|_| "side A failed")?;
        let mut c = Mini::connect(transport, url, appid, &side_b).await?;
        c.run_side(&nameplate, &side_a).await
    };
    let (ra, rb) = tokio::join!(a, b);
    ra?;
    rb
}

/// A bare mailbox-level client.
struct Mini {
    conn: Box<dyn Connection>,
}

impl Mini {
    async fn connect(
        transport: &Arc<dyn Transport>,
        url: &str,
        appid: &str,
        side: &str,
    ) -> Result<Mini, BenchError> {
        let conn = transport.connect(url).await?;
        let mut mini = Mini { conn };
        mini.send(ClientMessage::Bind {
            appid: appid.into(),
            side: side.into(),
            client_version: None,
        })
        .await?;
        Ok(mini)
    }

    async fn send(&mut self, message: ClientMessage) -> Result<(), BenchError> {
        self.conn.send(ClientFrame::new(message).to_json()).await?;
        Ok(())
    }

    /// Reads frames until one satisfies `want`; an `error` frame fails.
    async fn expect(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, BenchError> {
        // A pull connection fetches on request: one poll (a long poll) per wait.
        let mut polled = self.conn.delivery() == Delivery::Push;
        loop {
            let text = if polled {
                self.conn.recv().await?
            } else {
                // What the answers to sends brought first; else ask for more.
                match tokio::time::timeout(Duration::ZERO, self.conn.recv()).await {
                    Ok(got) => got?,
                    Err(_) => {
                        polled = true;
                        self.conn.poll().await?;
                        self.conn.recv().await?
                    }
                }
            }
            .ok_or("connection closed")?;
            let frame = ServerFrame::parse(&text)?;
            if let ServerMessage::Error { error, .. } = &frame.message {
                return Err(format!("relay error: {error}").into());
            }
            if want(&frame.message) {
                return Ok(frame.message);
            }
        }
    }

    /// Reads frames until one satisfies `want`, without asking a pull connection to poll
    /// (the caller did).
    async fn expect_pushed(
        &mut self,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> Result<ServerMessage, BenchError> {
        loop {
            let text = self.conn.recv().await?.ok_or("connection closed")?;
            let frame = ServerFrame::parse(&text)?;
            if want(&frame.message) {
                return Ok(frame.message);
            }
        }
    }

    /// Claim, open, add, wait for the peer's message, release, close.
    async fn run_side(&mut self, nameplate: &str, peer: &str) -> Result<(), BenchError> {
        self.send(ClientMessage::Claim {
            nameplate: nameplate.into(),
        })
        .await?;
        let mailbox = match self
            .expect(|m| matches!(m, ServerMessage::Claimed { .. }))
            .await?
        {
            ServerMessage::Claimed { mailbox } => mailbox,
            _ => return Err("no mailbox".into()),
        };
        self.send(ClientMessage::Open {
            mailbox: mailbox.clone(),
        })
        .await?;
        self.send(ClientMessage::Add {
            phase: "pake".into(),
            body: "7b7d".into(),
        })
        .await?;
        self.expect(|m| matches!(m, ServerMessage::Message { side, .. } if side == peer))
            .await?;
        self.send(ClientMessage::Release {
            nameplate: Some(nameplate.into()),
        })
        .await?;
        self.send(ClientMessage::Close {
            mailbox: Some(mailbox),
            mood: Some("happy".into()),
        })
        .await?;
        self.expect(|m| matches!(m, ServerMessage::Closed)).await?;
        let _ = self.conn.close().await;
        Ok(())
    }
}

async fn idle(
    args: &BenchArgs,
    count: usize,
    duration: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    // Idle HTTP clients hold no connection between requests (as after the relay's keep-alive
    // timeout), so what is measured is the session; a parked long poll (`--long-poll`) holds
    // one connection.
    let transport: Arc<dyn Transport> = if args.url.starts_with("http") {
        Arc::new(HttpTransport::new(HttpClientOptions {
            keep_alive: false,
            ..HttpClientOptions::default()
        }))
    } else {
        transport_for(&args.url)?
    };
    let long_poll = args.long_poll;
    let rss_before = args.relay_pid.and_then(rss_kib);
    // Connect in waves so the listen queue is not the thing being measured.
    let mut conns: Vec<Mini> = Vec::with_capacity(count);
    let mut connect_failures = 0usize;
    let mut first_error = None;
    for chunk_start in (0..count).step_by(250) {
        let mut tasks = Vec::new();
        for i in chunk_start..(chunk_start + 250).min(count) {
            let transport = transport.clone();
            let url = args.url.clone();
            let appid = args.appid.clone();
            tasks.push(tokio::spawn(async move {
                let side = format!("idle{i:06}");
                let mut m = Mini::connect(&transport, &url, &appid, &side).await?;
                // Wait for the bind's ack so the relay really holds a bound connection.
                m.expect(|msg| matches!(msg, ServerMessage::Ack { .. }))
                    .await?;
                if long_poll {
                    m.conn.poll().await?;
                }
                Ok::<Mini, BenchError>(m)
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(m)) => conns.push(m),
                Ok(Err(e)) => {
                    connect_failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    connect_failures += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
    let connected = conns.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = args.relay_pid.and_then(rss_kib);
    tokio::time::sleep(duration).await;
    let rss_end = args.relay_pid.and_then(rss_kib);
    // Everyone pings; count the answers.
    let mut tasks = Vec::new();
    for (i, mut m) in conns.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let n = i as i64;
            m.send(ClientMessage::Ping { ping: n }).await.ok()?;
            let answer = tokio::time::timeout(
                Duration::from_secs(20),
                m.expect(move |msg| matches!(msg, ServerMessage::Pong { pong } if *pong == n)),
            )
            .await;
            matches!(answer, Ok(Ok(_))).then_some(m)
        }));
    }
    let mut answering = 0usize;
    let mut keep = Vec::new();
    for t in tasks {
        if let Ok(Some(m)) = t.await {
            answering += 1;
            keep.push(m);
        }
    }
    let per = |after: Option<u64>| match (rss_before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a.saturating_sub(b)) as f64 / connected as f64)
        }
        _ => None,
    };
    let per_conn = per(rss_connected);
    let per_conn_end = per(rss_end);
    if args.json {
        let out = serde_json::json!({
            "url": args.url,
            "idle": count,
            "connected": connected,
            "answering": answering,
            "connect_failures": connect_failures,
            "first_error": first_error,
            "relay_rss_before_kib": rss_before,
            "relay_rss_connected_kib": rss_connected,
            "relay_kib_per_connection": per_conn,
            "relay_rss_end_kib": rss_end,
            "relay_kib_per_connection_end": per_conn_end,
            "long_poll": long_poll,
        });
        println!("{out}");
    } else {
        println!(
            "{connected}/{count} idle connections bound, {answering} answered a ping after {:.0} s",
            duration.as_secs_f64()
        );
        if let (Some(b), Some(a), Some(p)) = (rss_before, rss_connected, per_conn) {
            println!("relay RSS {b} KiB before, {a} KiB with the connections: {p:.2} KiB each");
        }
        if let (Some(e), Some(p)) = (rss_end, per_conn_end) {
            println!("relay RSS {e} KiB at the end of the hold: {p:.2} KiB each");
        }
        if let Some(e) = first_error {
            println!("first failure: {e}");
        }
    }
    drop(keep);
    Ok(())
}

/// One pair in one mailbox; side A adds `n` messages one at a time, and the time until side B
/// has each is measured.
async fn latency(args: &BenchArgs, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let transport = transport_for(&args.url)?;
    let run = async {
        let mut a = Mini::connect(&transport, &args.url, &args.appid, "lat-a").await?;
        a.send(ClientMessage::Allocate).await?;
        let nameplate = match a
            .expect(|m| matches!(m, ServerMessage::Allocated { .. }))
            .await?
        {
            ServerMessage::Allocated { nameplate } => nameplate,
            _ => return Err::<Vec<Duration>, BenchError>("no nameplate".into()),
        };
        let mut b = Mini::connect(&transport, &args.url, &args.appid, "lat-b").await?;
        let mut mailbox = String::new();
        for m in [&mut a, &mut b] {
            m.send(ClientMessage::Claim {
                nameplate: nameplate.clone(),
            })
            .await?;
            if let ServerMessage::Claimed { mailbox: id } = m
                .expect(|m| matches!(m, ServerMessage::Claimed { .. }))
                .await?
            {
                mailbox = id;
            }
            m.send(ClientMessage::Open {
                mailbox: mailbox.clone(),
            })
            .await?;
        }
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            // Let B's poll settle at the relay (a long poll parked, over HTTP).
            if b.conn.delivery() == Delivery::Pull {
                b.conn.poll().await?;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
            let phase = format!("{i}");
            let t0 = Instant::now();
            a.send(ClientMessage::Add {
                phase: phase.clone(),
                body: "7b7d".into(),
            })
            .await?;
            b.expect_pushed(|m| matches!(m, ServerMessage::Message { side, phase: p, .. } if side == "lat-a" && *p == phase))
                .await?;
            times.push(t0.elapsed());
        }
        Ok(times)
    };
    let mut times = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .map_err(|_| "the latency run timed out")?
        .map_err(|e| e.to_string())?;
    times.sort();
    let pct = |p: f64| -> f64 {
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        times
            .get(i.min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    if args.json {
        let out = serde_json::json!({
            "url": args.url, "messages": times.len(),
            "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
        });
        println!("{out}");
    } else {
        println!(
            "{} messages delivered one at a time: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
            times.len(),
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
    }
    Ok(())
}

/// One real client allocates a code and waits; the relay's `/metrics` tell how many HTTP
/// requests it made meanwhile.
async fn idle_client(args: &BenchArgs, secs: f64) -> Result<(), Box<dyn std::error::Error>> {
    let preset: wormhole::SchedulePreset = args.schedule.parse()?;
    let (_, rest) = split_scheme(&args.url)?;
    let authority = rest.split('/').next().unwrap_or(rest).to_string();
    let mut w = wormhole::Wormhole::new(&args.appid, &args.url).with_preset(preset);
    w.allocate_code(2).await?;
    // Let the opening requests pass, then count over the idle period only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = scrape_requests(&authority).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after = scrape_requests(&authority).await?;
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    // The scrape itself is one request.
    let requests = after.saturating_sub(before).saturating_sub(1);
    let per_minute = requests as f64 / minutes;
    if args.json {
        let out = serde_json::json!({
            "url": args.url, "schedule": args.schedule, "seconds": secs,
            "requests": requests, "requests_per_minute": per_minute,
        });
        println!("{out}");
    } else {
        println!(
            "an idle client ({}) made {requests} HTTP requests in {secs:.0} s: {per_minute:.2} per minute",
            args.schedule
        );
    }
    let _ = w.close().await;
    Ok(())
}

/// `wormhole_relay_http_requests_total` from `http://AUTHORITY/metrics`.
async fn scrape_requests(authority: &str) -> Result<u64, Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(authority).await?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await??;
    text.lines()
        .find_map(|l| l.strip_prefix("wormhole_relay_http_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "the relay's /metrics has no wormhole_relay_http_requests_total".into())
}

/// Resident memory of a process in KiB, from /proc (Linux only).
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/PID/status (Linux only).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
