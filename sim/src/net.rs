//! turmoil's simulated TCP behind the production transports' [`Dialer`] and [`Acceptor`],
//! and each client's transport over it.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

use wormhole_transports::http::{HttpClientOptions, HttpTransport};
use wormhole_transports::net::{Acceptor, BoxedStream, Dialer};
use wormhole_transports::websocket::{WebSocketOptions, WebSocketTransport};
use wormhole_transports::Transport;

use crate::params::{Params, TransportKind};
use crate::record::{Log, What};
use crate::relays::{http_url, relay_name};
use crate::world::{derive_seed, RELAY_HTTP_URL, RELAY_URL};

/// Dials turmoil TCP: the production WebSocket client runs over it unchanged
/// (`WebSocketTransport::with_dialer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilDialer;

#[async_trait]
impl Dialer for TurmoilDialer {
    async fn dial(&self, host: &str, port: u16) -> io::Result<BoxedStream> {
        let stream = turmoil::net::TcpStream::connect((host, port)).await?;
        Ok(Box::new(stream))
    }
}

/// The note a [`Balancer`] logs for the relay host a connection went to.
pub const VIA: &str = "via ";

/// How long a [`Balancer`] waits for one relay host to answer before it tries the next (a
/// crashed or partitioned host refuses at once in turmoil; this bounds anything else).
pub const HOST_TIMEOUT: Duration = Duration::from_secs(3);

/// A load balancer in front of several relay hosts (processes on one shared store), as the
/// client's dialer: whatever host the URL names, each dial tries the relay hosts in turn,
/// from the first one drawn for it, and skips the ones that refuse (crashed, partitioned away).
/// The first dial starts at a given host; every later one (a reconnection) at a host drawn
/// from the seed, so a client moves between relay processes within one session. Each host
/// reached is noted in the log ([`VIA`] and its name).
#[derive(Debug)]
pub struct Balancer {
    hosts: Vec<String>,
    who: &'static str,
    log: Log,
    state: Mutex<(Option<usize>, ChaCha8Rng)>,
}

impl Balancer {
    /// Balances over `hosts`, the first dial starting at `first`; later starts come from
    /// `seed`.
    pub fn new(
        hosts: Vec<String>,
        first: usize,
        seed: [u8; 32],
        who: &'static str,
        log: Log,
    ) -> Balancer {
        Balancer {
            hosts,
            who,
            log,
            state: Mutex::new((Some(first), ChaCha8Rng::from_seed(seed))),
        }
    }

    fn start(&self) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0.take() {
            Some(first) => first,
            None => state.1.gen_range(0..self.hosts.len().max(1)),
        }
    }
}

#[async_trait]
impl Dialer for Balancer {
    async fn dial(&self, _host: &str, port: u16) -> io::Result<BoxedStream> {
        let start = self.start();
        let n = self.hosts.len();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no relay host");
        for k in 0..n {
            let host = &self.hosts[(start + k) % n];
            let connect = turmoil::net::TcpStream::connect((host.as_str(), port));
            match tokio::time::timeout(HOST_TIMEOUT, connect).await {
                Ok(Ok(stream)) => {
                    self.log.push(self.who, What::Note(format!("{VIA}{host}")));
                    return Ok(Box::new(stream));
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, host.clone()),
            }
        }
        Err(last)
    }
}

/// A turmoil TCP listener as an [`Acceptor`], for the production relay listener
/// (`WebSocketListener::from_acceptor`).
pub struct TurmoilAcceptor(pub turmoil::net::TcpListener);

impl std::fmt::Debug for TurmoilAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TurmoilAcceptor")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

impl TurmoilAcceptor {
    /// Binds `0.0.0.0:port` on the current simulated host.
    pub async fn bind(port: u16) -> io::Result<TurmoilAcceptor> {
        Ok(TurmoilAcceptor(
            turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?,
        ))
    }
}

#[async_trait]
impl Acceptor for TurmoilAcceptor {
    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)> {
        let (stream, addr) = self.0.accept().await?;
        Ok((Box::new(stream), addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The production transport of client `who` (`alice`, `bob`; anyone else on WebSocket) over
/// turmoil TCP, and the URL it serves. With several relay hosts, the client dials through a
/// [`Balancer`]: a WebSocket client may land on another relay process at each reconnection,
/// an HTTP-polling client at each HTTP connection (its sends and its polls on different ones,
/// the session's requests forwarded to the process that owns it).
pub fn client_transport(
    params: &Params,
    who: &'static str,
    log: &Log,
) -> (Arc<dyn Transport>, String) {
    let (kind, first, keep_alive) = match who {
        "alice" => (params.transports.0, params.starts.0, params.keep_alive.0),
        "bob" => (params.transports.1, params.starts.1, params.keep_alive.1),
        _ => (TransportKind::WebSocket, 0, true),
    };
    let dialer: Arc<dyn Dialer> = if params.relays > 1 {
        let hosts = (0..params.relays).map(relay_name).collect();
        let seed = derive_seed(params.seed, &format!("{who} balancer"));
        Arc::new(Balancer::new(hosts, first, seed, who, log.clone()))
    } else {
        Arc::new(TurmoilDialer)
    };
    match kind {
        TransportKind::WebSocket => (
            Arc::new(WebSocketTransport::new(WebSocketOptions::default()).with_dialer(dialer)),
            RELAY_URL.to_string(),
        ),
        TransportKind::Http => {
            let url = if params.relays > 1 {
                // Only its Host header: the balancer picks the host.
                http_url(&relay_name(first))
            } else {
                RELAY_HTTP_URL.to_string()
            };
            let options = HttpClientOptions {
                keep_alive,
                ..HttpClientOptions::default()
            };
            (
                Arc::new(HttpTransport::new(options).with_dialer(dialer)),
                url,
            )
        }
    }
}
