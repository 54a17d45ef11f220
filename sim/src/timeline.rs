//! The run's timeline: joiners added when due, the faults cut and mended when due, and the
//! simulation stepped to its end.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::net::VIA;
use crate::params::{NetFault, Params, Scenario, Target};
use crate::peers::RelayPeers;
use crate::record::{Log, What};
use crate::relays::relay_name;
use crate::store::RelayDisk;
use crate::world::{Shared, APPID};

pub(crate) type HostFuture = std::pin::Pin<Box<dyn std::future::Future<Output = turmoil::Result>>>;

/// What a joiner runs: once (a turmoil client), or on every boot of a host that may crash.
pub(crate) enum Software {
    /// A turmoil client, run once.
    Once(HostFuture),
    /// A turmoil host: the software of every boot.
    Host(Box<dyn Fn() -> HostFuture>),
}

/// A client that joins once alice's code is known, after its delay.
pub(crate) struct Joiner {
    pub who: &'static str,
    pub delay: Duration,
    pub software: Software,
}

/// A fault action due at a time; a mend names the relay host its cut chose, if any.
enum Action {
    Cut(NetFault),
    Mend(NetFault, Option<String>),
}

/// Steps the simulation to its end, applying the faults when due.
pub(crate) fn drive(
    sim: &mut turmoil::Sim<'_>,
    params: &Params,
    log: &Log,
    shared: &Rc<RefCell<Shared>>,
    mut joiners: Vec<Joiner>,
    disk: &RelayDisk,
    peers: &RelayPeers,
) -> Option<String> {
    let mut clients_done = false;
    // Each fault waits for its anchor: the first connection of the clients it concerns.
    let mut pending: Vec<(Option<Duration>, Action)> = params
        .faults
        .iter()
        .map(|f| (None, Action::Cut(*f)))
        .collect();
    loop {
        let now = sim.elapsed();
        let code_at = shared.borrow().code_at;
        if let Some(code_at) = code_at {
            let (due, later): (Vec<Joiner>, Vec<Joiner>) =
                joiners.into_iter().partition(|j| code_at + j.delay <= now);
            joiners = later;
            for j in due {
                match j.software {
                    Software::Once(fut) => sim.client(j.who, fut),
                    Software::Host(boot) => sim.host(j.who, boot),
                }
            }
        }
        let mut i = 0;
        while i < pending.len() {
            let due = match &pending[i] {
                (Some(at), _) => Some(*at),
                (None, Action::Cut(fault)) => anchor(fault, log).map(|a| a + start_of(fault)),
                (None, Action::Mend(..)) => None,
            };
            match due {
                Some(at) if at <= now => {
                    let (_, action) = pending.remove(i);
                    match action {
                        Action::Cut(fault) => {
                            let host = cut(sim, params, &fault, log, disk, peers, now);
                            if let Some(lasting) = length_of(&fault) {
                                pending.push((Some(now + lasting), Action::Mend(fault, host)));
                            }
                        }
                        Action::Mend(fault, host) => mend(sim, &fault, host, log, now),
                    }
                }
                Some(at) => {
                    pending[i].0 = Some(at);
                    i += 1;
                }
                None => i += 1,
            }
        }
        match sim.step() {
            // Done once every client is, including those still due to join (and, for a
            // scenario that lingers, once the relay had its time).
            // A resumable bob runs on a host, which turmoil does not wait for.
            Ok(true)
                if params.scenario == Scenario::ClientCrash
                    && shared.borrow().code_at.is_some()
                    && !shared.borrow().outcomes.iter().any(|(w, _)| w == "bob") => {}
            Ok(true) if joiners.is_empty() || shared.borrow().code_at.is_none() => {
                if !clients_done {
                    clients_done = true;
                    log.push_at(sim.elapsed(), "sim", What::Net(holds(disk)));
                }
                match params.linger {
                    Some(until) if sim.elapsed() < until => {}
                    _ => {
                        if params.linger.is_some() {
                            log.push_at(sim.elapsed(), "sim", What::Net(holds(disk)));
                        }
                        return None;
                    }
                }
            }
            Ok(true) => {}
            Ok(false) => {}
            Err(e) => return Some(e.to_string()),
        }
    }
}

/// What the relay's store holds for the app id, as a trace line.
fn holds(disk: &RelayDisk) -> String {
    match disk.contents(APPID) {
        Ok((names, boxes)) => format!(
            "relay holds {} nameplate(s), {} mailbox(es)",
            names.len(),
            boxes.len()
        ),
        Err(e) => format!("relay store unreadable: {e}"),
    }
}

fn start_of(f: &NetFault) -> Duration {
    match f {
        NetFault::Partition { at, .. }
        | NetFault::Hold { at, .. }
        | NetFault::CrashRelay { at, .. }
        | NetFault::CrashBob { at, .. }
        | NetFault::CrashHostOf { at, .. }
        | NetFault::PartitionHostOf { at, .. }
        | NetFault::HoldHostOf { at, .. }
        | NetFault::Resync { at } => *at,
    }
}

/// How long a fault lasts; `None`: it is never mended (or there is nothing to mend).
fn length_of(f: &NetFault) -> Option<Duration> {
    match f {
        NetFault::Partition { lasting, .. }
        | NetFault::Hold { lasting, .. }
        | NetFault::CrashRelay { lasting, .. }
        | NetFault::CrashBob { lasting, .. }
        | NetFault::PartitionHostOf { lasting, .. }
        | NetFault::HoldHostOf { lasting, .. } => Some(*lasting),
        NetFault::CrashHostOf { lasting, .. } => *lasting,
        NetFault::Resync { .. } => None,
    }
}

/// When the clients a fault concerns had all connected once.
fn anchor(f: &NetFault, log: &Log) -> Option<Duration> {
    let hosts: &[&str] = match f {
        NetFault::Partition { target, .. }
        | NetFault::Hold { target, .. }
        | NetFault::PartitionHostOf { target, .. }
        | NetFault::HoldHostOf { target, .. } => target.hosts(),
        NetFault::CrashRelay { .. } | NetFault::CrashHostOf { .. } | NetFault::Resync { .. } => {
            &["alice", "bob"]
        }
        NetFault::CrashBob { .. } => &["bob"],
    };
    let mut latest = Duration::ZERO;
    for h in hosts {
        latest = latest.max(log.first(h, |w| *w == What::Connected)?);
    }
    Some(latest)
}

/// The relay host a client is on now (of several): the first one its balancer reached since
/// its latest connection attempt (a WebSocket's host; the host an HTTP-polling session was
/// opened on, which owns it), else the last one it reached.
fn host_of(params: &Params, target: Target, log: &Log) -> String {
    let (who, first) = match target {
        Target::Bob => ("bob", params.starts.1),
        _ => ("alice", params.starts.0),
    };
    let entries = log.entries();
    let mine: Vec<&What> = entries
        .iter()
        .filter(|e| e.who == who)
        .map(|e| &e.what)
        .collect();
    let via = |w: &&What| match w {
        What::Note(n) => n.strip_prefix(VIA).map(str::to_string),
        _ => None,
    };
    let since = mine.iter().rposition(|w| **w == What::Attempt).unwrap_or(0);
    mine[since..]
        .iter()
        .find_map(via)
        .or_else(|| mine.iter().rev().find_map(via))
        .unwrap_or_else(|| relay_name(first))
}

/// Applies a fault; returns the relay host it chose, if it chose one.
fn cut(
    sim: &mut turmoil::Sim<'_>,
    params: &Params,
    f: &NetFault,
    log: &Log,
    disk: &RelayDisk,
    peers: &RelayPeers,
    now: Duration,
) -> Option<String> {
    match f {
        NetFault::Partition { target, .. } => {
            for h in target.hosts() {
                sim.partition(*h, "relay");
            }
            log.push_at(now, "sim", What::Net(format!("partition {target:?}")));
        }
        NetFault::Hold { target, .. } => {
            for h in target.hosts() {
                sim.hold(*h, "relay");
            }
            log.push_at(now, "sim", What::Net(format!("hold {target:?}")));
        }
        NetFault::CrashRelay { .. } => {
            sim.crash("relay");
            log.push_at(now, "sim", What::Net("crash relay".into()));
        }
        NetFault::CrashBob { .. } => {
            sim.crash("bob");
            log.push_at(now, "sim", What::Net("crash bob".into()));
        }
        NetFault::CrashHostOf { target, .. } => {
            let host = host_of(params, *target, log);
            sim.crash(host.as_str());
            // Its process is gone: requests for its HTTP sessions get 404 from now on.
            let left = match peers.leave(&host) {
                Some(instance) => format!(" (instance {instance} leaves the peer bus)"),
                None => String::new(),
            };
            log.push_at(now, "sim", What::Net(format!("crash {host}{left}")));
            return Some(host);
        }
        NetFault::PartitionHostOf { target, .. } => {
            let host = host_of(params, *target, log);
            for h in target.hosts() {
                sim.partition(*h, host.as_str());
            }
            log.push_at(
                now,
                "sim",
                What::Net(format!("partition {target:?} from {host}")),
            );
            return Some(host);
        }
        NetFault::HoldHostOf { target, .. } => {
            let host = host_of(params, *target, log);
            for h in target.hosts() {
                sim.hold(*h, host.as_str());
            }
            log.push_at(now, "sim", What::Net(format!("hold {target:?} to {host}")));
            return Some(host);
        }
        NetFault::Resync { .. } => {
            if let Some(store) = disk.shared() {
                store.resync_all();
            }
            log.push_at(now, "sim", What::Net("change feeds resync".into()));
        }
    }
    None
}

fn mend(sim: &mut turmoil::Sim<'_>, f: &NetFault, host: Option<String>, log: &Log, now: Duration) {
    let host = host.unwrap_or_else(|| "relay".into());
    match f {
        NetFault::Partition { target, .. } => {
            for h in target.hosts() {
                sim.repair(*h, "relay");
            }
            log.push_at(now, "sim", What::Net(format!("repair {target:?}")));
        }
        NetFault::Hold { target, .. } => {
            for h in target.hosts() {
                sim.release(*h, "relay");
            }
            log.push_at(now, "sim", What::Net(format!("release {target:?}")));
        }
        NetFault::CrashRelay { .. } => {
            sim.bounce("relay");
            log.push_at(now, "sim", What::Net("restart relay".into()));
        }
        NetFault::CrashBob { .. } => {
            sim.bounce("bob");
            log.push_at(now, "sim", What::Net("restart bob".into()));
        }
        NetFault::CrashHostOf { .. } => {
            sim.bounce(host.as_str());
            log.push_at(now, "sim", What::Net(format!("restart {host}")));
        }
        NetFault::PartitionHostOf { target, .. } => {
            for h in target.hosts() {
                sim.repair(*h, host.as_str());
            }
            log.push_at(
                now,
                "sim",
                What::Net(format!("repair {target:?} to {host}")),
            );
        }
        NetFault::HoldHostOf { target, .. } => {
            for h in target.hosts() {
                sim.release(*h, host.as_str());
            }
            log.push_at(
                now,
                "sim",
                What::Net(format!("release {target:?} to {host}")),
            );
        }
        NetFault::Resync { .. } => {}
    }
}
