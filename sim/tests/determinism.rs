//! The same seed gives the same run, byte for byte; a different seed a different one.

use wormhole_sim::{run_one, ClientFaults, Scenario};

#[test]
fn the_same_seed_gives_the_same_trace() {
    for scenario in Scenario::ALL {
        let seeds: &[u64] = if scenario == Scenario::LatePeerDays {
            &[5]
        } else {
            &[5, 6, 7]
        };
        for &seed in seeds {
            let a = run_one(scenario, seed, ClientFaults::default(), true);
            let b = run_one(scenario, seed, ClientFaults::default(), true);
            let (ta, tb) = (a.trace.expect("a trace"), b.trace.expect("a trace"));
            assert!(
                ta.lines().count() > 5,
                "{scenario} seed {seed}: a trace of nothing"
            );
            assert!(
                ta == tb,
                "{scenario} seed {seed}: two runs differ\n--- first\n{ta}\n--- second\n{tb}"
            );
        }
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let a = run_one(Scenario::Happy, 1, ClientFaults::default(), true);
    let b = run_one(Scenario::Happy, 2, ClientFaults::default(), true);
    assert_ne!(a.trace, b.trace);
}
