//! One run: the relay host and the client hosts on turmoil, running the production code, and
//! the fault timeline.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use wormhole::storage::{MemoryStorage, Storage};
use wormhole::{Code, Error, Wormhole};

use crate::clock::{SimClock, EPOCH_SECS};
use crate::net::client_transport;
use crate::params::{Params, Scenario};
use crate::peers::RelayPeers;
use crate::record::{Log, RecordingTransport, What};
use crate::relays::{relay_host, shared_relay_hosts};
use crate::store::RelayDisk;
use crate::timeline::{drive, Joiner, Software};

/// The app id every client uses.
pub const APPID: &str = "sim.example/wormhole";
/// The relay's port.
pub const RELAY_PORT: u16 = 4000;
/// The relay URL of WebSocket clients.
pub const RELAY_URL: &str = "ws://relay:4000/v1";
/// The relay URL of HTTP-polling clients (the same port).
pub const RELAY_HTTP_URL: &str = "http://relay:4000/v1";
/// How long a client waits for its driver's tasks to end after it is done.
pub const TASK_GRACE: Duration = Duration::from_secs(10);

/// Deliberate faults for the clients (the `fault-injection` feature of `wormhole`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientFaults {
    /// Do not re-send un-echoed adds after a reconnect.
    pub forget_unechoed: bool,
    /// Read the schedule one step early.
    pub schedule_off_by_one: bool,
    /// A restored session keeps its saved random stream (no fresh entropy).
    pub replay_randomness: bool,
    /// The relay processes of a multi-process scenario do not follow the shared store's
    /// change feed (the plain runner instead of `spawn_shared`): a message added through one
    /// process never reaches the listeners on another. (A fault of the simulated relay, not
    /// of the clients; kept here with the others.)
    pub no_change_feed: bool,
}

/// How one client ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When it started (simulated time).
    pub started: Duration,
    /// When its exchange ended (success or error).
    pub ended: Duration,
    /// The messages it received, in order.
    pub received: Vec<Vec<u8>>,
    /// `Ok` or the error that ended it.
    pub result: Result<(), Error>,
    /// Tasks of its runtime still alive [`TASK_GRACE`] after it closed.
    pub tasks_left: usize,
}

/// What the clients share through the simulation (the code shown by alice, read by the others).
#[derive(Debug, Default)]
pub struct Shared {
    /// alice's code, once allocated.
    pub code: Option<Code>,
    /// When it became known.
    pub code_at: Option<Duration>,
    /// Each client's outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// A resumable bob's application state (its "disk").
    pub bob: BobApp,
}

/// What a resumable bob's application keeps across crashes.
#[derive(Debug, Default)]
pub struct BobApp {
    /// Boots so far.
    pub boots: u32,
    /// When it first started.
    pub started: Option<Duration>,
    /// Messages handed to `send`.
    pub sent: usize,
    /// Messages read.
    pub received: Vec<Vec<u8>>,
}

/// Everything a finished run leaves for the checks.
#[derive(Debug)]
pub struct RunData {
    /// The parameters.
    pub params: Params,
    /// The log.
    pub log: Log,
    /// Client outcomes (alice, bob, mallory as they took part).
    pub outcomes: Vec<(String, Outcome)>,
    /// The relay's store (its disk) at the end.
    pub disk: RelayDisk,
    /// The mailboxes each relay host still running at the end listens to (processes on a
    /// shared store only), by host.
    pub listening: Vec<(String, Vec<(String, String)>)>,
    /// Simulated time covered.
    pub elapsed: Duration,
    /// turmoil's verdict if the run did not complete.
    pub sim_error: Option<String>,
    /// The messages each client sent: alice's, bob's.
    pub sent: (Vec<Vec<u8>>, Vec<Vec<u8>>),
}

/// A 32-byte seed for `what`, derived from the run's seed.
pub fn derive_seed(seed: u64, what: &str) -> [u8; 32] {
    let mut base = [0u8; 32];
    base[..8].copy_from_slice(&seed.to_le_bytes());
    for (i, b) in what.bytes().enumerate() {
        base[8 + i % 24] ^= b.rotate_left((i / 24) as u32);
    }
    let mut rng = ChaCha20Rng::from_seed(base);
    let mut out = [0u8; 32];
    rng.fill_bytes(&mut out);
    out
}

/// The messages a side sends.
pub fn messages(who: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{who}'s message {i}").into_bytes())
        .collect()
}

/// What a restoring bob's application sends on its `start`-th start (it counts its starts
/// outside the wormhole state).
pub fn update(start: u32) -> Vec<u8> {
    format!("bob's update {start}").into_bytes()
}

/// How many times a restoring bob starts (the first, then two restores of the backup).
pub const STARTS: u32 = 3;

/// The note a client logs when it restores a state older than its latest: what it sends after
/// it may legitimately differ from what it sent before under the same phase.
pub const RESTORED_OLDER: &str = "restored an older state (the backup)";

#[derive(Clone)]
struct ClientSpec {
    who: &'static str,
    params: Params,
    faults: ClientFaults,
    log: Log,
    shared: Rc<RefCell<Shared>>,
}

impl ClientSpec {
    fn wormhole(&self, timeout: Duration) -> Wormhole {
        let (inner, url) = self.transport();
        let w = Wormhole::new(APPID, &url)
            .with_preset(self.params.preset)
            .with_timeout(Some(timeout));
        self.dress(w, inner, self.who)
    }

    /// This client's production transport over turmoil TCP, and the URL it serves
    /// ([`client_transport`]).
    fn transport(&self) -> (Arc<dyn wormhole_transports::Transport>, String) {
        client_transport(&self.params, self.who, &self.log)
    }

    /// The simulation's transport (recorded), clock, seed and faults on a wormhole (new or
    /// restored).
    fn dress(
        &self,
        w: Wormhole,
        inner: Arc<dyn wormhole_transports::Transport>,
        seed_name: &str,
    ) -> Wormhole {
        let transport = RecordingTransport::new(inner, self.log.clone(), self.who);
        let w = w
            .with_transport(Arc::new(transport))
            .with_clock(Arc::new(SimClock))
            .with_seed(derive_seed(self.params.seed, seed_name));
        #[cfg(feature = "fault-injection")]
        let w = w.with_faults(wormhole::core::Faults {
            forget_unechoed: self.faults.forget_unechoed,
            schedule_off_by_one: self.faults.schedule_off_by_one,
            replay_randomness: self.faults.replay_randomness,
        });
        #[cfg(not(feature = "fault-injection"))]
        let _ = self.faults;
        w
    }

    fn note(&self, text: String) {
        self.log.push(self.who, What::Note(text));
    }

    /// Sends `mine` (a pause before each), receives `expect` messages, closes.
    async fn exchange(
        &self,
        w: &mut Wormhole,
        mine: &[Vec<u8>],
        expect: usize,
        received: &mut Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        for m in mine {
            tokio::time::sleep(self.params.gap).await;
            w.send(m).await?;
        }
        while received.len() < expect {
            received.push(w.recv().await?);
        }
        w.close().await
    }

    async fn finish(&self, started: Duration, received: Vec<Vec<u8>>, result: Result<(), Error>) {
        let ended = SimClock::elapsed();
        self.note(match &result {
            Ok(()) => format!("done: {} messages received", received.len()),
            Err(e) => format!("failed: {e}"),
        });
        // Nothing may be left running: wait (bounded) for the driver and its links to end.
        let metrics = tokio::runtime::Handle::current().metrics();
        let until = ended + TASK_GRACE;
        while metrics.num_alive_tasks() > 0 && SimClock::elapsed() < until {
            tokio::time::sleep(self.params.tick).await;
        }
        let tasks_left = metrics.num_alive_tasks();
        self.shared.borrow_mut().outcomes.push((
            self.who.to_string(),
            Outcome {
                started,
                ended,
                received,
                result,
                tasks_left,
            },
        ));
    }

    async fn alice(self, mine: Vec<Vec<u8>>, expect: usize) {
        let started = SimClock::elapsed();
        let mut w = self.wormhole(self.params.timeout);
        let mut received = Vec::new();
        let result = match w.allocate_code(2).await {
            Ok(code) => {
                self.note(format!("code {}", code.nameplate().as_str()));
                {
                    let mut shared = self.shared.borrow_mut();
                    shared.code = Some(code);
                    shared.code_at = Some(SimClock::elapsed());
                }
                self.exchange(&mut w, &mine, expect, &mut received).await
            }
            Err(e) => Err(e),
        };
        let result = close_on_error(&mut w, result).await;
        drop(w);
        self.finish(started, received, result).await;
    }

    async fn joiner(self, wrong: bool, timeout: Duration, mine: Vec<Vec<u8>>, expect: usize) {
        // Started by the simulation once alice's code is known and its delay has passed.
        let Some(code) = self.shared.borrow().code.clone() else {
            return;
        };
        let started = SimClock::elapsed();
        let code = if wrong { wrong_code(&code) } else { code };
        let mut w = self.wormhole(timeout);
        let mut received = Vec::new();
        let result = match w.set_code(code).await {
            Ok(()) => self.exchange(&mut w, &mine, expect, &mut received).await,
            Err(e) => Err(e),
        };
        let result = close_on_error(&mut w, result).await;
        drop(w);
        self.finish(started, received, result).await;
    }
}

impl ClientSpec {
    /// bob on a host that may crash: every boot resumes from the journal on bob's "disk"
    /// (`journal`, outside the host), or starts afresh if nothing was journaled yet. What the
    /// application did (messages handed to `send`, messages read) is kept there too.
    async fn resumable(self, journal: Arc<dyn Storage>, mine: Vec<Vec<u8>>, expect: usize) {
        if self
            .shared
            .borrow()
            .outcomes
            .iter()
            .any(|(w, _)| w == "bob")
        {
            return; // restarted after it had finished
        }
        let boot = {
            let mut sh = self.shared.borrow_mut();
            sh.bob.boots += 1;
            sh.bob.started.get_or_insert(SimClock::elapsed());
            sh.bob.boots
        };
        self.note(format!("boot {boot}"));
        let Some(code) = self.shared.borrow().code.clone() else {
            return;
        };
        let (inner, _) = self.transport();
        let mut w = match Wormhole::from_storage(journal.clone(), "bob") {
            Ok(Some(w)) => {
                self.note("resumed from the journal".into());
                self.dress(w, inner, &format!("bob boot {boot}"))
            }
            Ok(None) => {
                let w = self
                    .wormhole(self.params.timeout)
                    .with_journal(journal, "bob");
                let mut w = w;
                if let Err(e) = w.set_code(code).await {
                    return self.end_bob(Err(e)).await;
                }
                w
            }
            Err(e) => return self.end_bob(Err(e)).await,
        };
        let result = async {
            loop {
                let sent = self.shared.borrow().bob.sent;
                let Some(m) = mine.get(sent) else { break };
                tokio::time::sleep(self.params.gap).await;
                w.send(m).await?;
                self.shared.borrow_mut().bob.sent += 1;
            }
            while self.shared.borrow().bob.received.len() < expect {
                let m = w.recv().await?;
                self.shared.borrow_mut().bob.received.push(m);
            }
            w.close().await
        }
        .await;
        let result = close_on_error(&mut w, result).await;
        drop(w);
        self.end_bob(result).await;
    }

    async fn end_bob(&self, result: Result<(), Error>) {
        let (started, received) = {
            let sh = self.shared.borrow();
            (sh.bob.started.unwrap_or_default(), sh.bob.received.clone())
        };
        self.finish(started, received, result).await;
    }
}

impl ClientSpec {
    /// bob whose application keeps a backup of its wormhole state, taken after the key
    /// exchange and before it sent anything, and restores that backup twice (a snapshot restored twice, or a disk that
    /// lost its later writes). Each start sends [`update`] of its start count; the first two
    /// stop (without closing) `gap` after their send; the last receives and closes.
    async fn restorer(self, expect: usize) {
        let Some(code) = self.shared.borrow().code.clone() else {
            return;
        };
        let started = SimClock::elapsed();
        let mut received = Vec::new();
        self.note("boot 1".into());
        let mut w = self.wormhole(self.params.timeout);
        let result = async {
            w.set_code(code).await?;
            // The backup: taken once the key is confirmed (the mailbox known), before the
            // application sent anything.
            w.verify().await?;
            let backup = w.serialize().await?;
            for start in 1..=STARTS {
                if start > 1 {
                    self.note(format!("boot {start}"));
                    self.note(RESTORED_OLDER.into());
                    let (inner, _) = self.transport();
                    let restored = Wormhole::from_serialized(&backup)?;
                    let old = std::mem::replace(
                        &mut w,
                        self.dress(restored, inner, &format!("bob start {start}")),
                    );
                    // Stopped without closing: the other side just waits.
                    let _ = old.suspend().await;
                }
                tokio::time::sleep(self.params.gap).await;
                w.send(&update(start)).await?;
                if start < STARTS {
                    tokio::time::sleep(self.params.gap).await;
                }
            }
            while received.len() < expect {
                received.push(w.recv().await?);
            }
            w.close().await
        }
        .await;
        let result = close_on_error(&mut w, result).await;
        drop(w);
        self.finish(started, received, result).await;
    }
}

/// The same nameplate with other words.
fn wrong_code(code: &Code) -> Code {
    let np = code.nameplate();
    for words in ["aardvark-absurd", "adroitness-adviser"] {
        if let Ok(c) = Code::parse(&format!("{}-{words}", np.as_str())) {
            if c != *code {
                return c;
            }
        }
    }
    code.clone()
}

/// Runs one seed of one scenario to its end.
pub fn run(params: &Params, faults: ClientFaults) -> RunData {
    let log = Log::default();
    let disk = match RelayDisk::new(params.backend) {
        Ok(disk) => disk,
        Err(e) => panic!("cannot make the relay's database file: {e}"),
    };
    let shared = Rc::new(RefCell::new(Shared::default()));
    let mut sim = turmoil::Builder::new()
        .tick_duration(params.tick)
        .simulation_duration(params.limit)
        .min_message_latency(params.latency.0)
        .max_message_latency(params.latency.1)
        .rng_seed(params.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .build();

    // The relay hosts: production listener and runner over turmoil TCP; the store outlives
    // crashes.
    // Their HTTP-polling sessions' peer bus, outside the hosts too.
    let peers = RelayPeers::new(log.clone());
    let watched = if params.relays > 1 {
        shared_relay_hosts(&mut sim, params, &disk, &peers, faults.no_change_feed)
    } else {
        relay_host(&mut sim, params, &disk);
        Vec::new()
    };

    let alice_msgs = messages("alice", params.messages.0);
    let bob_msgs = messages("bob", params.messages.1);
    let spec = |who: &'static str| ClientSpec {
        who,
        params: params.clone(),
        faults,
        log: log.clone(),
        shared: shared.clone(),
    };
    let with_bob = !matches!(params.scenario, Scenario::Timeout | Scenario::Abandoned);
    {
        let c = spec("alice");
        let (mine, expect) = (
            alice_msgs.clone(),
            if with_bob { bob_msgs.len() } else { 1 },
        );
        sim.client("alice", async move {
            c.alice(mine, expect).await;
            Ok(())
        });
    }
    // The others join once the code is known and their delay has passed: they are added to
    // the simulation only then, so days of waiting cost them nothing.
    let mut joiners: Vec<Joiner> = Vec::new();
    let resumable = params.scenario == Scenario::ClientCrash;
    if resumable {
        let journal: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let (mine, expect) = (bob_msgs.clone(), alice_msgs.len());
        let c = Rc::new(spec("bob"));
        joiners.push(Joiner {
            who: "bob",
            delay: params.bob_delay,
            software: Software::Host(Box::new(move || {
                let c = ClientSpec::clone(&c);
                let (journal, mine) = (journal.clone(), mine.clone());
                Box::pin(async move {
                    c.resumable(journal, mine, expect).await;
                    Ok(())
                })
            })),
        });
    } else if params.scenario == Scenario::RestoreTwice {
        let c = spec("bob");
        let expect = alice_msgs.len();
        joiners.push(Joiner {
            who: "bob",
            delay: params.bob_delay,
            software: Software::Once(Box::pin(async move {
                c.restorer(expect).await;
                Ok(())
            })),
        });
    } else if with_bob {
        let c = spec("bob");
        let (mine, expect) = (bob_msgs.clone(), alice_msgs.len());
        let (wrong, timeout) = (params.wrong_code, params.timeout);
        joiners.push(Joiner {
            who: "bob",
            delay: params.bob_delay,
            software: Software::Once(Box::pin(async move {
                c.joiner(wrong, timeout, mine, expect).await;
                Ok(())
            })),
        });
    }
    if let Some(delay) = params.mallory {
        let c = spec("mallory");
        joiners.push(Joiner {
            who: "mallory",
            delay,
            software: Software::Once(Box::pin(async move {
                c.joiner(true, Duration::from_secs(60), messages("mallory", 1), 1)
                    .await;
                Ok(())
            })),
        });
    }

    let sim_error = drive(&mut sim, params, &log, &shared, joiners, &disk, &peers);
    let elapsed = sim.elapsed();
    let listening = watched
        .into_iter()
        .filter(|(name, _)| sim.is_host_running(name.as_str()))
        .map(|(name, listened)| {
            let now = listened.lock().unwrap_or_else(|e| e.into_inner()).clone();
            (name, now)
        })
        .collect();
    drop(sim);
    let outcomes = std::mem::take(&mut shared.borrow_mut().outcomes);
    RunData {
        params: params.clone(),
        log,
        outcomes,
        disk,
        listening,
        elapsed,
        sim_error,
        sent: (alice_msgs, if with_bob { bob_msgs } else { Vec::new() }),
    }
}

/// A failed exchange still says goodbye to the relay (best effort); the error stays the result.
async fn close_on_error(w: &mut Wormhole, result: Result<(), Error>) -> Result<(), Error> {
    if result.is_err() {
        let _ = w.close().await;
    }
    result
}
