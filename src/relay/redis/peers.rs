//! [`RedisSessionPeers`]: HTTP-polling sessions shared by the relay processes on one Redis
//! (see [`wormhole_transports::http::peers`]).
//!
//! Each process subscribes to its own channel `P:http:<instance>`. A process that receives a
//! request for a session another process owns `PUBLISH`es it (as JSON, with a request number
//! and its own instance to reply to) on the owner's channel: `PUBLISH` answers how many
//! subscribers got it, and none means the owner's process is gone. The owner serves it with
//! [`HttpPolling::serve_forwarded`] and publishes the answer on the forwarder's channel,
//! where it is matched to the waiting request by its number.
//!
//! Two threads per process, each on a connection of its own with the `redis` crate's
//! synchronous client (as the store and its change feed): the subscriber, which reconnects
//! after losing Redis (and logs it), and the publisher, which publishes in order and fails
//! at once, for [`RedisOptions::reconnect_delay`], after a call timed out. Every forward has
//! a deadline; while Redis is unreachable forwards fail with
//! [`ForwardError::Unreachable`] (the client gets 503). While the subscriber is cut off,
//! requests for this process's sessions find nobody listening: their clients open new
//! sessions. Session ids are never logged.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant as StdInstant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use wormhole_transports::http::{
    ForwardError, ForwardedRequest, ForwardedResponse, HttpPolling, Instance, SessionPeers,
};

use super::RedisOptions;

/// How long the subscriber waits for a message before checking its connection with a PING.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Pause between the subscriber's connection attempts while Redis is unreachable.
const RETRY: Duration = Duration::from_millis(200);

/// A failure to talk to Redis, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("Redis unreachable ({while_doing})")]
pub struct PeersUnreachable {
    while_doing: &'static str,
    #[source]
    source: Arc<redis::RedisError>,
}

/// A message on a process's channel.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum Message {
    /// A request for a session of the receiving process.
    Request {
        /// The forwarder's number for it.
        id: u64,
        /// The forwarder's instance (16 hex digits): where to send the answer.
        from: String,
        #[serde(flatten)]
        request: ForwardedRequest,
    },
    /// The answer to the receiving process's request `id`.
    Reply {
        id: u64,
        #[serde(flatten)]
        response: ForwardedResponse,
    },
}

/// A `PUBLISH` for the publisher thread.
struct Job {
    channel: String,
    payload: String,
    /// Not published after this (the forward gave up).
    deadline: StdInstant,
    /// How many subscribers got it, or why it failed.
    done: Option<oneshot::Sender<Result<u64, PeersUnreachable>>>,
}

struct Inner {
    client: redis::Client,
    instance: Instance,
    /// `P:http:`.
    channel_prefix: String,
    timeout: Duration,
    publisher: Mutex<std_mpsc::Sender<Job>>,
    /// Forwards waiting for their answer, by number.
    pending: Mutex<HashMap<u64, oneshot::Sender<ForwardedResponse>>>,
    next_id: AtomicU64,
    /// Whether the subscriber listens on this process's channel now.
    subscribed: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn channel(&self, instance: Instance) -> String {
        format!("{}{instance}", self.channel_prefix)
    }

    fn publish(&self, job: Job) -> bool {
        lock(&self.publisher).send(job).is_ok()
    }
}

/// The relay processes on one Redis, for [`HttpServerOptions::peers`](
/// wormhole_transports::http::HttpServerOptions::peers). See the [module docs](super).
#[derive(Clone)]
pub struct RedisSessionPeers {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisSessionPeers {
    // Not the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionPeers")
            .field("instance", &self.inner.instance)
            .field("pending", &lock(&self.inner.pending).len())
            .finish_non_exhaustive()
    }
}

/// Removes a forward's entry when it ends (answered, timed out or dropped).
struct PendingGuard<'a>(&'a Inner, u64);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.pending).remove(&self.1);
    }
}

impl RedisSessionPeers {
    /// Peers on the Redis at `url`, for the process tagged `instance` (64 random bits per
    /// process), with the store's prefix, timeout and reconnect delay. Starts the publisher
    /// thread; the subscriber starts when an [`HttpPolling`] is made with these peers.
    pub fn new(
        url: &str,
        instance: Instance,
        options: &RedisOptions,
    ) -> Result<RedisSessionPeers, PeersUnreachable> {
        let client = redis::Client::open(url).map_err(|source| PeersUnreachable {
            while_doing: "parsing the Redis URL",
            source: Arc::new(source),
        })?;
        let (tx, rx) = std_mpsc::channel();
        let publisher = Publisher {
            client: client.clone(),
            timeout: options.timeout,
            reconnect_delay: options.reconnect_delay,
            con: None,
            down: None,
        };
        std::thread::Builder::new()
            .name("wormhole-redis-publish".into())
            .spawn(move || publisher.run(rx))
            .map_err(|e| PeersUnreachable {
                while_doing: "starting the publisher thread",
                source: Arc::new(redis::RedisError::from(e)),
            })?;
        Ok(RedisSessionPeers {
            inner: Arc::new(Inner {
                client,
                instance,
                channel_prefix: format!("{}:http:", options.prefix),
                timeout: options.timeout,
                publisher: Mutex::new(tx),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                subscribed: watch::Sender::new(false),
            }),
        })
    }
}

impl RedisSessionPeers {
    /// Waits (up to `timeout`) until this process listens on its channel, so that requests
    /// other processes forward for its sessions reach it; `false` if it does not by then.
    /// A relay calls it once its [`HttpPolling`] is made, before it serves clients.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.subscribed.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl SessionPeers for RedisSessionPeers {
    fn instance(&self) -> Instance {
        self.inner.instance
    }

    fn attach(&self, polling: Weak<HttpPolling>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("HTTP peers: no tokio runtime to serve forwarded requests on");
            return;
        };
        let subscriber = Subscriber {
            inner: Arc::downgrade(&self.inner),
            client: self.inner.client.clone(),
            channel: self.inner.channel(self.inner.instance),
            timeout: self.inner.timeout,
            polling,
            runtime,
        };
        let spawned = std::thread::Builder::new()
            .name("wormhole-redis-subscribe".into())
            .spawn(move || subscriber.run());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "HTTP peers: cannot start the Redis subscriber");
        }
    }

    async fn forward(
        &self,
        owner: Instance,
        request: ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedResponse, ForwardError> {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        lock(&inner.pending).insert(id, tx);
        let _pending = PendingGuard(inner, id);
        let message = Message::Request {
            id,
            from: inner.instance.to_string(),
            request,
        };
        let payload =
            serde_json::to_string(&message).map_err(|e| ForwardError::Unreachable(Box::new(e)))?;
        let (done, published) = oneshot::channel();
        let job = Job {
            channel: inner.channel(owner),
            payload,
            deadline: deadline.into_std(),
            done: Some(done),
        };
        if !inner.publish(job) {
            return Err(ForwardError::Unreachable(
                "the Redis publisher thread stopped".into(),
            ));
        }
        match tokio::time::timeout_at(deadline, published).await {
            Err(_) | Ok(Err(_)) => return Err(ForwardError::TimedOut),
            Ok(Ok(Err(e))) => return Err(ForwardError::Unreachable(Box::new(e))),
            Ok(Ok(Ok(0))) => return Err(ForwardError::OwnerGone),
            Ok(Ok(Ok(_))) => {}
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(response)) => Ok(response),
            Err(_) | Ok(Err(_)) => Err(ForwardError::TimedOut),
        }
    }
}

/// The publisher thread: publishes jobs in order on one connection.
struct Publisher {
    client: redis::Client,
    timeout: Duration,
    reconnect_delay: Duration,
    con: Option<redis::Connection>,
    /// No connection attempt before this; the last failure.
    down: Option<(StdInstant, Arc<redis::RedisError>)>,
}

impl Publisher {
    fn run(mut self, jobs: std_mpsc::Receiver<Job>) {
        while let Ok(mut job) = jobs.recv() {
            if StdInstant::now() >= job.deadline {
                continue; // its forward gave up: the sender sees a dropped channel
            }
            let result = self.publish(&job.channel, &job.payload);
            if let Some(done) = job.done.take() {
                let _ = done.send(result);
            } else if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP peers: an answer was not published");
            }
        }
    }

    fn publish(&mut self, channel: &str, payload: &str) -> Result<u64, PeersUnreachable> {
        // A connection that sat idle may have died with its server: one more try on a new one.
        for attempt in 0..2 {
            let con = match self.con.as_mut() {
                Some(con) => con,
                None => {
                    if let Some((until, cause)) = &self.down {
                        if StdInstant::now() < *until {
                            return Err(PeersUnreachable {
                                while_doing: "waiting to reconnect",
                                source: cause.clone(),
                            });
                        }
                    }
                    match self.connect() {
                        Ok(con) => {
                            if self.down.take().is_some() {
                                tracing::info!("HTTP peers: Redis is back");
                            }
                            self.con.insert(con)
                        }
                        Err(e) => return Err(self.went_down("connecting", e)),
                    }
                }
            };
            match redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query::<u64>(con)
            {
                Ok(n) => return Ok(n),
                Err(e) if attempt == 0 && !e.is_timeout() => {
                    tracing::debug!(error = %e, "HTTP peers: stale Redis connection, again");
                    self.con = None;
                }
                Err(e) => return Err(self.went_down("publishing", e)),
            }
        }
        Err(PeersUnreachable {
            while_doing: "publishing",
            source: Arc::new(redis::RedisError::from(std::io::Error::other(
                "no connection",
            ))),
        })
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    fn went_down(&mut self, while_doing: &'static str, e: redis::RedisError) -> PeersUnreachable {
        self.con = None;
        if self.down.is_none() {
            tracing::warn!(error = %e, "HTTP peers: lost Redis while {while_doing}");
        }
        // As the store: only a timeout (each try costs a whole timeout) holds off the next.
        let delay = if e.is_timeout() {
            self.reconnect_delay
        } else {
            Duration::ZERO
        };
        let source = Arc::new(e);
        self.down = Some((StdInstant::now() + delay, source.clone()));
        PeersUnreachable {
            while_doing,
            source,
        }
    }
}

/// The subscriber thread: serves the requests on this process's channel and hands answers
/// to their forwards; reconnects after losing Redis.
struct Subscriber {
    inner: Weak<Inner>,
    client: redis::Client,
    channel: String,
    timeout: Duration,
    polling: Weak<HttpPolling>,
    runtime: tokio::runtime::Handle,
}

impl Subscriber {
    fn run(self) {
        let mut lost = false;
        while self.polling.strong_count() > 0 && self.inner.strong_count() > 0 {
            let followed = self.follow(&mut lost);
            if let Some(inner) = self.inner.upgrade() {
                inner.subscribed.send_replace(false);
            }
            match followed {
                Ok(()) => return,
                Err(e) => {
                    if !lost {
                        lost = true;
                        tracing::warn!(error = %e, "HTTP peers: the subscriber lost Redis; retrying");
                    }
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    /// Subscribes and handles messages until the connection fails (`Err`) or the handler is
    /// gone (`Ok`).
    fn follow(&self, lost: &mut bool) -> redis::RedisResult<()> {
        let mut con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_write_timeout(Some(self.timeout))?;
        con.set_read_timeout(Some(IDLE_CHECK))?;
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe(&self.channel)?;
        if let Some(inner) = self.inner.upgrade() {
            inner.subscribed.send_replace(true);
        }
        if std::mem::take(lost) {
            tracing::info!("HTTP peers: the subscriber is back on Redis");
        } else {
            tracing::debug!("HTTP peers: subscribed");
        }
        loop {
            if self.polling.strong_count() == 0 {
                return Ok(());
            }
            match pubsub.get_message() {
                Ok(msg) => self.handle(msg.get_payload_bytes()),
                // Quiet for a while: is the connection still there?
                Err(e) if e.is_timeout() => {
                    pubsub.set_read_timeout(Some(self.timeout))?;
                    pubsub.ping::<redis::Value>()?;
                    pubsub.set_read_timeout(Some(IDLE_CHECK))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn handle(&self, payload: &[u8]) {
        let message: Message = match serde_json::from_slice(payload) {
            Ok(m) => m,
            Err(e) => {
                // Not the error's text: it may quote the message, which may hold a session id.
                tracing::warn!(
                    kind = ?e.classify(),
                    line = e.line(),
                    column = e.column(),
                    bytes = payload.len(),
                    "HTTP peers: an unreadable message; ignored"
                );
                return;
            }
        };
        match message {
            Message::Reply { id, response } => {
                let Some(inner) = self.inner.upgrade() else {
                    return;
                };
                let waiting = lock(&inner.pending).remove(&id);
                if let Some(tx) = waiting {
                    let _ = tx.send(response);
                } else {
                    tracing::debug!("HTTP peers: an answer came after its forward gave up");
                }
            }
            Message::Request { id, from, request } => {
                let (Some(polling), Some(inner), Some(from)) = (
                    self.polling.upgrade(),
                    self.inner.upgrade(),
                    Instance::parse(&from),
                ) else {
                    return;
                };
                self.runtime.spawn(async move {
                    let response = polling.serve_forwarded(request).await;
                    let payload = match serde_json::to_string(&Message::Reply { id, response }) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTP peers: cannot encode an answer");
                            return;
                        }
                    };
                    inner.publish(Job {
                        channel: inner.channel(from),
                        payload,
                        deadline: StdInstant::now() + inner.timeout,
                        done: None,
                    });
                });
            }
        }
    }
}
