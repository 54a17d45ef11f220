//! The [`Clock`] trait: where the drivers get time from.
//!
//! The protocol core takes time as an input; the async drivers read it from a `Clock` and sleep
//! on it. [`TokioClock`] follows tokio's clock, which is virtual under `tokio::time::pause` and
//! under turmoil, so the same driver runs in real time and in simulation.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A monotonic clock with a sleep, plus wall-clock time for the relay's timestamps.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time since this clock's origin. Never goes backwards.
    fn now(&self) -> Duration;

    /// Completes once [`now`](Clock::now) has reached `deadline`.
    fn sleep_until(&self, deadline: Duration) -> Sleep;

    /// Seconds since the Unix epoch, for the relay's `server_tx`/`server_rx` fields. A
    /// simulated clock returns simulated wall-clock time here.
    fn unix_time(&self) -> f64;
}

#[cfg(feature = "async")]
pub use tokio_clock::TokioClock;

#[cfg(feature = "async")]
mod tokio_clock {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{Clock, Sleep};

    /// The default clock: tokio's [`Instant`](tokio::time::Instant), from the moment of creation.
    ///
    /// Sleeping needs a tokio runtime with the time driver enabled.
    #[derive(Debug, Clone, Copy)]
    pub struct TokioClock {
        origin: tokio::time::Instant,
    }

    impl TokioClock {
        /// A clock whose origin is now.
        pub fn new() -> TokioClock {
            TokioClock {
                origin: tokio::time::Instant::now(),
            }
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            TokioClock::new()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Duration {
            self.origin.elapsed()
        }

        /// A deadline beyond what an `Instant` can hold (e.g. from a `Duration::MAX` timeout)
        /// never completes instead of panicking.
        fn sleep_until(&self, deadline: Duration) -> Sleep {
            match self.origin.checked_add(deadline) {
                Some(at) => Box::pin(tokio::time::sleep_until(at)),
                None => Box::pin(std::future::pending()),
            }
        }

        // The one wall-clock read of the library, outside the pure core.
        #[allow(clippy::disallowed_methods)]
        fn unix_time(&self) -> f64 {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        }
    }
}

#[cfg(all(test, feature = "async"))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_virtual_time() {
        let clock = TokioClock::new();
        assert_eq!(clock.now(), Duration::ZERO);
        clock.sleep_until(Duration::from_secs(30)).await;
        assert_eq!(clock.now(), Duration::from_secs(30));
        assert!(clock.unix_time() > 1.0e9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_past_the_end_of_time_does_not_panic() {
        let clock = TokioClock::new();
        let never = clock.sleep_until(Duration::MAX);
        let soon = clock.sleep_until(Duration::from_secs(1));
        tokio::select! {
            () = never => panic!("Duration::MAX came"),
            () = soon => {}
        }
    }
}
