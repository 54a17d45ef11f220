//! Deterministic network simulation of `wormhole` on turmoil.
//!
//! Every run puts the **production** code on simulated hosts: the relay runner
//! (`wormhole::relay::server::spawn`) behind the production WebSocket listener on a turmoil
//! TCP listener, and clients (`wormhole::Wormhole`) using the production WebSocket transport
//! over turmoil TCP. Time is virtual ([`SimClock`]); every random choice comes from the seed
//! (turmoil's network, the clients' and the relay's generators), so a seed replays exactly.
//!
//! The `multi-relay` scenario runs two or three relay hosts, each the production runner for a
//! store shared by several processes (`wormhole::relay::server::spawn_shared`) over one
//! in-memory `SharedMemoryStore` standing for Redis; clients reach them through a load
//! balancer ([`net::Balancer`]), so reconnections (and an HTTP-polling client's connections)
//! move between processes, which forward HTTP-polling requests to the session's owner through
//! a `MemoryPeerBus` ([`peers`]).
//!
//! A run is one [`Scenario`] with the [`Params`] its seed draws; [`check()`] lists the
//! invariants it broke. [`runner`] runs many seeds on all cores.

#![warn(missing_docs)]

pub mod check;
pub mod clock;
pub mod faults;
pub mod net;
pub mod params;
pub mod peers;
pub mod record;
pub mod relays;
pub mod runner;
pub mod store;
mod timeline;
pub mod trace;
pub mod world;

pub use check::check;
pub use clock::SimClock;
pub use params::{NetFault, Params, Scenario, Target, TransportKind};
pub use world::{run, ClientFaults, RunData};

/// The result of one seed of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was drawn.
    pub params: Params,
    /// The invariants broken (empty: passed).
    pub violations: Vec<String>,
    /// Simulated time covered.
    pub simulated: std::time::Duration,
    /// The trace, if asked for.
    pub trace: Option<String>,
}

impl Report {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Runs one seed of one scenario and checks it. A panic anywhere in the run is a violation.
pub fn run_one(scenario: Scenario, seed: u64, faults: ClientFaults, trace: bool) -> Report {
    let params = Params::draw(scenario, seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let data = world::run(&params, faults);
        let violations = check::check(&data);
        let trace = trace.then(|| trace::render(&data));
        (violations, data.elapsed, trace)
    }));
    match result {
        Ok((violations, simulated, trace)) => Report {
            params,
            violations,
            simulated,
            trace,
        },
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Report {
                params,
                violations: vec![format!("panicked: {msg}")],
                simulated: std::time::Duration::ZERO,
                trace: None,
            }
        }
    }
}
