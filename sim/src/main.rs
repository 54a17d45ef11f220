//! `wormhole-sim`: runs the simulation scenarios over many seeds, or one seed with its trace.
//!
//! ```text
//! cargo run -p wormhole-sim --release -- --seeds 0..1000 [--scenario NAME] [--threads N]
//! cargo run -p wormhole-sim --release -- --seed N [--scenario NAME] --trace
//! ```

use std::io::Write;
use std::ops::Range;
use std::process::ExitCode;
use std::time::Duration;

use wormhole_sim::runner::{replay_command, run_batch};
use wormhole_sim::{run_one, ClientFaults, Scenario};

const USAGE: &str = "usage: wormhole-sim [--seeds A..B | --seed N] [--scenario NAME]... [--trace] [--threads N] [--fault forget-unechoed|schedule-off-by-one|replay-randomness|no-change-feed]...
scenarios: happy, http, mixed, latency, partition, relay-crash, client-crash, restore-twice, late-peer, late-peer-days, wrong-code, crowded, timeout, abandoned, multi-relay (all when none is named)";

struct Args {
    seeds: Range<u64>,
    single: bool,
    scenarios: Vec<Scenario>,
    trace: bool,
    threads: usize,
    faults: ClientFaults,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 0..100,
        single: false,
        scenarios: Vec::new(),
        trace: false,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        faults: ClientFaults::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seeds" => {
                let v = value("--seeds")?;
                let (a, b) = v
                    .split_once("..")
                    .ok_or_else(|| format!("--seeds wants A..B, got {v:?}"))?;
                let a: u64 = a.parse().map_err(|_| format!("bad seed range {v:?}"))?;
                let b: u64 = b.parse().map_err(|_| format!("bad seed range {v:?}"))?;
                if b <= a {
                    return Err(format!("empty seed range {v:?}"));
                }
                args.seeds = a..b;
            }
            "--seed" => {
                let v = value("--seed")?;
                let n: u64 = v.parse().map_err(|_| format!("bad seed {v:?}"))?;
                args.seeds = n..n + 1;
                args.single = true;
            }
            "--scenario" => args.scenarios.push(value("--scenario")?.parse()?),
            "--trace" => args.trace = true,
            "--threads" => {
                let v = value("--threads")?;
                args.threads = v.parse().map_err(|_| format!("bad thread count {v:?}"))?;
            }
            "--fault" => match value("--fault")?.as_str() {
                "forget-unechoed" => args.faults.forget_unechoed = true,
                "schedule-off-by-one" => args.faults.schedule_off_by_one = true,
                "replay-randomness" => args.faults.replay_randomness = true,
                "no-change-feed" => args.faults.no_change_feed = true,
                other => return Err(format!("unknown fault {other:?}")),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.scenarios.is_empty() {
        args.scenarios = Scenario::ALL.to_vec();
    }
    if args.faults != ClientFaults::default() && !cfg!(feature = "fault-injection") {
        return Err("--fault needs a build with --features fault-injection".into());
    }
    Ok(args)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.single || args.trace {
        let mut ok = true;
        for seed in args.seeds.clone() {
            for &scenario in &args.scenarios {
                let report = run_one(scenario, seed, args.faults, args.trace);
                if let Some(trace) = &report.trace {
                    print!("{trace}");
                }
                if report.passed() {
                    println!("{scenario} seed {seed}: passed");
                } else {
                    ok = false;
                    println!("{scenario} seed {seed}: FAILED");
                    for v in &report.violations {
                        println!("  - {v}");
                    }
                }
            }
        }
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let progress = |done: usize, total: usize, failed: usize| {
        if done.is_multiple_of(50) || done == total {
            eprint!("\r{done}/{total} runs, {failed} failed");
            let _ = std::io::stderr().flush();
        }
    };
    let summary = run_batch(
        &args.scenarios,
        args.seeds.clone(),
        args.faults,
        args.threads,
        &progress,
    );
    eprintln!();
    println!(
        "{:<16} {:>9} {:>14} {:>12} {:>14}",
        "scenario", "passed", "simulated", "wall (sum)", "sim s / wall s"
    );
    for (scenario, t) in &summary.totals {
        println!(
            "{:<16} {:>9} {:>14} {:>12} {:>14.0}",
            scenario.name(),
            format!("{}/{}", t.passed, t.runs),
            secs(t.simulated),
            secs(t.wall),
            t.simulated.as_secs_f64() / t.wall.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "total: {} runs, {} failed, {} simulated in {} wall on {} thread(s): {:.0} simulated seconds per wall second",
        summary.runs(),
        summary.failures.len(),
        secs(summary.simulated()),
        secs(summary.wall),
        args.threads,
        summary.simulated().as_secs_f64() / summary.wall.as_secs_f64().max(1e-9)
    );
    for report in &summary.failures {
        println!("\nFAILED {}", report.params);
        for v in &report.violations {
            println!("  - {v}");
        }
        println!(
            "  replay: {}",
            replay_command(report.params.scenario, report.params.seed, args.faults)
        );
    }
    if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
