//! Deliberate faults, switched on one session at a time, so that the simulation harness can
//! prove its invariants catch real bugs. Present only with the `fault-injection` cargo feature,
//! which no release build and no documented feature set enables.

/// Which deliberate faults a session commits. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// After a reconnect, do not re-send the `add`s the relay has not echoed yet.
    pub forget_unechoed: bool,
    /// Use the schedule one step off (the interval of the next step, one step early).
    pub schedule_off_by_one: bool,
    /// On restore, keep the saved random stream instead of mixing in fresh randomness, so a
    /// snapshot restored twice draws the same bytes again.
    pub replay_randomness: bool,
}
