//! The harness catches real bugs: each deliberate fault (feature `fault-injection`) makes a
//! named scenario fail, and the failing seed is printed with the command that replays it.
#![cfg(feature = "fault-injection")]

use wormhole_sim::runner::replay_command;
use wormhole_sim::{run_one, ClientFaults, Scenario};

/// Runs `scenario` with `faults` over seeds until one fails; returns it.
fn first_failing_seed(scenario: Scenario, faults: ClientFaults, max: u64) -> u64 {
    for seed in 0..max {
        let report = run_one(scenario, seed, faults, false);
        if !report.passed() {
            println!("{faults:?}: {scenario} fails at {}", report.params);
            for v in &report.violations {
                println!("  - {v}");
            }
            println!("  replay: {}", replay_command(scenario, seed, faults));
            // Without the fault, the same seed passes: the fault is what broke it.
            let clean = run_one(scenario, seed, ClientFaults::default(), false);
            assert!(
                clean.passed(),
                "seed {seed} fails without the fault too: {:?}",
                clean.violations
            );
            return seed;
        }
    }
    panic!("{faults:?}: no seed of {scenario} in 0..{max} failed: the invariants missed the fault");
}

#[test]
fn forgetting_unechoed_messages_fails_the_partition_scenario() {
    let faults = ClientFaults {
        forget_unechoed: true,
        ..ClientFaults::default()
    };
    first_failing_seed(Scenario::Partition, faults, 100);
}

#[test]
fn a_schedule_off_by_one_step_fails_the_partition_scenario() {
    let faults = ClientFaults {
        schedule_off_by_one: true,
        ..ClientFaults::default()
    };
    let seed = first_failing_seed(Scenario::Partition, faults, 100);
    let report = run_one(Scenario::Partition, seed, faults, false);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("the schedule says") || v.contains("poll")),
        "the reconnection or poll schedule check caught it: {:?}",
        report.violations
    );
}

#[test]
fn a_schedule_off_by_one_step_fails_the_http_scenario_on_its_polls() {
    let faults = ClientFaults {
        schedule_off_by_one: true,
        ..ClientFaults::default()
    };
    let seed = first_failing_seed(Scenario::Http, faults, 100);
    let report = run_one(Scenario::Http, seed, faults, false);
    assert!(
        report.violations.iter().any(|v| v.contains("poll")),
        "the poll check caught it: {:?}",
        report.violations
    );
}

#[test]
fn replaying_randomness_on_restore_fails_the_restore_twice_scenario_on_a_reused_nonce() {
    let faults = ClientFaults {
        replay_randomness: true,
        ..ClientFaults::default()
    };
    let seed = first_failing_seed(Scenario::RestoreTwice, faults, 100);
    let report = run_one(Scenario::RestoreTwice, seed, faults, false);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("reused a nonce")),
        "the nonce check caught it: {:?}",
        report.violations
    );
}

#[test]
fn relay_processes_deaf_to_the_change_feed_fail_the_multi_relay_scenario() {
    let faults = ClientFaults {
        no_change_feed: true,
        ..ClientFaults::default()
    };
    let seed = first_failing_seed(Scenario::MultiRelay, faults, 20);
    let report = run_one(Scenario::MultiRelay, seed, faults, false);
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("expected both ok")),
        "the exchange check caught it: {:?}",
        report.violations
    );
}
