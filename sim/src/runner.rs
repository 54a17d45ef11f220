//! Runs many seeds of many scenarios on all cores and sums them up.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{run_one, ClientFaults, Report, Scenario};

/// Totals of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Seeds run.
    pub runs: usize,
    /// Seeds that kept every invariant.
    pub passed: usize,
    /// Simulated time covered, summed over seeds.
    pub simulated: Duration,
    /// Wall time spent in its runs, summed over seeds (across threads).
    pub wall: Duration,
}

/// What a batch of runs found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Per scenario.
    pub totals: BTreeMap<Scenario, Totals>,
    /// Every failed run, in (scenario, seed) order.
    pub failures: Vec<Report>,
    /// Wall time of the whole batch.
    pub wall: Duration,
}

impl Summary {
    /// Runs over all scenarios.
    pub fn runs(&self) -> usize {
        self.totals.values().map(|t| t.runs).sum()
    }

    /// Simulated time over all scenarios.
    pub fn simulated(&self) -> Duration {
        self.totals.values().map(|t| t.simulated).sum()
    }
}

/// The command that replays one seed.
pub fn replay_command(scenario: Scenario, seed: u64, faults: ClientFaults) -> String {
    let mut cmd = String::from("cargo run -p wormhole-sim --release");
    if faults != ClientFaults::default() {
        cmd.push_str(" --features fault-injection");
    }
    cmd.push_str(&format!(" -- --seed {seed} --scenario {scenario} --trace"));
    if faults.forget_unechoed {
        cmd.push_str(" --fault forget-unechoed");
    }
    if faults.schedule_off_by_one {
        cmd.push_str(" --fault schedule-off-by-one");
    }
    if faults.replay_randomness {
        cmd.push_str(" --fault replay-randomness");
    }
    if faults.no_change_feed {
        cmd.push_str(" --fault no-change-feed");
    }
    cmd
}

/// Runs every seed of `seeds` for every scenario of `scenarios` on `threads` threads.
/// `progress` is called after each run with (done, total).
pub fn run_batch(
    scenarios: &[Scenario],
    seeds: Range<u64>,
    faults: ClientFaults,
    threads: usize,
    progress: &(dyn Fn(usize, usize, usize) + Sync),
) -> Summary {
    let jobs: Vec<(Scenario, u64)> = scenarios
        .iter()
        .flat_map(|s| seeds.clone().map(move |seed| (*s, seed)))
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let results: Mutex<Vec<(Report, Duration)>> = Mutex::new(Vec::with_capacity(jobs.len()));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(scenario, seed)) = jobs.get(i) else {
                    break;
                };
                let t0 = Instant::now();
                let report = run_one(scenario, seed, faults, false);
                let wall = t0.elapsed();
                if !report.passed() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((report, wall));
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(n, jobs.len(), failed.load(Ordering::Relaxed));
            });
        }
    });
    let mut summary = Summary {
        wall: started.elapsed(),
        ..Summary::default()
    };
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(r, _)| (r.params.scenario, r.params.seed));
    for (report, wall) in results {
        let t = summary.totals.entry(report.params.scenario).or_default();
        t.runs += 1;
        t.simulated += report.simulated;
        t.wall += wall;
        if report.passed() {
            t.passed += 1;
        } else {
            summary.failures.push(report);
        }
    }
    summary
}
