//! The relay's counters, shared between the core's runner, the listeners and the `/metrics`
//! endpoint, rendered in the Prometheus text format.
//!
//! Every field is an atomic, so any task may count without a lock; [`Metrics::render`] reads
//! them all. Gauges go up and down (`*_open`); counters only go up (`*_total`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The relay's counters. Share one `Arc<Metrics>` among everything that counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections open now.
    pub websocket_open: AtomicU64,
    /// WebSocket connections accepted since start.
    pub websocket_total: AtomicU64,
    /// HTTP-polling sessions open now.
    pub http_sessions_open: AtomicU64,
    /// HTTP-polling sessions opened since start.
    pub http_sessions_total: AtomicU64,
    /// HTTP requests served since start (every route, including `/metrics`).
    pub http_requests_total: AtomicU64,
    /// HTTP requests forwarded to the relay process that owns their session since start
    /// (several processes on one Redis).
    pub http_forwarded_total: AtomicU64,
    /// Frames received from clients since start (both transports).
    pub frames_received_total: AtomicU64,
    /// Mailboxes closed by their last side since start: one per finished exchange.
    pub exchanges_total: AtomicU64,
    /// `error` frames sent since start.
    pub errors_total: AtomicU64,
    /// Times each named limit was hit since start.
    limits_hit: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one from the gauge `gauge` (never below zero).
    pub fn dec(gauge: &AtomicU64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Counts one hit of the limit called `name` (e.g. `"messages_per_mailbox"`).
    pub fn limit_hit(&self, name: &'static str) {
        *self
            .limits_hit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// How often the limit `name` was hit.
    pub fn limit_hits(&self, name: &str) -> u64 {
        let map = self.limits_hit.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name).copied().unwrap_or(0)
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let ws = "{transport=\"websocket\"}".to_string();
        let http = "{transport=\"http\"}".to_string();
        let mut out = String::new();
        family(
            &mut out,
            "wormhole_relay_connections_open",
            "gauge",
            "Client connections open now, by transport.",
            &[
                (ws.clone(), get(&self.websocket_open)),
                (http.clone(), get(&self.http_sessions_open)),
            ],
        );
        family(
            &mut out,
            "wormhole_relay_connections_total",
            "counter",
            "Client connections opened since start, by transport.",
            &[
                (ws, get(&self.websocket_total)),
                (http, get(&self.http_sessions_total)),
            ],
        );
        for (name, help, counter) in [
            (
                "wormhole_relay_http_requests_total",
                "HTTP requests served since start.",
                &self.http_requests_total,
            ),
            (
                "wormhole_relay_http_forwarded_total",
                "HTTP requests forwarded to the relay process that owns their session.",
                &self.http_forwarded_total,
            ),
            (
                "wormhole_relay_frames_received_total",
                "Frames received from clients since start.",
                &self.frames_received_total,
            ),
            (
                "wormhole_relay_exchanges_total",
                "Mailboxes closed by their last side since start.",
                &self.exchanges_total,
            ),
            (
                "wormhole_relay_errors_total",
                "Error frames sent since start.",
                &self.errors_total,
            ),
        ] {
            family(
                &mut out,
                name,
                "counter",
                help,
                &[(String::new(), get(counter))],
            );
        }
        let limits: Vec<(String, u64)> = self
            .limits_hit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, hits)| (format!("{{limit=\"{name}\"}}"), *hits))
            .collect();
        family(
            &mut out,
            "wormhole_relay_limits_hit_total",
            "counter",
            "Times each limit was hit since start.",
            &limits,
        );
        out
    }
}

#[cfg(feature = "http")]
impl wormhole_transports::http::HttpMetrics for Metrics {
    fn request(&self) {
        Metrics::inc(&self.http_requests_total);
    }

    fn render(&self) -> String {
        Metrics::render(self)
    }

    fn forwarded(&self) {
        Metrics::inc(&self.http_forwarded_total);
    }
}

/// One metric family: its HELP and TYPE lines, then one sample per `(labels, value)`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_limits() {
        let m = Metrics::default();
        Metrics::inc(&m.websocket_open);
        Metrics::inc(&m.websocket_open);
        Metrics::dec(&m.websocket_open);
        Metrics::dec(&m.http_sessions_open); // never below zero
        Metrics::inc(&m.exchanges_total);
        m.limit_hit("messages_per_mailbox");
        m.limit_hit("messages_per_mailbox");
        let text = m.render();
        assert!(text.contains("wormhole_relay_connections_open{transport=\"websocket\"} 1\n"));
        assert!(text.contains("wormhole_relay_connections_open{transport=\"http\"} 0\n"));
        assert!(text.contains("wormhole_relay_exchanges_total 1\n"));
        assert!(
            text.contains("wormhole_relay_limits_hit_total{limit=\"messages_per_mailbox\"} 2\n")
        );
        assert_eq!(m.limit_hits("messages_per_mailbox"), 2);
        // Each metric family has exactly one TYPE line.
        assert_eq!(
            text.matches("# TYPE wormhole_relay_connections_open ")
                .count(),
            1
        );
    }
}
