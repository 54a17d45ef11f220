//! HTTP-polling sessions across several relay processes.
//!
//! A session lives in the process that opened it, its *owner*: the session's state and the
//! [`Connection`](crate::Connection) the relay runner drives stay there. With
//! [`HttpServerOptions::peers`](super::HttpServerOptions::peers) set, a session id carries its
//! owner's [`Instance`] tag (`<16 hex digits>.<32 hex digits>`), and a request for a session
//! that another process owns is *forwarded* to it through [`SessionPeers`]: the owner serves it
//! with [`HttpPolling::serve_forwarded`] (the same code as a request of its own, long polls
//! included) and the answer travels back. So any TCP load balancer may spread a client's
//! requests over the processes, without sticky sessions.
//!
//! [`MemoryPeerBus`] connects several [`HttpPolling`]s in one process (tests, a simulator);
//! the relay's Redis implementation lives in the `wormhole` crate.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::HttpPolling;

/// The tag of one relay process: 64 random bits chosen when it starts, the first part of the
/// ids of the sessions it owns.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instance(pub u64);

impl Instance {
    /// Parses the 16 lowercase hex digits [`Display`](fmt::Display) writes.
    pub fn parse(s: &str) -> Option<Instance> {
        if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Instance)
    }

    /// The owner named by a session id (`<instance>.<random>`); `None` for an id without one
    /// (an id of a single-process relay).
    pub fn of_session(id: &str) -> Option<Instance> {
        id.split_once('.').and_then(|(tag, _)| Instance::parse(tag))
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instance({self})")
    }
}

/// Which session endpoint a forwarded request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardKind {
    /// `POST /v1/http/session/ID/send`.
    Send,
    /// `GET /v1/http/session/ID/events`.
    Events,
    /// `DELETE /v1/http/session/ID`.
    Delete,
}

/// A session request on its way to the session's owner: what the owner needs to serve it,
/// already read and checked by the process that received it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedRequest {
    /// The endpoint.
    pub kind: ForwardKind,
    /// The session id (a bearer secret: never logged, not in `Debug`).
    pub session: String,
    /// The query string (`after=N&wait=S` of `events`), without the `?`.
    #[serde(default)]
    pub query: String,
    /// The body of a `send` (JSON text); empty for the others.
    #[serde(default)]
    pub body: String,
}

impl fmt::Debug for ForwardedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedRequest")
            .field("kind", &self.kind)
            .field("query", &self.query)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The owner's answer to a [`ForwardedRequest`]: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

/// Why a request could not be forwarded to its session's owner.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nobody listens for the owner: its process is gone (the client gets 404 and opens a
    /// new session).
    #[error("the relay process that owns the session is gone")]
    OwnerGone,
    /// The owner did not answer by the deadline (the client gets 503 and retries).
    #[error("the relay process that owns the session did not answer in time")]
    TimedOut,
    /// The channel between the processes is unreachable (the client gets 503).
    #[error("the relay processes cannot reach each other")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How the relay processes that share sessions reach each other. Held in
/// [`HttpServerOptions::peers`](super::HttpServerOptions::peers); see the
/// [module docs](self).
#[async_trait]
pub trait SessionPeers: Send + Sync + 'static {
    /// This process's tag (in the ids of the sessions it opens).
    fn instance(&self) -> Instance;

    /// Called once by [`HttpPolling::new`] with the handler that serves the requests other
    /// processes forward here (via [`HttpPolling::serve_forwarded`]).
    fn attach(&self, polling: Weak<HttpPolling>);

    /// Has `owner` serve `request` and returns its answer, or fails by `deadline`.
    async fn forward(
        &self,
        owner: Instance,
        request: ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedResponse, ForwardError>;
}

/// Several [`HttpPolling`]s in one process, reaching each other by direct calls: for tests
/// and simulators (several relay hosts in one process). Each member gets its
/// [`MemorySessionPeers`] from [`peers`](Self::peers).
#[derive(Clone, Default)]
pub struct MemoryPeerBus {
    members: Arc<Mutex<HashMap<Instance, Weak<HttpPolling>>>>,
}

impl fmt::Debug for MemoryPeerBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPeerBus")
            .field("members", &self.lock().len())
            .finish()
    }
}

impl MemoryPeerBus {
    /// An empty bus.
    pub fn new() -> MemoryPeerBus {
        MemoryPeerBus::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Instance, Weak<HttpPolling>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peers of the member `instance` (give them to its
    /// [`HttpServerOptions`](super::HttpServerOptions); it joins when its
    /// [`HttpPolling`] is made).
    pub fn peers(&self, instance: Instance) -> Arc<MemorySessionPeers> {
        Arc::new(MemorySessionPeers {
            bus: self.clone(),
            instance,
        })
    }

    /// Takes `instance` off the bus, as if its process died: requests for its sessions are
    /// answered "owner gone" from now on.
    pub fn leave(&self, instance: Instance) {
        self.lock().remove(&instance);
    }
}

/// One member's view of a [`MemoryPeerBus`].
#[derive(Debug)]
pub struct MemorySessionPeers {
    bus: MemoryPeerBus,
    instance: Instance,
}

#[async_trait]
impl SessionPeers for MemorySessionPeers {
    fn instance(&self) -> Instance {
        self.instance
    }

    fn attach(&self, polling: Weak<HttpPolling>) {
        self.bus.lock().insert(self.instance, polling);
    }

    async fn forward(
        &self,
        owner: Instance,
        request: ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedResponse, ForwardError> {
        let polling = self
            .bus
            .lock()
            .get(&owner)
            .and_then(Weak::upgrade)
            .ok_or(ForwardError::OwnerGone)?;
        tokio::time::timeout_at(deadline, polling.serve_forwarded(request))
            .await
            .map_err(|_| ForwardError::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_tags_round_trip_and_name_owners() {
        let i = Instance(0x0123_4567_89ab_cdef);
        assert_eq!(i.to_string(), "0123456789abcdef");
        assert_eq!(Instance::parse(&i.to_string()), Some(i));
        assert_eq!(Instance::parse("0123456789ABCDEF"), None);
        assert_eq!(Instance::parse("123"), None);
        let id = format!("{i}.{}", "f".repeat(32));
        assert_eq!(Instance::of_session(&id), Some(i));
        assert_eq!(Instance::of_session(&"a".repeat(32)), None);
        assert_eq!(Instance::of_session("zz.abc"), None);
    }

    #[test]
    fn forwarded_requests_hide_the_session_id() {
        let r = ForwardedRequest {
            kind: ForwardKind::Send,
            session: "secret-session-id".into(),
            query: String::new(),
            body: "{}".into(),
        };
        assert!(!format!("{r:?}").contains("secret"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ForwardedRequest>(&json).unwrap(), r);
    }
}
