//! The relay hosts: the production listener and runner on turmoil hosts, their store kept
//! outside so that it survives crashes. One relay process on its own store
//! (`relay_host`), or several processes on one shared store, as relay processes on one
//! Redis (`shared_relay_hosts`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use wormhole::relay::server::{spawn, ServerOptions};
use wormhole::relay::shared::{spawn_shared_watched, ListenedMailboxes};
use wormhole::relay::RelayConfig;
use wormhole_transports::http::{HttpPolling, HttpServerOptions, SessionPeers};
use wormhole_transports::websocket::{WebSocketListener, WebSocketOptions};
use wormhole_transports::Listener;

use crate::clock::SimClock;
use crate::net::TurmoilAcceptor;
use crate::params::Params;
use crate::peers::RelayPeers;
use crate::store::RelayDisk;
use crate::world::{derive_seed, RELAY_HTTP_URL, RELAY_PORT};

/// The name of relay host `i` of a multi-process scenario.
pub fn relay_name(i: usize) -> String {
    format!("relay{i}")
}

/// The HTTP-polling URL of the relay host named `host`.
pub fn http_url(host: &str) -> String {
    format!("http://{host}:{RELAY_PORT}/v1")
}

/// The listeners of one boot of a relay host: one port for both, as the production relay:
/// WebSocket upgrades, and HTTP polling through the listener's HTTP handler, its sessions
/// announced at `url` and shared with the other relay processes through `peers`, if any.
async fn listeners(
    sessions_seed: [u8; 32],
    url: String,
    peers: Option<Arc<dyn SessionPeers>>,
) -> turmoil::Result<Vec<Box<dyn Listener>>> {
    let acceptor = TurmoilAcceptor::bind(RELAY_PORT).await?;
    let (polling, sessions) = HttpPolling::new(HttpServerOptions {
        peers,
        ..HttpServerOptions::new(sessions_seed)
    });
    let listener =
        WebSocketListener::from_acceptor(Box::new(acceptor), WebSocketOptions::relay(), polling)?;
    let sessions = sessions.with_url(url);
    Ok(vec![Box::new(listener), Box::new(sessions)])
}

/// The runner's settings for one boot: a restarted relay draws fresh randomness, never the
/// crashed one's again.
fn options(params: &Params, relay_seed: [u8; 32]) -> ServerOptions {
    ServerOptions {
        config: RelayConfig {
            channel_expiration_secs: params.expiry_secs,
            ..RelayConfig::default()
        },
        seed: Some(relay_seed),
        ..ServerOptions::default()
    }
}

/// The single relay host, `relay`, on `disk` (memory or SQLite), rebooted on the same disk
/// after a crash.
pub(crate) fn relay_host(sim: &mut turmoil::Sim<'_>, params: &Params, disk: &RelayDisk) {
    let boots = Arc::new(AtomicU32::new(0));
    let disk = disk.clone();
    let params = params.clone();
    sim.host("relay", move || {
        let disk = disk.clone();
        let params = params.clone();
        let boot = boots.fetch_add(1, Ordering::Relaxed);
        async move {
            let seed = params.seed;
            let listeners = listeners(
                derive_seed(seed, &format!("http sessions boot {boot}")),
                RELAY_HTTP_URL.to_string(),
                None,
            )
            .await?;
            let options = options(&params, derive_seed(seed, &format!("relay boot {boot}")));
            let clock = Arc::new(SimClock);
            // Held until the host crashes (which drops it, like a killed process).
            let _relay = match disk.open_sqlite() {
                Some(store) => spawn(listeners, store?, options, clock),
                None => spawn(listeners, disk.memory(), options, clock),
            };
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// `params.relays` relay hosts (`relay0`, `relay1`, …), each a relay process following the
/// shared store of `disk` (the production `spawn_shared` runner, watched) with its own seed
/// per host and boot, its HTTP-polling sessions shared with the others through `peers` (a new
/// member of the bus, with a fresh instance tag, per boot). Returns each host's name and the
/// mailboxes its current boot listens to. `no_feed` (a deliberate fault): the processes run
/// the plain runner on the shared store, deaf to each other's changes.
pub(crate) fn shared_relay_hosts(
    sim: &mut turmoil::Sim<'_>,
    params: &Params,
    disk: &RelayDisk,
    peers: &RelayPeers,
    no_feed: bool,
) -> Vec<(String, ListenedMailboxes)> {
    let mut watched = Vec::new();
    let Some(store) = disk.shared() else {
        panic!("a multi-process scenario needs a shared store");
    };
    for i in 0..params.relays {
        let boots = Arc::new(AtomicU32::new(0));
        let store = store.clone();
        let params = params.clone();
        let name = relay_name(i);
        let listened = ListenedMailboxes::default();
        let peers = peers.clone();
        watched.push((name.clone(), listened.clone()));
        sim.host(relay_name(i), move || {
            // Each boot is a new process with its own connection to the store, and nothing
            // else of the crashed one.
            let store = store.clone();
            let listened = listened.clone();
            listened.lock().unwrap_or_else(|e| e.into_inner()).clear();
            let params = params.clone();
            let name = name.clone();
            let peers = peers.clone();
            let boot = boots.fetch_add(1, Ordering::Relaxed);
            async move {
                let seed = params.seed;
                let instance = RelayPeers::instance_of(seed, &name, boot);
                let listeners = listeners(
                    derive_seed(seed, &format!("{name} http sessions boot {boot}")),
                    http_url(&name),
                    Some(peers.join(&name, boot, instance)),
                )
                .await?;
                let options = options(
                    &params,
                    derive_seed(seed, &format!("{name} relay boot {boot}")),
                );
                let clock = Arc::new(SimClock);
                let _relay = if no_feed {
                    spawn(listeners, store, options, clock)
                } else {
                    spawn_shared_watched(listeners, store, options, clock, listened)
                };
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    watched
}
