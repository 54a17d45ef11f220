//! The sans-IO client core: a state machine that takes [`Input`]s (frames from the relay,
//! connection events, time, application commands) and produces [`Output`]s (frames to send,
//! connect/poll requests, application [`Event`]s). It has no sockets, no tasks, no clock and
//! no ambient randomness, so it can be tested and simulated exactly.

mod error;
#[cfg(feature = "fault-injection")]
mod faults;
mod forms;
mod schedule;
mod session;

pub use error::{Error, Mood};
#[cfg(feature = "fault-injection")]
pub use faults::Faults;
pub use schedule::{
    jitter, jitter_bounds, reconnect_delay, Schedule, ScheduleError, SchedulePreset,
    DEFAULT_TIMEOUT, LONG_LIVED_TIMEOUT, MAX_RECONNECT_DELAY, RECONNECT_JITTER, STABLE_CONNECTION,
};
pub use session::{
    Config, Event, Input, Output, Session, StateError, CLIENT_VERSION, CLOSE_GRACE,
    DEFAULT_MAX_MESSAGE, STATE_VERSION,
};
