//! HTTP-polling sessions across the relay hosts of a multi-process scenario: one
//! [`MemoryPeerBus`] outside the hosts (as Redis is outside the relay processes), each boot of
//! a host a member of it with an instance tag drawn from the seed, taken off it when its host
//! crashes (so a request for a session the crashed process owned gets 404, "its relay process
//! is gone", as when Redis finds no subscriber), and a new member with a fresh tag when the
//! host boots again. Every forward is noted in the log under the forwarding host's name.
//!
//! `MemorySessionPeers` serves a forwarded request by calling the owner's
//! `HttpPolling::serve_forwarded` from the forwarding host's task, so the owner's session code
//! runs on the forwarding host's runtime meanwhile. The one clock reading that crosses over is
//! the session's last activity (`tokio::time::Instant` of the forwarding host, whose paused
//! clock differs from the owner's by the time between their boots): it only moves the
//! session's idle expiry (65 minutes) by up to that much, past the end of every multi-relay
//! run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use async_trait::async_trait;
use tokio::time::Instant;
use wormhole_transports::http::{
    ForwardError, ForwardKind, ForwardedRequest, ForwardedResponse, HttpPolling, Instance,
    MemoryPeerBus, MemorySessionPeers, SessionPeers,
};

use crate::record::{Log, What};
use crate::world::derive_seed;

/// The note a relay host logs for each request it forwarded to its session's owner.
pub const FORWARDED: &str = "forwarded ";

#[derive(Debug, Default)]
struct Members {
    /// The instance of each host's current boot, while it runs.
    current: BTreeMap<String, Instance>,
    /// Every instance tag ever, with its host and boot (for the log).
    names: BTreeMap<u64, String>,
}

/// The peer bus of the relay hosts, shared by the whole run (it outlives every host).
#[derive(Clone, Default)]
pub struct RelayPeers {
    bus: MemoryPeerBus,
    members: Arc<Mutex<Members>>,
    log: Log,
}

impl fmt::Debug for RelayPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayPeers")
            .field("bus", &self.bus)
            .field("members", &*self.lock())
            .finish()
    }
}

impl RelayPeers {
    /// An empty bus; forwards are noted in `log`.
    pub fn new(log: Log) -> RelayPeers {
        RelayPeers {
            bus: MemoryPeerBus::new(),
            members: Arc::default(),
            log,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance tag of boot `boot` of relay host `host` in the run of `seed`.
    pub fn instance_of(seed: u64, host: &str, boot: u32) -> Instance {
        let bytes = derive_seed(seed, &format!("{host} http instance boot {boot}"));
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&bytes[..8]);
        Instance(u64::from_le_bytes(tag))
    }

    /// The peers of boot `boot` of `host` (for its `HttpServerOptions`): it joins the bus
    /// when its `HttpPolling` is made.
    pub fn join(&self, host: &str, boot: u32, instance: Instance) -> Arc<dyn SessionPeers> {
        {
            let mut m = self.lock();
            m.current.insert(host.to_string(), instance);
            m.names.insert(instance.0, format!("{host} (boot {boot})"));
        }
        Arc::new(TracedPeers {
            inner: self.bus.peers(instance),
            host: host.to_string(),
            peers: self.clone(),
        })
    }

    /// Takes `host`'s current boot off the bus (its process died); returns its instance.
    pub fn leave(&self, host: &str) -> Option<Instance> {
        let instance = self.lock().current.remove(host)?;
        self.bus.leave(instance);
        Some(instance)
    }

    fn name(&self, instance: Instance) -> String {
        self.lock()
            .names
            .get(&instance.0)
            .cloned()
            .unwrap_or_else(|| format!("unknown instance {instance}"))
    }
}

/// One boot's [`MemorySessionPeers`], noting each forward in the log.
struct TracedPeers {
    inner: Arc<MemorySessionPeers>,
    host: String,
    peers: RelayPeers,
}

#[async_trait]
impl SessionPeers for TracedPeers {
    fn instance(&self) -> Instance {
        self.inner.instance()
    }

    fn attach(&self, polling: Weak<HttpPolling>) {
        self.inner.attach(polling);
    }

    async fn forward(
        &self,
        owner: Instance,
        request: ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedResponse, ForwardError> {
        let kind = match request.kind {
            ForwardKind::Send => "send",
            ForwardKind::Events => "events",
            ForwardKind::Delete => "DELETE",
        };
        let result = self.inner.forward(owner, request, deadline).await;
        let outcome = match &result {
            Ok(r) => format!("answered {}", r.status),
            Err(ForwardError::OwnerGone) => "owner gone (404)".to_string(),
            Err(ForwardError::TimedOut) => "timed out (503)".to_string(),
            Err(ForwardError::Unreachable(_)) => "unreachable (503)".to_string(),
        };
        self.peers.log.push(
            &self.host,
            What::Note(format!(
                "{FORWARDED}{kind} to {}: {outcome}",
                self.peers.name(owner)
            )),
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_come_from_the_seed_and_differ_per_boot() {
        let a = RelayPeers::instance_of(7, "relay0", 0);
        assert_eq!(a, RelayPeers::instance_of(7, "relay0", 0));
        assert_ne!(a, RelayPeers::instance_of(7, "relay0", 1));
        assert_ne!(a, RelayPeers::instance_of(7, "relay1", 0));
        assert_ne!(a, RelayPeers::instance_of(8, "relay0", 0));
    }

    #[test]
    fn a_host_leaves_with_its_current_boot_only() {
        let peers = RelayPeers::new(Log::default());
        let first = RelayPeers::instance_of(1, "relay0", 0);
        let _p = peers.join("relay0", 0, first);
        assert_eq!(peers.leave("relay0"), Some(first));
        assert_eq!(peers.leave("relay0"), None);
        let second = RelayPeers::instance_of(1, "relay0", 1);
        let _p = peers.join("relay0", 1, second);
        assert_eq!(peers.leave("relay0"), Some(second));
        assert_eq!(peers.name(first), "relay0 (boot 0)");
    }
}
