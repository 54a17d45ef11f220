//! A few canonical traces, pinned: any change in what goes over the wire, or when, shows here.

use wormhole_sim::{run_one, ClientFaults, Scenario};

fn trace(scenario: Scenario, seed: u64) -> String {
    let report = run_one(scenario, seed, ClientFaults::default(), true);
    assert!(report.passed(), "{:?}", report.violations);
    report.trace.expect("a trace")
}

#[test]
fn happy_seed_1() {
    insta::assert_snapshot!(trace(Scenario::Happy, 1));
}

#[test]
fn wrong_code_seed_1() {
    insta::assert_snapshot!(trace(Scenario::WrongCode, 1));
}

/// The seed that found the happy close reporting success before its last message was stored
/// (over WebSocket then; it now draws HTTP polling for both sides).
#[test]
fn relay_crash_seed_0() {
    insta::assert_snapshot!(trace(Scenario::RelayCrash, 0));
}

#[test]
fn http_seed_1() {
    insta::assert_snapshot!(trace(Scenario::Http, 1));
}
