//! `wormhole-relay`: the rendezvous (mailbox) server, wire-compatible with the Python
//! `magic-wormhole-mailbox-server` 0.8, and `wormhole-relay bench`, a load generator.
//!
//! ```text
//! wormhole-relay [--listen 0.0.0.0:4000] [--db relay.sqlite] [--motd TEXT] [--behind-proxy] ...
//! wormhole-relay --store redis://127.0.0.1:6379/0   # several relay processes on one Redis
//! wormhole-relay bench --url ws://127.0.0.1:4000/v1 --pairs 100 --duration 10 [--json]
//! ```

mod bench;
#[path = "../common/error_chain.rs"]
mod error_chain;
mod flood;

use error_chain::error_chain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::RngCore;
use wormhole::clock::TokioClock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::redis::{RedisOptions, RedisSessionPeers, RedisStore};
use wormhole::relay::server::{spawn, spawn_shared, ServerOptions};
use wormhole::relay::sqlite::Synchronous;
use wormhole::relay::{Limits, MemoryStore, Rate, RelayConfig, SqliteStore};
use wormhole::transports::http::{
    serve_metrics, HttpPolling, HttpServerOptions, Instance, SessionPeers,
};
use wormhole::transports::websocket::{
    raise_nofile_limit, ServerTls, WebSocketListener, WebSocketOptions,
};
use wormhole::transports::Listener;

/// The rendezvous relay for wormhole clients (and Python magic-wormhole clients).
#[derive(Debug, Parser)]
#[command(
    name = "wormhole-relay",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the relay (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Load-test a relay at the mailbox level and print exchanges per second and latency.
    Bench(Box<bench::BenchArgs>),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address and port to listen on; the WebSocket is at /v1.
    #[arg(long, default_value = "0.0.0.0:4000")]
    listen: SocketAddr,
    /// Serve TLS (wss:// and https://) on --listen with this PEM certificate chain (the
    /// server's certificate first); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Keep nameplates, mailboxes and messages in this SQLite file (created if missing), so a
    /// restarted relay resumes every exchange; without it, state is kept in memory only.
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    /// When a commit to --db reaches the disk: `normal` survives the relay being killed
    /// (a power loss may lose the last commits); `full` fsyncs every commit.
    #[arg(long, value_enum, default_value_t = DbSync::Normal, requires = "db")]
    db_sync: DbSync,
    /// Message of the day, shown by clients.
    #[arg(long)]
    motd: Option<String>,
    /// Trust X-Real-IP / X-Real-Port headers for `your-address` (behind a reverse proxy).
    #[arg(long)]
    behind_proxy: bool,
    /// Advertise this CLI version in the welcome (`current_cli_version`).
    #[arg(long)]
    advertise_version: Option<String>,
    /// Refuse service: every welcome carries this error text.
    #[arg(long)]
    signal_error: Option<String>,
    /// Answer `list` with an empty list (nameplates cannot be enumerated).
    #[arg(long)]
    disallow_list: bool,
    /// Largest frame accepted, in bytes; larger ones get an `error` frame.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_frame_bytes: usize,
    /// Seconds between prunes of idle mailboxes and abandoned nameplates.
    #[arg(long, default_value_t = 60)]
    prune_interval: u64,
    /// Delete a mailbox nobody touched for this long (no message, no open, no listener).
    /// A number with s, m, h or d (e.g. 11m, 3d); at most 30d.
    #[arg(long, value_name = "DURATION", default_value = "11m", value_parser = parse_retention)]
    mailbox_retention: Duration,
    /// An HTTP-polling session no request touched for this long expires (and counts as a
    /// dropped connection). The default covers a client polling hourly; at most 1d.
    #[arg(long, value_name = "DURATION", default_value = "65m", value_parser = parse_session_idle)]
    http_session_idle: Duration,
    /// Where to serve the Prometheus metrics: `same` (GET /metrics on --listen), `off`, or
    /// an address of their own (e.g. 127.0.0.1:9400, plain HTTP).
    #[arg(long, value_name = "same|off|ADDR", default_value = "same", value_parser = parse_metrics)]
    metrics: MetricsAt,
    /// Seconds one write to a client may take; a client that stops reading for longer is
    /// dropped (its side's state is kept, as for any dropped connection).
    #[arg(long, default_value_t = 30)]
    send_timeout: u64,
    /// Bytes of frames that may wait for one connection before the relay drops it.
    #[arg(long, default_value_t = wormhole::relay::server::OUTBOX_BUDGET)]
    outbox_budget_bytes: usize,
    /// Where the relay keeps nameplates, mailboxes and messages: `memory` (the default; lost
    /// when the process stops), or `redis://[:PASSWORD@]HOST:PORT/DB` (Redis or Valkey):
    /// any number of relay processes on one Redis serve as one relay, behind any TCP load
    /// balancer. `--db PATH` keeps them in a SQLite file instead.
    #[arg(
        long,
        value_name = "memory|redis://HOST:PORT/DB",
        default_value = "memory",
        conflicts_with = "db"
    )]
    store: String,
    /// With a Redis store: the prefix of every key (relays share state only with the same one).
    #[arg(long, default_value = "wormhole")]
    redis_prefix: String,
    /// With a Redis store: milliseconds any call to Redis (and connecting) may take; a command
    /// that hits it gets an `error` frame naming the cause.
    #[arg(long, default_value_t = 2000)]
    redis_timeout_ms: u64,
    /// Bytes of received frames that may wait for the relay core, all connections together;
    /// past it connections wait (and stop reading their sockets).
    #[arg(long, default_value_t = wormhole::relay::server::QUEUE_BYTES)]
    queue_bytes: usize,
    /// Bytes per second one connection may send after a burst of --max-frame-bytes;
    /// past it the relay stops reading that connection for a while.
    #[arg(long, default_value_t = wormhole::relay::server::INBOUND_BYTES_PER_SEC)]
    inbound_bytes_per_sec: usize,
    /// Bytes per second all connections of one source address may send together, after a
    /// burst of four times --max-frame-bytes (sources spared by per-source limits excepted).
    #[arg(long, default_value_t = wormhole::relay::server::SOURCE_BYTES_PER_SEC)]
    source_bytes_per_sec: usize,
    #[command(flatten)]
    limits: LimitArgs,
    /// Worker threads. The relay core is one task, so one thread (the default) avoids
    /// cross-thread wake-ups; it served the most exchanges per second on a 2-core machine
    /// shared with the load generator. More threads spread connection I/O over cores.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// `--db-sync`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DbSync {
    /// `PRAGMA synchronous = NORMAL` (WAL).
    Normal,
    /// `PRAGMA synchronous = FULL`.
    Full,
}

/// The limits of a public relay (README, "Limits").
#[derive(Debug, Args)]
struct LimitArgs {
    /// Messages one mailbox may hold.
    #[arg(long, default_value_t = Limits::default().messages_per_mailbox)]
    max_mailbox_messages: usize,
    /// Bytes (sides, phases, bodies, ids) one mailbox may hold.
    #[arg(long, default_value_t = Limits::default().bytes_per_mailbox)]
    max_mailbox_bytes: usize,
    /// Connections that may listen to one mailbox at once.
    #[arg(long, default_value_t = Limits::default().listeners_per_mailbox)]
    max_mailbox_listeners: usize,
    /// Connections in total.
    #[arg(long, default_value_t = Limits::default().connections)]
    max_connections: usize,
    /// Connections per source address (IPv4 address or IPv6 /64).
    #[arg(long, default_value_t = Limits::default().connections_per_source)]
    max_connections_per_source: usize,
    /// Nameplate allocations per source address and minute (also the burst).
    #[arg(long, default_value_t = Limits::default().allocations_per_source.per_minute)]
    allocations_per_minute: u32,
    /// Nameplate claims and opens of new mailboxes per source address and minute (also the
    /// burst).
    #[arg(long, default_value_t = Limits::default().claims_per_source.per_minute)]
    claims_per_minute: u32,
    /// Longest `appid`, in bytes.
    #[arg(long, default_value_t = Limits::default().appid_bytes)]
    max_appid_bytes: usize,
    /// Longest `side`, in bytes.
    #[arg(long, default_value_t = Limits::default().side_bytes)]
    max_side_bytes: usize,
    /// Longest `phase`, in bytes.
    #[arg(long, default_value_t = Limits::default().phase_bytes)]
    max_phase_bytes: usize,
    /// Longest `mailbox` id, in bytes.
    #[arg(long, default_value_t = Limits::default().mailbox_id_bytes)]
    max_mailbox_id_bytes: usize,
    /// Longest `mood` and `id` (as JSON), in bytes.
    #[arg(long, default_value_t = Limits::default().string_bytes)]
    max_string_bytes: usize,
    /// Seconds after which a nameplate claimed by one side only, whose mailbox nobody listens
    /// to, is deleted.
    #[arg(long, default_value_t = Limits::default().abandoned_nameplate_secs)]
    abandoned_nameplate_secs: f64,
    /// Apply the per-source limits to 127.0.0.1 and ::1 too (by default they are left alone:
    /// local tests, and a reverse proxy without --behind-proxy, connect from there).
    #[arg(long)]
    limit_loopback: bool,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            messages_per_mailbox: self.max_mailbox_messages,
            bytes_per_mailbox: self.max_mailbox_bytes,
            listeners_per_mailbox: self.max_mailbox_listeners,
            connections: self.max_connections,
            connections_per_source: self.max_connections_per_source,
            allocations_per_source: Rate {
                per_minute: self.allocations_per_minute,
            },
            claims_per_source: Rate {
                per_minute: self.claims_per_minute,
            },
            appid_bytes: self.max_appid_bytes,
            side_bytes: self.max_side_bytes,
            phase_bytes: self.max_phase_bytes,
            mailbox_id_bytes: self.max_mailbox_id_bytes,
            string_bytes: self.max_string_bytes,
            abandoned_nameplate_secs: self.abandoned_nameplate_secs.max(0.0),
            limit_loopback: self.limit_loopback,
        }
    }
}

/// Where `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricsAt {
    Off,
    Same,
    Addr(SocketAddr),
}

fn parse_metrics(s: &str) -> Result<MetricsAt, String> {
    match s {
        "off" => Ok(MetricsAt::Off),
        "same" => Ok(MetricsAt::Same),
        addr => addr.parse().map(MetricsAt::Addr).map_err(|_| {
            format!("expected same, off or an address like 127.0.0.1:9400, not {addr:?}")
        }),
    }
}

/// The longest `--mailbox-retention`: a month.
const MAX_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest `--http-session-idle`: a day.
const MAX_SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);

/// `90`, `90s`, `11m`, `2h`, `3d`.
fn parse_duration(s: &str, max: Duration, max_text: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a number with s, m, h or d (e.g. 11m), not {s:?}"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    let d = Duration::from_secs(n.saturating_mul(unit));
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    if d > max {
        return Err(format!("at most {max_text}"));
    }
    Ok(d)
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    parse_duration(s, MAX_RETENTION, "30d")
}

fn parse_session_idle(s: &str) -> Result<Duration, String> {
    parse_duration(s, MAX_SESSION_IDLE, "1d")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let threads = match &cli.command {
        Some(Command::Bench(args)) => args.threads,
        Some(Command::Serve(args)) => args.threads,
        None => cli.serve.threads,
    };
    let runtime = match build_runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wormhole-relay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Bench(args)) => runtime.block_on(bench::run(*args)),
        Some(Command::Serve(args)) => runtime.block_on(serve(*args)),
        None => runtime.block_on(serve(cli.serve)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wormhole-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One thread: a current-thread runtime (no wake-ups across threads); more: a multi-thread
/// runtime with that many workers.
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    match raise_nofile_limit() {
        Ok((soft, hard)) => tracing::info!(soft, hard, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let ws_options = WebSocketOptions::relay()
        .with_max_frame_bytes(args.max_frame_bytes)
        .with_trust_proxy_headers(args.behind_proxy);
    let metrics = Arc::new(Metrics::default());
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let clock = Arc::new(TokioClock::new());
    let redis_store = args.db.is_none()
        && (args.store.starts_with("redis://") || args.store.starts_with("redis+unix://"));
    let redis_options = RedisOptions {
        prefix: args.redis_prefix.clone(),
        timeout: Duration::from_millis(args.redis_timeout_ms.max(1)),
        clock: clock.clone(),
        ..RedisOptions::default()
    };
    // With Redis, HTTP-polling sessions are shared too: a request that reaches another
    // process than the session's owner is forwarded to the owner.
    let redis_peers = if redis_store {
        let instance = Instance(rand::rngs::OsRng.next_u64());
        let peers = RedisSessionPeers::new(&args.store, instance, &redis_options)
            .map_err(|e| format!("cannot use the Redis store: {}", error_chain(&e)))?;
        tracing::info!(%instance, "HTTP-polling sessions shared over Redis");
        Some(Arc::new(peers))
    } else {
        None
    };
    let peers = redis_peers.clone().map(|p| p as Arc<dyn SessionPeers>);
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        session_idle: args.http_session_idle,
        max_body_bytes: ws_options.hard_frame_limit(),
        queue_budget: args.outbox_budget_bytes.max(args.max_frame_bytes),
        trust_proxy_headers: args.behind_proxy,
        metrics: Some(metrics.clone()),
        serve_metrics: args.metrics == MetricsAt::Same,
        peers,
        ..HttpServerOptions::new(seed)
    });
    if let Some(peers) = &redis_peers {
        // Before serving: a session opened here must be reachable from the other processes.
        if !peers.wait_subscribed(redis_options.timeout).await {
            tracing::warn!(
                "HTTP peers: not yet listening on Redis; other processes may find this one's sessions gone until then"
            );
        }
    }
    let listener = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = ServerTls::from_pem_files(cert, key).map_err(|e| error_chain(&e))?;
            WebSocketListener::bind_with(args.listen, ws_options, polling, tls)
        }
        _ => WebSocketListener::bind_with_handler(args.listen, ws_options, polling),
    }
    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let url = listener.url();
    let http_url = url.replacen("ws", "http", 1);
    let sessions = sessions.with_url(http_url.clone());
    let mut metrics_line = String::new();
    let metrics_task = match args.metrics {
        MetricsAt::Addr(addr) => {
            let acceptor = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} for --metrics: {e}"))?;
            metrics_line = format!(
                "wormhole-relay metrics on http://{}/metrics\n",
                acceptor.local_addr()?
            );
            Some(tokio::spawn(serve_metrics(acceptor, metrics.clone())))
        }
        _ => None,
    };
    // Fields added to RelayConfig later keep their defaults.
    #[allow(clippy::needless_update)]
    let config = RelayConfig {
        motd: args.motd,
        signal_error: args.signal_error,
        advertise_version: args.advertise_version,
        allow_list: !args.disallow_list,
        max_frame_bytes: args.max_frame_bytes,
        limits: args.limits.limits(),
        channel_expiration_secs: args.mailbox_retention.as_secs_f64(),
    };
    let options = ServerOptions {
        config,
        prune_interval: Duration::from_secs(args.prune_interval.max(1)),
        seed: None,
        send_timeout: Duration::from_secs(args.send_timeout.max(1)),
        outbox_budget: args.outbox_budget_bytes.max(args.max_frame_bytes),
        queue_bytes: args.queue_bytes.max(args.max_frame_bytes),
        metrics,
        inbound_bytes_per_sec: args.inbound_bytes_per_sec,
        source_bytes_per_sec: args.source_bytes_per_sec,
    };
    let listeners: Vec<Box<dyn Listener>> = vec![Box::new(listener), Box::new(sessions)];
    let relay = match &args.db {
        Some(path) => {
            let sync = match args.db_sync {
                DbSync::Normal => Synchronous::Normal,
                DbSync::Full => Synchronous::Full,
            };
            let store = SqliteStore::open_with(path, sync)
                .map_err(|e| format!("cannot use --db {}: {}", path.display(), error_chain(&e)))?;
            tracing::info!(db = %path.display(), "state kept in SQLite");
            spawn(listeners, store, options, clock)
        }
        None if args.store == "memory" => spawn(listeners, MemoryStore::default(), options, clock),
        None if redis_store => {
            let store = RedisStore::open(&args.store, redis_options)
                .map_err(|e| format!("cannot use the Redis store: {}", error_chain(&e)))?;
            tracing::info!(prefix = %args.redis_prefix, "state kept in Redis, shared");
            spawn_shared(listeners, store, options, clock)
        }
        // Not echoed: a mistyped URL may hold a password.
        None => return Err("--store must be `memory` or a redis:// (or redis+unix://) URL".into()),
    };
    // Tests and scripts read this line to learn the port when listening on port 0.
    // One write, and no panic if nobody reads stdout any more (a script that read the first
    // line and closed the pipe).
    announce(&format!(
        "wormhole-relay listening on {url}\nwormhole-relay HTTP polling on {http_url}\n{metrics_line}"
    ));
    tracing::info!(%url, %http_url, "relay started");
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(task) = metrics_task {
        task.abort();
    }
    relay.shutdown().await;
    Ok(())
}

/// Writes `text` to stdout in one write; a closed stdout is not an error worth dying for.
fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
