//! A recording wrapper around the production transport: every connection attempt, frame and
//! loss of every client, with its simulated time, in one log per run.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use wormhole_transports::{Connection, Delivery, PeerInfo, Transport, TransportError};

use crate::clock::SimClock;

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// A client started a connection attempt.
    Attempt,
    /// The attempt succeeded.
    Connected,
    /// The connection just made is a pull one (HTTP polling): the session must poll it.
    Pull,
    /// The session asked a pull connection to poll.
    Poll,
    /// A send (of the frames just recorded as sent) completed.
    SendDone,
    /// The attempt failed.
    ConnectFailed(String),
    /// A client sent a frame (handed it to the transport).
    Sent(String),
    /// A client received a frame.
    Received(String),
    /// A client's connection was lost (failed, closed by the relay, timed out).
    Lost(String),
    /// A client closed its connection.
    Closed,
    /// The simulation did something to the network or a host.
    Net(String),
    /// A client reports on its progress (code, outcome, tasks left, the relay host its
    /// balancer reached), or a relay host on its doings (a request it forwarded).
    Note(String),
}

/// One log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// Which host (`alice`, `bob`, `mallory`, `sim`, a relay host such as `relay0`).
    pub who: String,
    /// What happened.
    pub what: What,
}

/// The log of one run, shared by every host (the simulation runs on one thread, so its order
/// is deterministic).
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Entry>>>);

impl Log {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an entry stamped with the current simulated time.
    pub fn push(&self, who: &str, what: What) {
        self.push_at(SimClock::elapsed(), who, what);
    }

    /// Appends an entry with an explicit time (from outside the hosts).
    pub fn push_at(&self, at: Duration, who: &str, what: What) {
        self.lock().push(Entry {
            at,
            who: who.to_string(),
            what,
        });
    }

    /// A copy of every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// When `who` first reached a state matching `pred`, if it did.
    pub fn first(&self, who: &str, pred: impl Fn(&What) -> bool) -> Option<Duration> {
        self.lock()
            .iter()
            .find(|e| e.who == who && pred(&e.what))
            .map(|e| e.at)
    }
}

/// Wraps a client [`Transport`] and records into a [`Log`] under the client's name.
#[derive(Debug)]
pub struct RecordingTransport {
    inner: Arc<dyn Transport>,
    log: Log,
    who: String,
}

impl RecordingTransport {
    /// Records `inner`'s connections as `who`.
    pub fn new(inner: Arc<dyn Transport>, log: Log, who: &str) -> RecordingTransport {
        RecordingTransport {
            inner,
            log,
            who: who.to_string(),
        }
    }
}

#[async_trait]
impl Transport for RecordingTransport {
    fn supports(&self, scheme: &str) -> bool {
        self.inner.supports(scheme)
    }

    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        self.log.push(&self.who, What::Attempt);
        match self.inner.connect(url).await {
            Ok(inner) => {
                self.log.push(&self.who, What::Connected);
                if inner.delivery() == Delivery::Pull {
                    self.log.push(&self.who, What::Pull);
                }
                Ok(Box::new(RecordingConnection {
                    inner,
                    log: self.log.clone(),
                    who: self.who.clone(),
                    ended: false,
                }))
            }
            Err(e) => {
                self.log.push(&self.who, What::ConnectFailed(e.to_string()));
                Err(e)
            }
        }
    }
}

/// A recorded connection.
struct RecordingConnection {
    inner: Box<dyn Connection>,
    log: Log,
    who: String,
    /// Lost or closed: recorded once.
    ended: bool,
}

impl fmt::Debug for RecordingConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingConnection")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl RecordingConnection {
    fn lost(&mut self, why: String) {
        if !self.ended {
            self.ended = true;
            self.log.push(&self.who, What::Lost(why));
        }
    }
}

impl Drop for RecordingConnection {
    fn drop(&mut self) {
        // Dropped without a close: the link gave up on it (an operation timed out).
        self.lost("dropped".into());
    }
}

#[async_trait]
impl Connection for RecordingConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        self.send_all(vec![frame]).await
    }

    async fn send_all(&mut self, frames: Vec<String>) -> Result<(), TransportError> {
        for frame in &frames {
            self.log.push(&self.who, What::Sent(frame.clone()));
        }
        let result = self.inner.send_all(frames).await;
        match &result {
            Ok(()) => self.log.push(&self.who, What::SendDone),
            Err(e) => self.lost(format!("send failed: {e}")),
        }
        result
    }

    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        let result = self.inner.recv().await;
        match &result {
            Ok(Some(text)) => self.log.push(&self.who, What::Received(text.clone())),
            Ok(None) => self.lost("closed by the relay".into()),
            Err(e) => self.lost(format!("receive failed: {e}")),
        }
        result
    }

    async fn poll(&mut self) -> Result<(), TransportError> {
        self.log.push(&self.who, What::Poll);
        let result = self.inner.poll().await;
        if let Err(e) = &result {
            self.lost(format!("poll failed: {e}"));
        }
        result
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        if !self.ended {
            self.ended = true;
            self.log.push(&self.who, What::Closed);
        }
        self.inner.close().await
    }

    fn delivery(&self) -> Delivery {
        self.inner.delivery()
    }

    fn peer(&self) -> PeerInfo {
        self.inner.peer()
    }
}
