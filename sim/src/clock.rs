//! The simulation's [`Clock`]: turmoil's virtual time, for the client and the relay alike.

use std::time::Duration;

use wormhole::clock::{Clock, Sleep};

/// The Unix time at which every simulation starts (2026-01-01T00:00:00Z), so the relay's
/// `server_tx` timestamps are the same in every run of a seed.
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// Virtual time: [`now`](Clock::now) is the simulation's elapsed time (the same on every host,
/// and continuous across a host's restart), sleeps are tokio sleeps on the host's paused
/// runtime, and [`unix_time`](Clock::unix_time) is [`EPOCH_SECS`] plus the elapsed time.
///
/// Only usable inside a turmoil host.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock;

impl SimClock {
    /// The simulation's elapsed time (zero outside a simulation).
    pub fn elapsed() -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        SimClock::elapsed()
    }

    fn sleep_until(&self, deadline: Duration) -> Sleep {
        let wait = deadline.saturating_sub(SimClock::elapsed());
        match tokio::time::Instant::now().checked_add(wait) {
            Some(at) => Box::pin(tokio::time::sleep_until(at)),
            None => Box::pin(std::future::pending()),
        }
    }

    fn unix_time(&self) -> f64 {
        EPOCH_SECS as f64 + SimClock::elapsed().as_secs_f64()
    }
}
