//! The inbound byte budgets of a connection and of its source address.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connection's inbound byte budget: a token bucket of bytes.
#[derive(Debug, Clone)]
pub(super) struct Inbound {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Duration,
}

impl Inbound {
    pub(super) fn new(rate: usize, burst: usize, now: Duration) -> Inbound {
        let burst = burst.max(rate).max(1) as f64;
        Inbound {
            rate: rate.max(1) as f64,
            burst,
            tokens: burst,
            at: now,
        }
    }

    pub(super) fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
    }

    fn spend(&mut self, bytes: usize, now: Duration) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// When reading may go on, if the budget is overdrawn.
    pub(super) fn paused_until(&self) -> Option<Duration> {
        (self.tokens < 0.0).then(|| self.at + Duration::from_secs_f64(-self.tokens / self.rate))
    }

    pub(super) fn is_full(&mut self, now: Duration) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A connection's inbound budgets: its own, and its source's (shared with the source's other
/// connections).
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) own: Inbound,
    pub(super) source: Option<Arc<Mutex<Inbound>>>,
}

impl Budget {
    fn with_source<T>(&self, f: impl FnOnce(&mut Inbound) -> T) -> Option<T> {
        let source = self.source.as_ref()?;
        Some(f(&mut source.lock().unwrap_or_else(|e| e.into_inner())))
    }

    pub(super) fn refill(&mut self, now: Duration) {
        self.own.refill(now);
        self.with_source(|s| s.refill(now));
    }

    pub(super) fn spend(&mut self, bytes: usize, now: Duration) {
        self.own.spend(bytes, now);
        self.with_source(|s| s.spend(bytes, now));
    }

    /// The later of the two pauses, if either budget is overdrawn.
    pub(super) fn paused_until(&self) -> Option<Duration> {
        let source = self.with_source(|s| s.paused_until()).flatten();
        self.own.paused_until().max(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_budget_allows_a_burst_then_its_rate() {
        let at = |ms: u64| Duration::from_millis(ms);
        let mut inbound = Inbound::new(1000, 4000, at(0));
        inbound.spend(3000, at(0));
        assert_eq!(inbound.paused_until(), None);
        inbound.spend(3000, at(0)); // 2000 over: paused for 2 s at 1000 B/s
        assert_eq!(inbound.paused_until(), Some(at(2000)));
        inbound.refill(at(1000));
        assert_eq!(inbound.paused_until(), Some(at(2000)));
        inbound.refill(at(2000));
        assert_eq!(inbound.paused_until(), None);
        // Never more than the burst, however long the pause.
        inbound.refill(at(60_000));
        inbound.spend(4001, at(60_000));
        assert!(inbound.paused_until().is_some());
    }

    #[test]
    fn a_source_budget_is_shared_by_its_connections() {
        let at = |ms: u64| Duration::from_millis(ms);
        let source = Arc::new(std::sync::Mutex::new(Inbound::new(1000, 3000, at(0))));
        let mut a = Budget {
            own: Inbound::new(1000, 2000, at(0)),
            source: Some(source.clone()),
        };
        let mut b = Budget {
            own: Inbound::new(1000, 2000, at(0)),
            source: Some(source),
        };
        a.spend(2000, at(0));
        assert_eq!(a.paused_until(), None);
        // b's own budget is whole, but the source has 1000 left: b pauses after 2000.
        b.spend(2000, at(0));
        assert_eq!(b.paused_until(), Some(at(1000)));
        assert_eq!(a.paused_until(), Some(at(1000)));
        b.refill(at(1000));
        assert_eq!(b.paused_until(), None);
    }
}
