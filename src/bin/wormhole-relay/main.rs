//! `wormhole-relay`: the rendezvous (mailbox) server, wire-compatible with the Python
//! `magic-wormhole-mailbox-server` 0.8, and `wormhole-relay bench`, a load generator.
//!
//! ```text
//! wormhole-relay [--listen 0.0.0.0:4000] [--db relay.sqlite] [--motd TEXT] [--behind-proxy] ...
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

use clap::{Args, Parser, Subcommand, ValueEnum};
use wormhole::clock::TokioClock;
use wormhole::relay::server::{spawn, ServerOptions};
use wormhole::relay::sqlite::Synchronous;
use wormhole::relay::{MemoryStore, RelayConfig, SqliteStore};
use wormhole::transports::websocket::{
    raise_nofile_limit, DefaultHttpHandler, ServerTls, WebSocketListener, WebSocketOptions,
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
    /// Seconds between prunes of idle mailboxes.
    #[arg(long, default_value_t = 300)]
    prune_interval: u64,
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

/// `--db-sync`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DbSync {
    /// `PRAGMA synchronous = NORMAL` (WAL).
    Normal,
    /// `PRAGMA synchronous = FULL`.
    Full,
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
    let listener = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = ServerTls::from_pem_files(cert, key).map_err(|e| error_chain(&e))?;
            WebSocketListener::bind_with(args.listen, ws_options, Arc::new(DefaultHttpHandler), tls)
        }
        _ => WebSocketListener::bind(args.listen, ws_options),
    }
    .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let url = listener.url();
    let config = RelayConfig {
        motd: args.motd,
        signal_error: args.signal_error,
        advertise_version: args.advertise_version,
        allow_list: !args.disallow_list,
        max_frame_bytes: args.max_frame_bytes,
        ..RelayConfig::default()
    };
    let options = ServerOptions {
        config,
        prune_interval: Duration::from_secs(args.prune_interval.max(1)),
        seed: None,
        send_timeout: Duration::from_secs(args.send_timeout.max(1)),
        outbox_budget: args.outbox_budget_bytes.max(args.max_frame_bytes),
    };
    let listeners: Vec<Box<dyn Listener>> = vec![Box::new(listener)];
    let clock = Arc::new(TokioClock::new());
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
        None => spawn(listeners, MemoryStore::default(), options, clock),
    };
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("wormhole-relay listening on {url}");
    tracing::info!(%url, "relay started");
    shutdown_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    Ok(())
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
