//! The polling schedule and the hard timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often to poll (pull transports) and how soon to reconnect (push transports), as a
/// function of the time since the session started.
///
/// A schedule is a list of `(when, interval)` steps: from `when` after the start on, the
/// interval is `interval`, until the next step. The first step should start at zero; if it does
/// not, the first interval applies from the start.
///
/// ```
/// use std::time::Duration;
/// use wormhole::core::Schedule;
/// let s = Schedule::new(vec![
///     (Duration::ZERO, Duration::from_millis(500)),
///     (Duration::from_secs(60), Duration::from_secs(5)),
/// ]).unwrap();
/// assert_eq!(s.interval_at(Duration::from_secs(10)), Duration::from_millis(500));
/// assert_eq!(s.interval_at(Duration::from_secs(90)), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<[u64; 2]>", into = "Vec<[u64; 2]>")]
pub struct Schedule {
    steps: Vec<(Duration, Duration)>,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No steps at all.
    #[error("a schedule needs at least one (when, interval) step")]
    Empty,
    /// An interval of zero would poll in a busy loop.
    #[error("schedule intervals must be longer than zero")]
    ZeroInterval,
    /// Steps must be sorted by `when`.
    #[error("schedule steps must be sorted by their start time")]
    Unsorted,
}

impl Schedule {
    /// Builds a schedule from `(when, interval)` steps, sorted by `when`.
    pub fn new(steps: Vec<(Duration, Duration)>) -> Result<Schedule, ScheduleError> {
        if steps.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if steps.iter().any(|(_, i)| i.is_zero()) {
            return Err(ScheduleError::ZeroInterval);
        }
        if steps.windows(2).any(|w| w[0].0 > w[1].0) {
            return Err(ScheduleError::Unsorted);
        }
        Ok(Schedule { steps })
    }

    /// The interval in force at `elapsed` after the start.
    pub fn interval_at(&self, elapsed: Duration) -> Duration {
        let mut interval = self.steps.first().map_or(Duration::from_secs(1), |s| s.1);
        for &(when, step) in &self.steps {
            if when <= elapsed {
                interval = step;
            } else {
                break;
            }
        }
        interval
    }

    /// The steps.
    pub fn steps(&self) -> &[(Duration, Duration)] {
        &self.steps
    }
}

impl Default for Schedule {
    /// Face-to-face defaults: every 0.5 s for the first two minutes, then every 2 s until five
    /// minutes, then every 10 s.
    fn default() -> Schedule {
        Schedule {
            steps: vec![
                (Duration::ZERO, Duration::from_millis(500)),
                (Duration::from_secs(120), Duration::from_secs(2)),
                (Duration::from_secs(300), Duration::from_secs(10)),
            ],
        }
    }
}

/// Serialized as `[[when_ms, interval_ms], ...]`.
impl TryFrom<Vec<[u64; 2]>> for Schedule {
    type Error = ScheduleError;
    fn try_from(steps: Vec<[u64; 2]>) -> Result<Schedule, ScheduleError> {
        Schedule::new(
            steps
                .into_iter()
                .map(|[w, i]| (Duration::from_millis(w), Duration::from_millis(i)))
                .collect(),
        )
    }
}

impl From<Schedule> for Vec<[u64; 2]> {
    fn from(s: Schedule) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        s.steps.into_iter().map(|(w, i)| [ms(w), ms(i)]).collect()
    }
}

/// The default hard timeout: five minutes, for two people sitting together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest wait between reconnection attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);

/// Delay before reconnection attempt number `attempt` (0-based): the schedule's interval,
/// growing by half for each failed attempt, capped at [`MAX_RECONNECT_DELAY`] (but never below
/// the schedule's own interval).
pub fn reconnect_delay(schedule: &Schedule, elapsed: Duration, attempt: u32) -> Duration {
    let base = schedule.interval_at(elapsed);
    let factor = 1.5f64.powi(attempt.min(64) as i32);
    let cap = MAX_RECONNECT_DELAY.max(base);
    let secs = (base.as_secs_f64() * factor).min(cap.as_secs_f64());
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn steps_switch_at_their_start() {
        let sched =
            Schedule::new(vec![(s(0), s(100)), (s(1000), s(300)), (s(5000), s(900))]).unwrap();
        assert_eq!(sched.interval_at(s(0)), s(100));
        assert_eq!(sched.interval_at(s(999)), s(100));
        assert_eq!(sched.interval_at(s(1000)), s(300));
        assert_eq!(sched.interval_at(s(60_000)), s(900));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert_eq!(Schedule::new(vec![]), Err(ScheduleError::Empty));
        assert_eq!(
            Schedule::new(vec![(s(0), s(0))]),
            Err(ScheduleError::ZeroInterval)
        );
        assert_eq!(
            Schedule::new(vec![(s(10), s(1)), (s(5), s(1))]),
            Err(ScheduleError::Unsorted)
        );
        let bad: Result<Schedule, _> = serde_json::from_str("[]");
        assert!(bad.is_err());
    }

    #[test]
    fn reconnect_backs_off_to_the_cap() {
        let sched = Schedule::new(vec![(s(0), s(1000))]).unwrap();
        assert_eq!(reconnect_delay(&sched, s(0), 0), s(1000));
        assert_eq!(reconnect_delay(&sched, s(0), 1), s(1500));
        assert_eq!(reconnect_delay(&sched, s(0), 2), s(2250));
        assert_eq!(reconnect_delay(&sched, s(0), 40), MAX_RECONNECT_DELAY);
        let slow = Schedule::new(vec![(s(0), Duration::from_secs(3600))]).unwrap();
        assert_eq!(
            reconnect_delay(&slow, s(0), 3),
            Duration::from_secs(3600),
            "a slow schedule is not sped up by the cap"
        );
    }

    #[test]
    fn serde_round_trip() {
        let sched = Schedule::default();
        let json = serde_json::to_string(&sched).unwrap();
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), sched);
    }
}
