//! Scenarios and the parameters each seed draws for them (swarm testing: every seed draws
//! whether it is calm or stormy, then its latencies, timings and faults).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wormhole::SchedulePreset;

use crate::store::Backend;

pub use crate::faults::{NetFault, Target};

/// The scenarios, each run once per seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Both sides exchange messages over WebSocket; latency only.
    Happy,
    /// The same over HTTP polling.
    Http,
    /// The same, one side on WebSocket and the other on HTTP polling.
    Mixed,
    /// Heavy random latency and short outages (segments held, then delivered late).
    Latency,
    /// Partitions between clients and the relay in the middle of the exchange, then repair:
    /// the clients notice (keepalive) and reconnect on their schedule.
    Partition,
    /// The relay host crashes mid-exchange and restarts with its durable store.
    RelayCrash,
    /// bob's host crashes mid-exchange, once or more, and resumes from its journal.
    ClientCrash,
    /// bob's application restores an older saved state (a backup taken before it sent
    /// anything) twice, and after each start sends an update that differs ("update N", N its
    /// start count): every re-seal must draw a fresh nonce.
    RestoreTwice,
    /// The receiver arrives about ten minutes late; long-lived schedule.
    LatePeer,
    /// The receiver arrives days later while the sender is offline for most of that time;
    /// the relay keeps mailboxes for a week.
    LatePeerDays,
    /// The receiver types a wrong code: both sides fail with the same error.
    WrongCode,
    /// A third party claims the nameplate.
    Crowded,
    /// Nobody comes: the hard timeout fires at its deadline.
    Timeout,
    /// alice vanishes for good (her link is cut, she cannot close): the relay prunes the
    /// exchange in virtual time.
    Abandoned,
    /// Two or three relay hosts, processes of one relay on a shared store (standing for
    /// Redis); alice and bob start on different ones. Clients connect through a load balancer
    /// (to any live host): a WebSocket client may move to another host on each reconnection,
    /// an HTTP-polling client on each HTTP connection (its session's requests forwarded to the
    /// process that owns it). The host a client is on crashes (and is maybe restarted),
    /// clients are partitioned from their host or their segments to it held, the store's
    /// change feeds skip (resync).
    MultiRelay,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 15] = [
        Scenario::Happy,
        Scenario::Http,
        Scenario::Mixed,
        Scenario::Latency,
        Scenario::Partition,
        Scenario::RelayCrash,
        Scenario::ClientCrash,
        Scenario::RestoreTwice,
        Scenario::LatePeer,
        Scenario::LatePeerDays,
        Scenario::WrongCode,
        Scenario::Crowded,
        Scenario::Timeout,
        Scenario::Abandoned,
        Scenario::MultiRelay,
    ];

    /// The scenario's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Happy => "happy",
            Scenario::Http => "http",
            Scenario::Mixed => "mixed",
            Scenario::Latency => "latency",
            Scenario::Partition => "partition",
            Scenario::RelayCrash => "relay-crash",
            Scenario::ClientCrash => "client-crash",
            Scenario::RestoreTwice => "restore-twice",
            Scenario::LatePeer => "late-peer",
            Scenario::LatePeerDays => "late-peer-days",
            Scenario::WrongCode => "wrong-code",
            Scenario::Crowded => "crowded",
            Scenario::Timeout => "timeout",
            Scenario::Abandoned => "abandoned",
            Scenario::MultiRelay => "multi-relay",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown scenario {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// How a client reaches the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// `ws://`.
    WebSocket,
    /// `http://` (polling).
    Http,
}

/// Everything a run depends on, drawn from (scenario, seed).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The scenario.
    pub scenario: Scenario,
    /// The seed.
    pub seed: u64,
    /// Swarm testing: stormy seeds get harsher latencies and more faults.
    pub stormy: bool,
    /// turmoil's tick.
    pub tick: Duration,
    /// Simulated time limit of the run.
    pub limit: Duration,
    /// Message latency range.
    pub latency: (Duration, Duration),
    /// The clients' schedule preset (with its timeout unless `timeout` says otherwise).
    pub preset: SchedulePreset,
    /// The clients' hard timeout.
    pub timeout: Duration,
    /// How long bob waits after the code is known before he types it.
    pub bob_delay: Duration,
    /// alice's messages; bob's messages.
    pub messages: (usize, usize),
    /// Pause before each message a side sends.
    pub gap: Duration,
    /// Network and host faults.
    pub faults: Vec<NetFault>,
    /// bob types a wrong code.
    pub wrong_code: bool,
    /// A third party claims the nameplate this long after the code is known.
    pub mallory: Option<Duration>,
    /// The relay's mailbox expiry (seconds).
    pub expiry_secs: f64,
    /// The relay's store.
    pub backend: Backend,
    /// Keep the simulation running until then, after the clients finished (for the relay's
    /// pruning).
    pub linger: Option<Duration>,
    /// How alice and bob reach the relay.
    pub transports: (TransportKind, TransportKind),
    /// Relay hosts (processes on one shared store when more than one).
    pub relays: usize,
    /// The relay host alice and bob first connect to (of `relays`).
    pub starts: (usize, usize),
    /// Whether alice's and bob's HTTP-polling clients keep their connections open between
    /// requests (`HttpClientOptions::keep_alive`); without, each request dials anew (and,
    /// with several relay hosts, may land on another).
    pub keep_alive: (bool, bool),
}

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn ms_between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    MS(rng.gen_range(lo..=hi))
}

/// A stable 64-bit hash of a name (FNV-1a), to give each scenario its own stream per seed.
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Params {
    /// The parameters of `scenario` for `seed`.
    pub fn draw(scenario: Scenario, seed: u64) -> Params {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv(scenario.name()));
        let stormy = rng.gen_bool(0.5);
        let latency = if stormy {
            let lo = rng.gen_range(0..=100);
            (MS(lo), MS(lo + rng.gen_range(0..=600)))
        } else {
            (MS(1), ms_between(&mut rng, 1, 20))
        };
        let mut p = Params {
            scenario,
            seed,
            stormy,
            tick: MS(10),
            limit: SECS(20 * 60),
            latency,
            preset: SchedulePreset::FaceToFace,
            timeout: SchedulePreset::FaceToFace.timeout(),
            bob_delay: if stormy {
                ms_between(&mut rng, 0, 20_000)
            } else {
                ms_between(&mut rng, 0, 3_000)
            },
            messages: (rng.gen_range(1..=3), rng.gen_range(1..=3)),
            gap: ms_between(&mut rng, 0, 2_000),
            faults: Vec::new(),
            wrong_code: false,
            mallory: None,
            expiry_secs: 11.0 * 60.0,
            backend: Backend::Memory,
            linger: None,
            transports: (TransportKind::WebSocket, TransportKind::WebSocket),
            relays: 1,
            starts: (0, 0),
            keep_alive: (true, true),
        };
        match scenario {
            Scenario::Happy => {}
            Scenario::Http => p.transports = (TransportKind::Http, TransportKind::Http),
            Scenario::Mixed => {
                p.transports = if rng.gen_bool(0.5) {
                    (TransportKind::Http, TransportKind::WebSocket)
                } else {
                    (TransportKind::WebSocket, TransportKind::Http)
                };
            }
            Scenario::Latency => {
                let lo = rng.gen_range(0..=300);
                p.latency = (MS(lo), MS(lo + rng.gen_range(0..=1_500)));
                let holds = rng.gen_range(if stormy { 1..=4 } else { 0..=1 });
                let mut at = Duration::ZERO;
                for _ in 0..holds {
                    at += ms_between(&mut rng, 0, 8_000);
                    let lasting = ms_between(&mut rng, 100, 10_000);
                    p.faults.push(NetFault::Hold {
                        target: target(&mut rng),
                        at,
                        lasting,
                    });
                    at += lasting;
                }
            }
            Scenario::Partition => {
                let n = rng.gen_range(if stormy { 1..=3 } else { 1..=1 });
                let mut at = Duration::ZERO;
                for _ in 0..n {
                    at += ms_between(&mut rng, 0, 10_000);
                    let lasting = ms_between(&mut rng, 200, 90_000);
                    p.faults.push(NetFault::Partition {
                        target: target(&mut rng),
                        at,
                        lasting,
                    });
                    at += lasting;
                }
                p.transports = (kind(&mut rng), kind(&mut rng));
            }
            Scenario::RelayCrash => {
                let n = rng.gen_range(if stormy { 1..=2 } else { 1..=1 });
                let mut at = Duration::ZERO;
                for _ in 0..n {
                    at += ms_between(&mut rng, 0, 5_000);
                    let lasting = ms_between(&mut rng, 10, 60_000);
                    p.faults.push(NetFault::CrashRelay { at, lasting });
                    at += lasting;
                }
                // Drawn last, so the draws above stay those of older versions of the harness.
                p.transports = (kind(&mut rng), kind(&mut rng));
                if rng.gen_bool(0.5) {
                    p.backend = Backend::Sqlite;
                }
            }
            Scenario::ClientCrash => {
                p.messages.1 = rng.gen_range(2..=4);
                let n = rng.gen_range(if stormy { 1..=3 } else { 1..=1 });
                let mut at = Duration::ZERO;
                for _ in 0..n {
                    at += ms_between(&mut rng, 0, 4_000);
                    let lasting = ms_between(&mut rng, 10, 20_000);
                    p.faults.push(NetFault::CrashBob { at, lasting });
                    at += lasting;
                }
                p.transports = (kind(&mut rng), kind(&mut rng));
            }
            Scenario::RestoreTwice => {
                // bob sends one update per start; `gap` is also how long each of his first
                // two starts runs after its send before it stops (without closing).
                p.messages.1 = 1;
                p.transports = (kind(&mut rng), kind(&mut rng));
            }
            Scenario::LatePeer => {
                p.tick = MS(100);
                p.limit = SECS(3 * 3600);
                p.preset = SchedulePreset::LongLived;
                p.timeout = SchedulePreset::LongLived.timeout();
                p.bob_delay = SECS(600) + ms_between(&mut rng, 0, 120_000);
                if stormy {
                    p.faults.push(NetFault::Partition {
                        target: Target::Alice,
                        at: ms_between(&mut rng, 1_000, 400_000),
                        lasting: ms_between(&mut rng, 1_000, 300_000),
                    });
                }
            }
            Scenario::LatePeerDays => {
                // A coarse tick (a connection attempt takes ~4 ticks and must fit the
                // driver's 15 s connect timeout) keeps days of idle time cheap.
                p.tick = SECS(2);
                p.latency = (MS(1), MS(1));
                p.limit = SECS(4 * 86_400);
                p.preset = SchedulePreset::LongLived;
                p.timeout = SchedulePreset::LongLived.timeout();
                p.expiry_secs = 7.0 * 86_400.0;
                p.gap = Duration::ZERO;
                let day = 86_400_000;
                p.bob_delay = ms_between(&mut rng, day, 2 * day);
                // alice goes offline right after sharing the code, until some time around
                // bob's arrival.
                let back = p.bob_delay.as_millis() as u64 + rng.gen_range(0..=day / 2);
                p.faults.push(NetFault::Partition {
                    target: Target::Alice,
                    at: SECS(30),
                    lasting: MS(back.saturating_sub(day / 4)),
                });
                if rng.gen_bool(0.5) {
                    p.backend = Backend::Sqlite;
                }
            }
            Scenario::WrongCode => p.wrong_code = true,
            Scenario::Crowded => {
                p.timeout = SECS(60);
                p.mallory = Some(ms_between(&mut rng, 0, 5_000));
            }
            Scenario::Abandoned => {
                // Coarse ticks: nothing but timers for half an hour.
                p.tick = SECS(1);
                p.latency = (MS(1), ms_between(&mut rng, 1, 500));
                p.timeout = ms_between(&mut rng, 30_000, 600_000);
                p.limit = SECS(3 * 3600);
                // Python's expiry is 11 minutes, pruned every 5; a stale connection is
                // dropped by the relay's keepalive after 10 minutes; alice's timeout is at most
                // 10 minutes. All of it is over within an hour.
                p.linger = Some(SECS(3600));
                p.faults.push(NetFault::Partition {
                    target: Target::Alice,
                    at: ms_between(&mut rng, 3_000, 20_000),
                    lasting: SECS(86_400),
                });
                if rng.gen_bool(0.5) {
                    p.backend = Backend::Sqlite;
                }
            }
            Scenario::MultiRelay => multi_relay(&mut p, &mut rng),
            Scenario::Timeout => {
                p.timeout = ms_between(&mut rng, 5_000, 120_000);
                p.limit = SECS(10 * 60);
                if stormy {
                    // alice's link is cut around her deadline.
                    let before = ms_between(&mut rng, 0, 4_000);
                    p.faults.push(NetFault::Partition {
                        target: Target::Alice,
                        at: p.timeout.saturating_sub(before),
                        lasting: ms_between(&mut rng, 100, 60_000),
                    });
                }
            }
        }
        p
    }
}

/// The draws of [`Scenario::MultiRelay`].
fn multi_relay(p: &mut Params, rng: &mut ChaCha8Rng) {
    p.backend = Backend::Shared;
    // A longer exchange, so that the faults (timed from both clients' first connection) hit
    // it in the middle.
    p.messages = (rng.gen_range(2..=4), rng.gen_range(2..=4));
    p.gap = ms_between(rng, 1_000, 3_000);
    p.relays = rng.gen_range(2..=3);
    let alice = rng.gen_range(0..p.relays);
    let bob = (alice + rng.gen_range(1..p.relays)) % p.relays;
    p.starts = (alice, bob);
    // Either transport moves between hosts (HTTP polling on each of its connections).
    p.transports = (kind(rng), kind(rng));
    // Half the HTTP clients dial anew for every request.
    p.keep_alive = (rng.gen_bool(0.5), rng.gen_bool(0.5));
    let n = rng.gen_range(if p.stormy { 1..=3 } else { 1..=1 });
    let mut at = Duration::ZERO;
    let mut gone = false;
    for _ in 0..n {
        at += ms_between(rng, 0, 3_000);
        let who = if rng.gen_bool(0.5) {
            Target::Alice
        } else {
            Target::Bob
        };
        let fault = match rng.gen_range(0..4) {
            0 => {
                // A host stays down for good only once: the others can still serve.
                let lasting = ms_between(rng, 10, 60_000);
                let for_good = !gone && rng.gen_bool(0.3);
                gone |= for_good;
                let fault = NetFault::CrashHostOf {
                    target: who,
                    at,
                    lasting: (!for_good).then_some(lasting),
                };
                at += lasting;
                fault
            }
            1 => {
                let lasting = ms_between(rng, 200, 60_000);
                let fault = NetFault::PartitionHostOf {
                    target: who,
                    at,
                    lasting,
                };
                at += lasting;
                fault
            }
            2 => {
                let lasting = ms_between(rng, 100, 20_000);
                let fault = NetFault::HoldHostOf {
                    target: who,
                    at,
                    lasting,
                };
                at += lasting;
                fault
            }
            _ => NetFault::Resync { at },
        };
        p.faults.push(fault);
    }
    // A gap in the feeds at a time of its own, on some seeds even without other faults.
    if rng.gen_bool(0.5) {
        p.faults.push(NetFault::Resync {
            at: ms_between(rng, 0, 10_000),
        });
    }
}

/// WebSocket or HTTP polling, evenly.
fn kind(rng: &mut ChaCha8Rng) -> TransportKind {
    if rng.gen_bool(0.5) {
        TransportKind::Http
    } else {
        TransportKind::WebSocket
    }
}

fn target(rng: &mut ChaCha8Rng) -> Target {
    match rng.gen_range(0..3) {
        0 => Target::Alice,
        1 => Target::Bob,
        _ => Target::Both,
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} seed {}: {}, tick {:?}, latency {:?}..{:?}, {} (timeout {:?}), bob after {:?}, messages {}+{}, gap {:?}",
            self.scenario,
            self.seed,
            if self.stormy { "stormy" } else { "calm" },
            self.tick,
            self.latency.0,
            self.latency.1,
            self.preset,
            self.timeout,
            self.bob_delay,
            self.messages.0,
            self.messages.1,
            self.gap,
        )?;
        if self.transports != (TransportKind::WebSocket, TransportKind::WebSocket) {
            write!(
                f,
                ", alice on {:?}, bob on {:?}",
                self.transports.0, self.transports.1
            )?;
        }
        if self.wrong_code {
            write!(f, ", wrong code")?;
        }
        if let Some(m) = self.mallory {
            write!(f, ", third party after {m:?}")?;
        }
        if self.backend == Backend::Sqlite {
            write!(f, ", relay on SQLite")?;
        }
        if self.relays > 1 {
            write!(
                f,
                ", {} relay hosts on a shared store, alice first on {}, bob first on {}",
                self.relays, self.starts.0, self.starts.1
            )?;
        }
        for (who, kind, keep) in [
            ("alice", self.transports.0, self.keep_alive.0),
            ("bob", self.transports.1, self.keep_alive.1),
        ] {
            if kind == TransportKind::Http && !keep {
                write!(f, ", {who}'s HTTP requests each on a connection of its own")?;
            }
        }
        if self.expiry_secs != 11.0 * 60.0 {
            write!(f, ", relay keeps mailboxes {} s", self.expiry_secs)?;
        }
        for fault in &self.faults {
            write!(f, ", {fault}")?;
        }
        Ok(())
    }
}
