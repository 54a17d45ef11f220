//! Every scenario for 100 seeds (the multi-process one for more), every invariant checked on
//! every run.

use wormhole_sim::runner::{replay_command, run_batch};
use wormhole_sim::{run_one, ClientFaults, Scenario};

const SEEDS: std::ops::Range<u64> = 0..100;

fn all_seeds_pass(scenario: Scenario) {
    seeds_pass(scenario, SEEDS);
}

fn seeds_pass(scenario: Scenario, seeds: std::ops::Range<u64>) {
    let summary = run_batch(
        &[scenario],
        seeds.clone(),
        ClientFaults::default(),
        1,
        &|_, _, _| {},
    );
    let totals = &summary.totals[&scenario];
    assert_eq!(totals.runs, seeds.count());
    if !summary.failures.is_empty() {
        let mut msg = format!(
            "{scenario}: {} of {} seeds failed\n",
            summary.failures.len(),
            totals.runs
        );
        for r in &summary.failures {
            msg.push_str(&format!("\n{}\n", r.params));
            for v in &r.violations {
                msg.push_str(&format!("  - {v}\n"));
            }
            msg.push_str(&format!(
                "  replay: {}\n",
                replay_command(scenario, r.params.seed, ClientFaults::default())
            ));
        }
        panic!("{msg}");
    }
    // Each run covered simulated time (a run that did nothing would be a broken harness).
    assert!(totals.simulated.as_secs_f64() > 0.5 * totals.runs as f64);
}

#[test]
fn happy() {
    all_seeds_pass(Scenario::Happy);
}

#[test]
fn http() {
    all_seeds_pass(Scenario::Http);
}

#[test]
fn mixed() {
    all_seeds_pass(Scenario::Mixed);
}

#[test]
fn latency() {
    all_seeds_pass(Scenario::Latency);
}

#[test]
fn partition() {
    all_seeds_pass(Scenario::Partition);
}

#[test]
fn relay_crash() {
    all_seeds_pass(Scenario::RelayCrash);
}

#[test]
fn client_crash() {
    all_seeds_pass(Scenario::ClientCrash);
}

#[test]
fn restore_twice() {
    all_seeds_pass(Scenario::RestoreTwice);
}

#[test]
fn late_peer() {
    all_seeds_pass(Scenario::LatePeer);
}

#[test]
fn late_peer_days() {
    all_seeds_pass(Scenario::LatePeerDays);
}

#[test]
fn wrong_code() {
    all_seeds_pass(Scenario::WrongCode);
}

#[test]
fn crowded() {
    all_seeds_pass(Scenario::Crowded);
}

#[test]
fn timeout() {
    all_seeds_pass(Scenario::Timeout);
}

#[test]
fn abandoned() {
    all_seeds_pass(Scenario::Abandoned);
}

/// Several relay processes on one shared store: more seeds, as each draws its own mix of
/// hosts, transports and faults (a few seconds in debug).
#[test]
fn multi_relay() {
    seeds_pass(Scenario::MultiRelay, 0..300);
}

/// HTTP-polling clients of the multi-process scenario reach processes that do not own their
/// session: some seed forwards a request that the owner answers, and some seed forwards one
/// whose owner crashed (404, and the client carries on with a new session).
#[test]
fn multi_relay_forwards_http_sessions() {
    let (mut answered, mut gone) = (None, None);
    for seed in 0..300 {
        let report = run_one(Scenario::MultiRelay, seed, ClientFaults::default(), true);
        let trace = report.trace.expect("a trace");
        if answered.is_none()
            && trace.contains("forwarded send to")
            && trace.contains(": answered 200")
        {
            answered = Some(seed);
        }
        if gone.is_none() && trace.contains("owner gone (404)") {
            assert!(
                report.violations.is_empty(),
                "seed {seed}: {:?}",
                report.violations
            );
            gone = Some(seed);
        }
        if answered.is_some() && gone.is_some() {
            return;
        }
    }
    panic!("no seed of 0..300 forwarded an answered send ({answered:?}) and one to a gone owner ({gone:?})");
}

#[test]
fn every_scenario_has_a_test() {
    // Keep this file in step with Scenario::ALL.
    assert_eq!(Scenario::ALL.len(), 15);
}
