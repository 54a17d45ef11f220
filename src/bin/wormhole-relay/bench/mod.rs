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

mod exchanges;
mod idle;
mod idle_client;
mod latency;
mod mini;
mod procfs;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use wormhole::transports::http::HttpTransport;
use wormhole::transports::websocket::{raise_nofile_limit, WebSocketOptions, WebSocketTransport};
use wormhole::transports::{split_scheme, Transport};

use exchanges::exchanges;
pub use exchanges::{run_exchanges, Stats};
use idle::idle;
use idle_client::idle_client;
use latency::latency;
pub use procfs::{proc_status_kib, rss_kib};

/// Options of `wormhole-relay bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Relay URL: `ws://HOST:PORT/v1` (any mailbox server, the Python one included) or
    /// `http://HOST:PORT/v1` (HTTP polling on our relay).
    #[arg(long)]
    pub url: String,
    /// More URLs of the same relay (other processes on one shared store, e.g. Redis): the
    /// two sides of each exchange use two consecutive URLs of `--url` and these, round-robin,
    /// so every exchange crosses processes.
    #[arg(long, value_name = "URL")]
    pub also_url: Vec<String>,
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

/// Runs `wormhole-relay bench` as `args` say: a flood, the idle client, a latency run, idle
/// connections, or (the default) normal exchanges.
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
