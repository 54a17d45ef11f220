//! An in-process relay on a real loopback port serving the WebSocket and HTTP polling (and
//! optionally TLS), for the `http_*` tests; and a store that outlives a relay restart.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wormhole::clock::TokioClock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::server::{spawn, RelayHandle, ServerOptions};
use wormhole::relay::{MailboxStore, MailboxTables, MemoryStore, StoreError};
use wormhole::transports::http::{HttpPolling, HttpServerOptions};
use wormhole::transports::websocket::{ServerTls, WebSocketListener, WebSocketOptions};
use wormhole::transports::Listener;

/// A relay serving `ws://…/v1` and `http://…/v1` on one loopback port.
pub struct TestRelay {
    pub handle: Option<RelayHandle>,
    pub polling: Arc<HttpPolling>,
    pub metrics: Arc<Metrics>,
    pub addr: SocketAddr,
    pub ws_url: String,
    pub http_url: String,
}

/// What to change from the defaults.
#[derive(Clone, Default)]
pub struct Setup {
    pub port: u16,
    pub tls: Option<Arc<ServerTls>>,
    pub session_idle: Option<Duration>,
    pub store: Option<SharedStore>,
    pub retention_secs: Option<f64>,
}

impl TestRelay {
    pub async fn start() -> TestRelay {
        TestRelay::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> TestRelay {
        let metrics = Arc::new(Metrics::default());
        let mut http = HttpServerOptions::new([7; 32]);
        http.metrics = Some(metrics.clone());
        http.serve_metrics = true;
        if let Some(idle) = setup.session_idle {
            http.session_idle = idle;
        }
        let (polling, sessions) = HttpPolling::new(http);
        let addr: SocketAddr = format!("127.0.0.1:{}", setup.port).parse().unwrap();
        // A restart binds the port the stopped relay had: its listener closes in a task that
        // is being cancelled, so wait (bounded) for the port, as a restarted process would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            let bound = match &setup.tls {
                Some(tls) => WebSocketListener::bind_with(
                    addr,
                    WebSocketOptions::relay(),
                    polling.clone(),
                    (**tls).clone(),
                ),
                None => WebSocketListener::bind_with_handler(
                    addr,
                    WebSocketOptions::relay(),
                    polling.clone(),
                ),
            };
            match bound {
                Err(wormhole::transports::TransportError::AddrInUse(_))
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => break other.expect("bind the test relay"),
            }
        };
        let addr = listener.local_addr();
        let ws_url = listener.url();
        let http_url = ws_url.replacen("ws", "http", 1);
        let sessions = sessions.with_url(http_url.clone());
        let mut options = ServerOptions {
            metrics: metrics.clone(),
            seed: Some([9; 32]),
            ..ServerOptions::default()
        };
        if let Some(secs) = setup.retention_secs {
            options.config.channel_expiration_secs = secs;
        }
        let listeners: Vec<Box<dyn Listener>> = vec![Box::new(listener), Box::new(sessions)];
        let clock = Arc::new(TokioClock::new());
        let handle = match setup.store {
            Some(store) => spawn(listeners, store, options, clock),
            None => spawn(listeners, MemoryStore::default(), options, clock),
        };
        TestRelay {
            handle: Some(handle),
            polling,
            metrics,
            addr,
            ws_url,
            http_url,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    pub fn metric(&self, line_prefix: &str) -> u64 {
        let text = self.metrics.render();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(line_prefix)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no metric {line_prefix:?} in\n{text}"))
    }
}

/// A [`MemoryStore`] shared by the relays that use it: it survives a relay restart, as a
/// database file would.
#[derive(Clone, Default)]
pub struct SharedStore(pub Arc<Mutex<MemoryStore>>);

impl SharedStore {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryStore) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

impl MailboxStore for SharedStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.0.lock().unwrap().transaction(work)
    }
}

/// Bounds a test step.
pub async fn within<T>(what: &str, secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}
