//! An in-process relay on a real loopback port serving the WebSocket and HTTP polling (and
//! optionally TLS), for the `http_*` tests; and a store that outlives a relay restart.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wormhole::clock::TokioClock;
use wormhole::relay::metrics::Metrics;
use wormhole::relay::server::{spawn, RelayHandle, ServerOptions};
use wormhole::relay::{
    MailboxRecord, MailboxSide, MailboxStore, MemoryStore, NameplateRecord, NameplateSide,
    StoreError, StoredMessage,
};
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
        let listener = match &setup.tls {
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
        }
        .expect("bind the test relay");
        let addr = listener.local_addr();
        let ws_url = listener.url();
        let http_url = ws_url.replacen("ws", "http", 1);
        let sessions = sessions.with_url(http_url.clone());
        let mut options = ServerOptions {
            metrics: Some(metrics.clone()),
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
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.app_ids())
    }
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.nameplate_names(appid))
    }
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.with(|s| s.nameplate(appid, name))
    }
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.with(|s| s.insert_nameplate(appid, name, mailbox_id))
    }
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.with(|s| s.put_nameplate_side(appid, name, side))
    }
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.with(|s| s.delete_nameplate(appid, name))
    }
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.with(|s| s.delete_nameplate_sides_of(appid, side))
    }
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.with(|s| s.delete_nameplates_for_mailbox(appid, mailbox_id))
    }
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.with(|s| s.mailbox_ids(appid))
    }
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.with(|s| s.mailbox(appid, id))
    }
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.with(|s| s.insert_mailbox(appid, id, for_nameplate, updated))
    }
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.with(|s| s.put_mailbox_side(appid, id, side))
    }
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.with(|s| s.touch_mailbox(appid, id, when))
    }
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.with(|s| s.delete_mailbox(appid, id))
    }
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.with(|s| s.add_message(appid, mailbox_id, message))
    }
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.with(|s| s.messages(appid, mailbox_id))
    }
}

/// Bounds a test step.
pub async fn within<T>(what: &str, secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}
