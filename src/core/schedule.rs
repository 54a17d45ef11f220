//! The polling schedule, its presets, the reconnection back-off with jitter, and the hard
//! timeout's default.
//!
//! Everything here is pure: time comes in as a `Duration` since the session started and
//! randomness (the jitter) from a generator the caller owns, so a fake clock and a seeded
//! generator reproduce every delay exactly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
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

/// Why a schedule (or a preset name) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No steps at all.
    #[error("a schedule needs at least one (when, interval) step")]
    Empty,
    /// An interval of zero would poll in a busy loop.
    #[error("schedule step {index} has an interval of zero; intervals must be longer than zero")]
    ZeroInterval {
        /// The 0-based index of the offending step.
        index: usize,
    },
    /// Steps must be sorted by `when`.
    #[error(
        "schedule step {index} starts before the step ahead of it; sort the steps by start time"
    )]
    Unsorted {
        /// The 0-based index of the first step that is out of order.
        index: usize,
    },
    /// Two steps start at the same time: the second would hide the first.
    #[error("schedule steps {index} and {} start at the same time", index + 1)]
    Duplicate {
        /// The 0-based index of the first of the two steps.
        index: usize,
    },
    /// A preset name that is not one of [`SchedulePreset::ALL`].
    #[error("unknown schedule preset {0:?}; expected face-to-face or long-lived")]
    UnknownPreset(String),
}

impl Schedule {
    /// Builds a schedule from `(when, interval)` steps, sorted by `when` (strictly: two steps
    /// may not start at the same time), each with an interval above zero.
    pub fn new(steps: Vec<(Duration, Duration)>) -> Result<Schedule, ScheduleError> {
        if steps.is_empty() {
            return Err(ScheduleError::Empty);
        }
        if let Some(index) = steps.iter().position(|(_, i)| i.is_zero()) {
            return Err(ScheduleError::ZeroInterval { index });
        }
        for (index, w) in steps.windows(2).enumerate() {
            if w[0].0 > w[1].0 {
                return Err(ScheduleError::Unsorted { index: index + 1 });
            }
            if w[0].0 == w[1].0 {
                return Err(ScheduleError::Duplicate { index });
            }
        }
        Ok(Schedule { steps })
    }

    /// For two people together ("face to face"), the default: every 0.5 s for the first two
    /// minutes, then every 2 s until five minutes, then every 10 s.
    pub fn face_to_face() -> Schedule {
        Schedule {
            steps: vec![
                (Duration::ZERO, Duration::from_millis(500)),
                (Duration::from_secs(120), Duration::from_secs(2)),
                (Duration::from_secs(300), Duration::from_secs(10)),
            ],
        }
    }

    /// For an exchange that may wait for days ("long-lived"): every minute for the first ten
    /// minutes, then every ten minutes until the first hour, then hourly. An idle pull client
    /// then makes 24 polls a day.
    pub fn long_lived() -> Schedule {
        Schedule {
            steps: vec![
                (Duration::ZERO, Duration::from_secs(60)),
                (Duration::from_secs(600), Duration::from_secs(600)),
                (Duration::from_secs(3600), Duration::from_secs(3600)),
            ],
        }
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

    /// When to poll next after a poll (or the connection) at `elapsed`: `elapsed` plus the
    /// interval in force then, saturating at `Duration::MAX`.
    pub fn next_poll(&self, elapsed: Duration) -> Duration {
        elapsed.saturating_add(self.interval_at(elapsed))
    }

    /// The steps.
    pub fn steps(&self) -> &[(Duration, Duration)] {
        &self.steps
    }
}

impl Default for Schedule {
    /// [`Schedule::face_to_face`].
    fn default() -> Schedule {
        Schedule::face_to_face()
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

/// The named schedules, with the hard timeout that fits each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulePreset {
    /// Both people are at their computers: [`Schedule::face_to_face`], timeout
    /// [`DEFAULT_TIMEOUT`] (five minutes).
    #[default]
    FaceToFace,
    /// The other side may come hours or days later: [`Schedule::long_lived`], timeout
    /// [`LONG_LIVED_TIMEOUT`] (seven days).
    LongLived,
}

impl SchedulePreset {
    /// Every preset, in the order of their names in help texts.
    pub const ALL: [SchedulePreset; 2] = [SchedulePreset::FaceToFace, SchedulePreset::LongLived];

    /// The schedule.
    pub fn schedule(self) -> Schedule {
        match self {
            SchedulePreset::FaceToFace => Schedule::face_to_face(),
            SchedulePreset::LongLived => Schedule::long_lived(),
        }
    }

    /// The hard timeout that goes with it.
    pub fn timeout(self) -> Duration {
        match self {
            SchedulePreset::FaceToFace => DEFAULT_TIMEOUT,
            SchedulePreset::LongLived => LONG_LIVED_TIMEOUT,
        }
    }

    /// The name: `face-to-face` or `long-lived`.
    pub fn name(self) -> &'static str {
        match self {
            SchedulePreset::FaceToFace => "face-to-face",
            SchedulePreset::LongLived => "long-lived",
        }
    }
}

impl fmt::Display for SchedulePreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulePreset {
    type Err = ScheduleError;

    /// `face-to-face` or `long-lived` (ASCII case and `_` for `-` do not matter).
    fn from_str(s: &str) -> Result<SchedulePreset, ScheduleError> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        SchedulePreset::ALL
            .into_iter()
            .find(|p| p.name() == norm)
            .ok_or_else(|| ScheduleError::UnknownPreset(s.to_string()))
    }
}

impl From<SchedulePreset> for Schedule {
    fn from(p: SchedulePreset) -> Schedule {
        p.schedule()
    }
}

/// The default hard timeout: five minutes, for two people sitting together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The hard timeout of the long-lived preset: seven days.
pub const LONG_LIVED_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest nominal wait between reconnection attempts, unless the schedule's own interval
/// is longer.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(60);

/// How far [`jitter`] may move a delay, as a fraction of it: ±25 %.
pub const RECONNECT_JITTER: f64 = 0.25;

/// A connection that stayed up at least this long counts as healthy: when it drops, the
/// back-off starts over. One that drops sooner (a relay or proxy that accepts and then hangs
/// up) keeps growing the back-off.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// The nominal delay before reconnection attempt number `attempt` (0-based): the schedule's
/// interval, growing by half for each failed attempt, capped at [`MAX_RECONNECT_DELAY`] (but
/// never below the schedule's own interval). [`jitter`] spreads it.
pub fn reconnect_delay(schedule: &Schedule, elapsed: Duration, attempt: u32) -> Duration {
    let base = schedule.interval_at(elapsed);
    let cap = MAX_RECONNECT_DELAY.max(base);
    let factor = 1.5f64.powi(attempt.min(64) as i32);
    let secs = (base.as_secs_f64() * factor).min(cap.as_secs_f64());
    // A huge interval rounds above Duration::MAX as f64: fall back to the cap itself.
    Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
}

/// `delay` moved by a uniformly random amount within ±[`RECONNECT_JITTER`] of itself, drawn
/// from `rng` (the session's generator, never an ambient one), so that clients dropped at the
/// same moment (a relay restart) do not all come back in the same tick.
pub fn jitter(delay: Duration, rng: &mut impl Rng) -> Duration {
    let span = Duration::try_from_secs_f64(delay.as_secs_f64() * RECONNECT_JITTER)
        .unwrap_or(Duration::ZERO)
        .min(delay);
    let low = delay - span;
    let width = span.saturating_mul(2);
    let offset = Duration::try_from_secs_f64(width.as_secs_f64() * rng.gen::<f64>())
        .unwrap_or(Duration::ZERO)
        .min(width);
    low.saturating_add(offset)
}

/// The bounds [`jitter`] keeps `delay` within (inclusive), for callers that check them.
pub fn jitter_bounds(delay: Duration) -> (Duration, Duration) {
    let span = Duration::try_from_secs_f64(delay.as_secs_f64() * RECONNECT_JITTER)
        .unwrap_or(Duration::ZERO)
        .min(delay);
    (
        delay - span,
        (delay - span).saturating_add(span.saturating_mul(2)),
    )
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

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
        assert_eq!(sched.next_poll(s(999)), s(1099));
        assert_eq!(sched.next_poll(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_step_named() {
        assert_eq!(Schedule::new(vec![]), Err(ScheduleError::Empty));
        assert_eq!(
            Schedule::new(vec![(s(0), s(5)), (s(10), s(0))]),
            Err(ScheduleError::ZeroInterval { index: 1 })
        );
        assert_eq!(
            Schedule::new(vec![(s(0), s(1)), (s(10), s(1)), (s(5), s(1))]),
            Err(ScheduleError::Unsorted { index: 2 })
        );
        assert_eq!(
            Schedule::new(vec![(s(0), s(1)), (s(0), s(2))]),
            Err(ScheduleError::Duplicate { index: 0 })
        );
        let e = Schedule::new(vec![(s(0), s(1)), (s(10), s(1)), (s(5), s(1))]).unwrap_err();
        assert!(e.to_string().contains("step 2"), "{e}");
        for bad in ["[]", "[[0,0]]", "[[5,1],[1,1]]", "[[1,1],[1,2]]"] {
            assert!(serde_json::from_str::<Schedule>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn presets_are_valid_and_shaped_as_documented() {
        for p in SchedulePreset::ALL {
            let sched = p.schedule();
            assert_eq!(Schedule::new(sched.steps().to_vec()), Ok(sched.clone()));
            assert_eq!(p.name().parse::<SchedulePreset>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Schedule::default(), Schedule::face_to_face());
        assert_eq!(SchedulePreset::default(), SchedulePreset::FaceToFace);
        let f = Schedule::face_to_face();
        assert_eq!(f.interval_at(s(0)), s(500));
        assert_eq!(f.interval_at(Duration::from_secs(119)), s(500));
        assert_eq!(f.interval_at(Duration::from_secs(3600)), s(10_000));
        let l = Schedule::long_lived();
        assert_eq!(l.interval_at(s(0)), Duration::from_secs(60));
        assert_eq!(
            l.interval_at(Duration::from_secs(599)),
            Duration::from_secs(60)
        );
        let day = Duration::from_secs(86_400);
        assert_eq!(l.interval_at(day * 3), Duration::from_secs(3600));
        assert_eq!(SchedulePreset::LongLived.timeout(), day * 7);
        assert_eq!(
            "Long_Lived".parse::<SchedulePreset>(),
            Ok(SchedulePreset::LongLived)
        );
        let e = "hourly".parse::<SchedulePreset>().unwrap_err();
        assert_eq!(e, ScheduleError::UnknownPreset("hourly".into()));
        assert!(e.to_string().contains("face-to-face or long-lived"));
    }

    #[test]
    fn reconnect_backs_off_to_the_cap() {
        let sched = Schedule::new(vec![(s(0), s(1000))]).unwrap();
        assert_eq!(reconnect_delay(&sched, s(0), 0), s(1000));
        assert_eq!(reconnect_delay(&sched, s(0), 1), s(1500));
        assert_eq!(reconnect_delay(&sched, s(0), 2), s(2250));
        assert_eq!(reconnect_delay(&sched, s(0), 40), MAX_RECONNECT_DELAY);
        assert_eq!(reconnect_delay(&sched, s(0), u32::MAX), MAX_RECONNECT_DELAY);
        let slow = Schedule::new(vec![(s(0), Duration::from_secs(3600))]).unwrap();
        assert_eq!(
            reconnect_delay(&slow, s(0), 3),
            Duration::from_secs(3600),
            "a slow schedule is not sped up by the cap"
        );
        let huge = Schedule::new(vec![(s(0), Duration::MAX)]).unwrap();
        assert_eq!(reconnect_delay(&huge, Duration::MAX, 7), Duration::MAX);
    }

    #[test]
    fn jitter_stays_within_its_bound_and_spreads() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let delay = s(1000);
        let (lo, hi) = jitter_bounds(delay);
        assert_eq!((lo, hi), (s(750), s(1250)));
        let draws: Vec<Duration> = (0..1000).map(|_| jitter(delay, &mut rng)).collect();
        assert!(draws.iter().all(|d| (lo..=hi).contains(d)));
        // Spread over the whole window: both quarters near the ends are hit.
        assert!(draws.iter().any(|d| *d < s(800)));
        assert!(draws.iter().any(|d| *d > s(1200)));
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(distinct.len() > 900, "{} distinct delays", distinct.len());
        // Extremes do not panic.
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::ZERO);
        let big = jitter(Duration::MAX, &mut rng);
        assert!(big >= jitter_bounds(Duration::MAX).0);
        // The same seed gives the same delays.
        let mut again = ChaCha20Rng::from_seed([5; 32]);
        assert_eq!(jitter(delay, &mut again), draws[0]);
    }

    #[test]
    fn serde_round_trip() {
        for p in SchedulePreset::ALL {
            let sched = p.schedule();
            let json = serde_json::to_string(&sched).unwrap();
            assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), sched);
        }
        assert_eq!(
            serde_json::to_string(&Schedule::face_to_face()).unwrap(),
            "[[0,500],[120000,2000],[300000,10000]]"
        );
    }
}
