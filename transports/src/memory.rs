//! In-process transport: relays addressed as `mem://NAME`.
//!
//! A [`MemoryListener`] registers a name in a process-wide table; [`MemoryTransport`] connects
//! to it by URL. Frames travel over tokio channels, so this works across runtimes and threads
//! in one process, with no sockets at all.
//!
//! ```
//! use wormhole_transports::{memory::{MemoryListener, MemoryTransport}, Listener, Transport};
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! rt.block_on(async {
//!     let mut listener = MemoryListener::bind("doc-example").unwrap();
//!     let mut client = MemoryTransport.connect("mem://doc-example").await.unwrap();
//!     let mut server = listener.accept().await.unwrap();
//!     client.send("hello".into()).await.unwrap();
//!     assert_eq!(server.recv().await.unwrap().as_deref(), Some("hello"));
//! });
//! ```

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{split_scheme, Connection, Listener, Transport, TransportError};

type Registry = HashMap<String, mpsc::UnboundedSender<MemoryConnection>>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A poisoned lock only means another thread panicked while holding it; the map is still
    // consistent (every operation on it is a single insert/remove/get).
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// One end of an in-memory connection.
#[derive(Debug)]
pub struct MemoryConnection {
    tx: Option<mpsc::UnboundedSender<String>>,
    rx: mpsc::UnboundedReceiver<String>,
}

impl MemoryConnection {
    /// Creates two connected ends.
    pub fn pair() -> (MemoryConnection, MemoryConnection) {
        let (a_tx, b_rx) = mpsc::unbounded_channel();
        let (b_tx, a_rx) = mpsc::unbounded_channel();
        (
            MemoryConnection {
                tx: Some(a_tx),
                rx: a_rx,
            },
            MemoryConnection {
                tx: Some(b_tx),
                rx: b_rx,
            },
        )
    }
}

#[async_trait]
impl Connection for MemoryConnection {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        match &self.tx {
            Some(tx) => tx.send(frame).map_err(|_| TransportError::Closed),
            None => Err(TransportError::Closed),
        }
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        Ok(self.rx.recv().await)
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.tx = None;
        self.rx.close();
        Ok(())
    }
}

/// Accepts in-memory connections made to `mem://NAME`.
///
/// The name is released when the listener is dropped.
#[derive(Debug)]
pub struct MemoryListener {
    name: String,
    rx: mpsc::UnboundedReceiver<MemoryConnection>,
}

impl MemoryListener {
    /// Registers `name` so that `mem://NAME` reaches this listener.
    ///
    /// Fails with [`TransportError::AddrInUse`] while another live listener holds the name.
    pub fn bind(name: &str) -> Result<MemoryListener, TransportError> {
        let mut reg = registry();
        if let Some(existing) = reg.get(name) {
            if !existing.is_closed() {
                return Err(TransportError::AddrInUse(format!("mem://{name}")));
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        reg.insert(name.to_string(), tx);
        Ok(MemoryListener {
            name: name.to_string(),
            rx,
        })
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        // Closing our receiver marks our registered sender closed; a newer listener that took
        // the name over has an open sender and must stay registered.
        self.rx.close();
        let mut reg = registry();
        if reg.get(&self.name).is_some_and(|tx| tx.is_closed()) {
            reg.remove(&self.name);
        }
    }
}

#[async_trait]
impl Listener for MemoryListener {
    async fn accept(&mut self) -> Result<Box<dyn Connection>, TransportError> {
        match self.rx.recv().await {
            Some(conn) => Ok(Box::new(conn)),
            None => Err(TransportError::Closed),
        }
    }

    fn url(&self) -> String {
        format!("mem://{}", self.name)
    }
}

/// Connects to in-process listeners by `mem://NAME` URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryTransport;

#[async_trait]
impl Transport for MemoryTransport {
    fn supports(&self, scheme: &str) -> bool {
        scheme == "mem"
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        let (scheme, name) = split_scheme(url)?;
        if scheme != "mem" {
            return Err(TransportError::BadUrl {
                url: url.into(),
                reason: "the memory transport serves mem:// URLs only".into(),
            });
        }
        let name = name.trim_end_matches('/');
        let (client, server) = MemoryConnection::pair();
        let sender = registry().get(name).cloned();
        match sender {
            Some(tx) if tx.send(server).is_ok() => Ok(Box::new(client)),
            _ => Err(TransportError::Unreachable {
                url: url.into(),
                reason: "no in-process relay listens under that name".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_flow_both_ways_and_close_is_seen() {
        let mut l = MemoryListener::bind("t-both-ways").unwrap();
        let mut c = MemoryTransport.connect("mem://t-both-ways").await.unwrap();
        let mut s = l.accept().await.unwrap();
        c.send("a".into()).await.unwrap();
        s.send("b".into()).await.unwrap();
        assert_eq!(s.recv().await.unwrap().as_deref(), Some("a"));
        assert_eq!(c.recv().await.unwrap().as_deref(), Some("b"));
        c.close().await.unwrap();
        assert_eq!(s.recv().await.unwrap(), None);
        assert!(c.send("x".into()).await.is_err());
    }

    #[tokio::test]
    async fn unknown_name_is_unreachable_and_names_are_exclusive() {
        let err = MemoryTransport.connect("mem://t-nobody").await.unwrap_err();
        assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
        let l = MemoryListener::bind("t-exclusive").unwrap();
        assert!(matches!(
            MemoryListener::bind("t-exclusive"),
            Err(TransportError::AddrInUse(_))
        ));
        drop(l);
        let _again = MemoryListener::bind("t-exclusive").unwrap();
        assert!(MemoryTransport.connect("ws://x").await.is_err());
    }
}
