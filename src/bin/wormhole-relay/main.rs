//! `wormhole-relay`: the rendezvous (mailbox) server, wire-compatible with the Python
//! `magic-wormhole-mailbox-server` 0.8, and `wormhole-relay bench`, a load generator.
//!
//! ```text
//! wormhole-relay [--listen 0.0.0.0:4000] [--motd TEXT] [--behind-proxy] ...
//! wormhole-relay bench --url ws://127.0.0.1:4000/v1 --pairs 100 --duration 10 [--json]
//! ```

mod bench;
#[path = "../common/error_chain.rs"]
mod error_chain;

use error_chain::error_chain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rand::RngCore;
use wormhole::clock::TokioClock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::server::{spawn, ServerOptions};
use wormhole::relay::{MemoryStore, RelayConfig};
use wormhole::transports::http::{serve_metrics, HttpPolling, HttpServerOptions};
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
    Serve(ServeArgs),
    /// Load-test a relay at the mailbox level and print exchanges per second and latency.
    Bench(bench::BenchArgs),
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
    /// Seconds between prunes of idle mailboxes.
    #[arg(long, default_value_t = 300)]
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
    /// Worker threads. The relay core is one task, so one thread (the default) avoids
    /// cross-thread wake-ups; it served the most exchanges per second on a 2-core machine
    /// shared with the load generator. More threads spread connection I/O over cores.
    #[arg(long, default_value_t = 1)]
    threads: usize,
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
        Some(Command::Bench(args)) => runtime.block_on(bench::run(args)),
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
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
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        session_idle: args.http_session_idle,
        max_body_bytes: ws_options.hard_frame_limit(),
        queue_budget: args.outbox_budget_bytes.max(args.max_frame_bytes),
        trust_proxy_headers: args.behind_proxy,
        metrics: Some(metrics.clone()),
        serve_metrics: args.metrics == MetricsAt::Same,
        ..HttpServerOptions::new(seed)
    });
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
        channel_expiration_secs: args.mailbox_retention.as_secs_f64(),
        ..RelayConfig::default()
    };
    let options = ServerOptions {
        config,
        prune_interval: Duration::from_secs(args.prune_interval.max(1)),
        seed: None,
        send_timeout: Duration::from_secs(args.send_timeout.max(1)),
        outbox_budget: args.outbox_budget_bytes.max(args.max_frame_bytes),
        metrics: Some(metrics),
    };
    let relay = spawn(
        vec![Box::new(listener), Box::new(sessions)],
        MemoryStore::default(),
        options,
        Arc::new(TokioClock::new()),
    );
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
