//! Resume across restarts, end to end: a side serialized at every step of an exchange,
//! dropped like a crashed program and restored; one snapshot restored twice, with every frame
//! recorded on its way to the relay; and a real client process killed with SIGKILL and
//! restarted from its state file (the `resume` example through a real `wormhole-relay`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::Runtime;
use wormhole::relay::server::{spawn_memory, RelayHandle};
use wormhole::storage::{MemoryStorage, Storage};
use wormhole::transports::memory::MemoryTransport;
use wormhole::transports::{Connection, Delivery, PeerInfo, Transport, TransportError};
use wormhole::wire::{ClientFrame, ClientMessage};
use wormhole::{Error, Wormhole};

use support::{OurRelay, Proc, Stream, TempDir, DEADLINE};

const APPID: &str = "example.com/resume-test";
const FROM_A: &[u8] = b"from A";
const FROM_B: &[u8] = b"from B";
/// Bound on every step of the in-process exchanges.
const STEP: Duration = Duration::from_secs(20);

/// One side of an exchange in a runtime of its own, so that dropping the runtime stops its
/// driver mid-flight, like a killed program: no close, no release, nothing more sent.
struct Side {
    rt: Option<Runtime>,
    w: Wormhole,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Side {
    fn new(w: Wormhole) -> Side {
        Side {
            rt: Some(runtime()),
            w,
        }
    }

    /// Runs one step of this side, bounded by [`STEP`].
    fn run<T>(
        &mut self,
        step: impl for<'a> FnOnce(
            &'a mut Wormhole,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>,
    ) -> T {
        let rt = self.rt.as_ref().expect("a live side");
        let fut = step(&mut self.w);
        rt.block_on(async { tokio::time::timeout(STEP, fut).await })
            .expect("a step of the exchange took too long")
    }

    /// Stops this side where it is ([`Wormhole::suspend`]: the state is taken as the driver
    /// stops, so nothing happens after it), drops it with its runtime, and restores it from
    /// the string in a new runtime, with `transport`.
    fn suspend_and_restore(&mut self, transport: Option<Arc<dyn Transport>>) {
        let rt = self.rt.take().expect("a live side");
        let placeholder = Wormhole::new(APPID, "mem://nowhere");
        let w = std::mem::replace(&mut self.w, placeholder);
        let state = rt
            .block_on(async { tokio::time::timeout(STEP, w.suspend()).await })
            .expect("suspend in time")
            .expect("suspend");
        assert!(state.contains("\"version\":1"), "{state}");
        rt.shutdown_background();
        let mut restored = Wormhole::from_serialized(&state).expect("restore");
        if let Some(t) = transport {
            restored = restored.with_transport(t);
        }
        let debug = format!("{restored:?}");
        assert!(!debug.contains(&state));
        if let Some(code) = restored.code() {
            assert!(!debug.contains(code.words()), "{debug}");
        }
        *self = Side::new(restored);
        // Any use resumes it (here: serializing again, which gives the same exchange).
        let again = self.run(|w| Box::pin(w.serialize())).expect("serialize");
        let (v1, v2): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&state).unwrap(),
            serde_json::from_str(&again).unwrap(),
        );
        assert_eq!(v1["side"], v2["side"]);
        assert_eq!(v1["nameplate"], v2["nameplate"]);
        assert_ne!(v1["rng"], v2["rng"], "fresh entropy was mixed in");
    }
}

/// A transport that records every frame its connections send.
#[derive(Debug, Default)]
struct Recording {
    frames: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct RecordingConnection {
    inner: Box<dyn Connection>,
    frames: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Transport for Recording {
    fn supports(&self, scheme: &str) -> bool {
        scheme == "mem"
    }
    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        let inner = MemoryTransport.connect(url).await?;
        Ok(Box::new(RecordingConnection {
            inner,
            frames: self.frames.clone(),
        }))
    }
}

#[async_trait]
impl Connection for RecordingConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        self.frames.lock().unwrap().push(frame.clone());
        self.inner.send(frame).await
    }
    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        self.inner.recv().await
    }
    async fn close(&mut self) -> Result<(), TransportError> {
        self.inner.close().await
    }
    fn delivery(&self) -> Delivery {
        self.inner.delivery()
    }
    fn peer(&self) -> PeerInfo {
        self.inner.peer()
    }
}

fn relay(name: &str) -> (Runtime, RelayHandle) {
    let rt = runtime();
    let handle = rt.block_on(async { spawn_memory(name) }).expect("relay");
    (rt, handle)
}

/// Waits (bounded) until the side's driver holds a message of the other side that the
/// application has not read: the state then carries it.
fn wait_unread(side: &mut Side) {
    for _ in 0..2000 {
        let state = side.run(|w| Box::pin(w.serialize())).expect("serialize");
        let v: serde_json::Value = serde_json::from_str(&state).unwrap();
        if v["phases"]["unread"]
            .as_array()
            .is_some_and(|u| !u.is_empty())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the other side's message never arrived");
}

/// The checkpoints of the exchange script, in order.
const CHECKPOINTS: [&str; 6] = [
    "before the code",
    "after the code (our pake sent)",
    "after the key",
    "after sending",
    "after receiving, unread",
    "after reading",
];

/// The whole exchange through the relay at `url`, with side `crash` (0 = A, 1 = B)
/// stopped there, dropped and restored at checkpoint `at`. (Killed programs, which resume
/// from their journal, are in the tests below and in the core's tests, which crash a side
/// before every single frame it sends.)
fn exchange_with_a_crash(url: &str, crash: usize, at: usize) {
    let transport: Option<Arc<dyn Transport>> = None;
    let mut sides = [
        Side::new(Wormhole::new(APPID, url)),
        Side::new(Wormhole::new(APPID, url)),
    ];
    let checkpoint = |sides: &mut [Side; 2], n: usize| {
        if n == at {
            sides[crash].suspend_and_restore(transport.clone());
        }
    };
    checkpoint(&mut sides, 0);
    let code = sides[0].run(|w| Box::pin(w.allocate_code(2))).unwrap();
    sides[1]
        .run(|w| Box::pin(w.set_code(code.clone())))
        .unwrap();
    checkpoint(&mut sides, 1);
    let va = sides[0].run(|w| Box::pin(w.verify())).unwrap();
    let vb = sides[1].run(|w| Box::pin(w.verify())).unwrap();
    assert_eq!(va, vb);
    checkpoint(&mut sides, 2);
    sides[0].run(|w| Box::pin(w.send(FROM_A))).unwrap();
    sides[1].run(|w| Box::pin(w.send(FROM_B))).unwrap();
    checkpoint(&mut sides, 3);
    wait_unread(&mut sides[0]);
    wait_unread(&mut sides[1]);
    checkpoint(&mut sides, 4);
    let got_a = sides[0].run(|w| Box::pin(w.recv())).unwrap();
    let got_b = sides[1].run(|w| Box::pin(w.recv())).unwrap();
    assert_eq!(got_a, FROM_B, "crash of {crash} {}", CHECKPOINTS[at]);
    assert_eq!(got_b, FROM_A, "crash of {crash} {}", CHECKPOINTS[at]);
    assert!(sides[0].w.peer_app_versions().is_some());
    checkpoint(&mut sides, 5);
    for side in &mut sides {
        side.run(|w| Box::pin(w.close())).unwrap();
    }
}

#[test]
fn either_side_serialized_at_every_step_restores_and_finishes() {
    for crash in 0..2 {
        for (at, checkpoint) in CHECKPOINTS.iter().enumerate() {
            eprintln!("side {crash} restored {checkpoint}");
            let (_relay_rt, relay) = relay(&format!("resume-steps-{crash}-{at}"));
            exchange_with_a_crash(relay.url(), crash, at);
        }
    }
}

/// The same through the Python mailbox server 0.8 over WebSocket: its replay on re-open is
/// what the lost-mailbox check relies on, so a restored client must not mistake it for a
/// lost mailbox.
#[test]
fn restores_at_every_step_work_through_the_python_mailbox_server() {
    let harness = runtime();
    let relay = harness.block_on(support::PythonRelay::start());
    for crash in 0..2 {
        for (at, checkpoint) in CHECKPOINTS.iter().enumerate() {
            eprintln!("side {crash} restored {checkpoint}");
            exchange_with_a_crash(&relay.url(), crash, at);
        }
    }
    drop(relay);
}

/// A real relay without a database restarted while a client was down: the restored client,
/// and its peer, end with the clear "mailbox expired" error instead of waiting.
#[test]
fn a_client_restored_after_its_mailbox_was_lost_gets_mailbox_expired() {
    let harness = runtime();
    let mut relay = harness.block_on(OurRelay::start());
    let url = relay.url().to_string();
    let mut a = Side::new(Wormhole::new(APPID, &url));
    let mut b = Side::new(Wormhole::new(APPID, &url));
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    b.run(|w| Box::pin(w.set_code(code))).unwrap();
    a.run(|w| Box::pin(w.verify())).unwrap();
    b.run(|w| Box::pin(w.verify())).unwrap();
    let state = a.run(|w| Box::pin(w.serialize())).unwrap();
    if let Some(rt) = a.rt.take() {
        rt.shutdown_background();
    }
    // The relay keeps its state in memory: a restart loses the mailbox.
    harness.block_on(relay.restart());
    let mut a = Side::new(Wormhole::from_serialized(&state).unwrap());
    let err = a.run(|w| Box::pin(w.recv())).unwrap_err();
    assert_eq!(err, Error::MailboxExpired, "{err}");
    let err = b.run(|w| Box::pin(w.recv())).unwrap_err();
    assert_eq!(err, Error::MailboxExpired, "{err}");
    drop(relay);
}

/// One snapshot (taken after the key, before A's message) restored twice, one process after
/// the other, each sending a different message: of all the frames A's connections sent
/// toward the relay (a superset of what it received), one `pake` and no nonce under two
/// different ciphertexts.
#[test]
fn one_snapshot_restored_twice_reuses_no_nonce_and_no_pake() {
    let (_relay_rt, relay) = relay("resume-twice");
    let recording = Arc::new(Recording::default());
    let transport: Arc<dyn Transport> = recording.clone();
    let mut a = Side::new(Wormhole::new(APPID, relay.url()).with_transport(transport.clone()));
    let mut b = Side::new(Wormhole::new(APPID, relay.url()));
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    b.run(|w| Box::pin(w.set_code(code.clone()))).unwrap();
    a.run(|w| Box::pin(w.verify())).unwrap();
    let snapshot = a.run(|w| Box::pin(w.serialize())).unwrap();
    if let Some(rt) = a.rt.take() {
        rt.shutdown_background();
    }

    for (i, message) in [&b"first restore"[..], &b"second restore"[..]]
        .into_iter()
        .enumerate()
    {
        let w = Wormhole::from_serialized(&snapshot)
            .unwrap()
            .with_transport(transport.clone());
        let mut again = Side::new(w);
        again.run(|w| Box::pin(w.send(message))).unwrap();
        // Bounded wait until A's add reached the relay through this restore's connection.
        let deadline = std::time::Instant::now() + STEP;
        while !phase_0_count_reaches(&recording, i + 1) {
            assert!(
                std::time::Instant::now() < deadline,
                "restore {i} sent nothing"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(rt) = again.rt.take() {
            rt.shutdown_background();
        }
    }
    // B gets one of them (the first, unless it died before its frame reached the relay),
    // decrypted under the one key: both restores rebuilt the same key from the snapshot.
    let got = b.run(|w| Box::pin(w.recv())).unwrap();
    assert!(
        got == b"first restore" || got == b"second restore",
        "{got:?}"
    );

    let frames = recording.frames.lock().unwrap().clone();
    let mut pakes = BTreeSet::new();
    let mut by_nonce: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for frame in frames.iter().filter_map(|f| ClientFrame::parse(f).ok()) {
        if let ClientMessage::Add { phase, body } = frame.message {
            if phase == "pake" {
                pakes.insert(body);
            } else {
                let nonce = body[..48].to_string();
                by_nonce.entry((phase, nonce)).or_default().insert(body);
            }
        }
    }
    assert_eq!(pakes.len(), 1, "A sent different pake messages");
    let phase_0_bodies = by_nonce.keys().filter(|(p, _)| p == "0").count();
    assert_eq!(
        phase_0_bodies, 2,
        "both restores sent phase 0, under different nonces"
    );
    for ((phase, nonce), bodies) in by_nonce {
        assert_eq!(
            bodies.len(),
            1,
            "phase {phase}: nonce {nonce} sealed different bodies"
        );
    }
}

/// How many distinct phase-0 bodies A's connections have sent.
fn phase_0_count_reaches(recording: &Recording, n: usize) -> bool {
    let frames = recording.frames.lock().unwrap();
    let bodies: BTreeSet<String> = frames
        .iter()
        .filter_map(|f| ClientFrame::parse(f).ok())
        .filter_map(|f| match f.message {
            ClientMessage::Add { phase, body } if phase == "0" => Some(body),
            _ => None,
        })
        .collect();
    bodies.len() >= n
}

/// The journal is written as the exchange goes, and removed at its end; a journaled
/// wormhole restored with `from_storage` finishes the exchange.
#[test]
fn a_journaled_wormhole_resumes_from_storage_and_the_journal_is_removed_at_the_end() {
    let (_relay_rt, relay) = relay("resume-journal");
    let storage = Arc::new(MemoryStorage::new());
    let journal: Arc<dyn Storage> = storage.clone();
    let mut a = Side::new(Wormhole::new(APPID, relay.url()).with_journal(journal.clone(), "a"));
    let mut b = Side::new(Wormhole::new(APPID, relay.url()));
    a.run(|w| Box::pin(w.send(FROM_A))).unwrap();
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    let saved = String::from_utf8(storage.get("a").unwrap().expect("journaled")).unwrap();
    assert!(
        saved.contains(&hex::encode(FROM_A)),
        "the queued message is journaled"
    );
    if let Some(rt) = a.rt.take() {
        rt.shutdown_background();
    }
    b.run(|w| Box::pin(w.set_code(code))).unwrap();
    b.run(|w| Box::pin(w.send(FROM_B))).unwrap();

    let restored = Wormhole::from_storage(journal.clone(), "a")
        .unwrap()
        .expect("a saved exchange");
    let mut a = Side::new(restored);
    assert_eq!(a.w.sent_messages(), 1);
    assert_eq!(a.run(|w| Box::pin(w.recv())).unwrap(), FROM_B);
    assert_eq!(b.run(|w| Box::pin(w.recv())).unwrap(), FROM_A);
    a.run(|w| Box::pin(w.close())).unwrap();
    b.run(|w| Box::pin(w.close())).unwrap();
    assert_eq!(
        storage.get("a").unwrap(),
        None,
        "the journal outlived the exchange"
    );
    assert!(Wormhole::from_storage(journal, "a").unwrap().is_none());

    // Serialized after the end, a wormhole restores as ended.
    let last = b.run(|w| Box::pin(w.serialize())).unwrap();
    let mut ended = Side::new(Wormhole::from_serialized(&last).unwrap());
    assert_eq!(ended.run(|w| Box::pin(w.recv())), Err(Error::Closed));
    assert_eq!(ended.run(|w| Box::pin(w.close())), Ok(()));
}

/// A transport whose connections check, as each `add` leaves, that the journal already
/// holds its sealed body: the state was saved before the frame went out.
#[derive(Debug)]
struct JournalChecking {
    journal: Arc<MemoryStorage>,
    checked: Arc<Mutex<Vec<Result<String, String>>>>,
}

#[derive(Debug)]
struct JournalCheckingConnection {
    inner: Box<dyn Connection>,
    journal: Arc<MemoryStorage>,
    checked: Arc<Mutex<Vec<Result<String, String>>>>,
}

#[async_trait]
impl Transport for JournalChecking {
    fn supports(&self, scheme: &str) -> bool {
        scheme == "mem"
    }
    async fn connect(&self, url: &str) -> Result<Box<dyn Connection>, TransportError> {
        Ok(Box::new(JournalCheckingConnection {
            inner: MemoryTransport.connect(url).await?,
            journal: self.journal.clone(),
            checked: self.checked.clone(),
        }))
    }
}

#[async_trait]
impl Connection for JournalCheckingConnection {
    async fn send(&mut self, frame: String) -> Result<(), TransportError> {
        if let Ok(ClientFrame {
            message: ClientMessage::Add { phase, body },
            ..
        }) = ClientFrame::parse(&frame)
        {
            let saved = self.journal.get("a").ok().flatten().unwrap_or_default();
            let verdict = if String::from_utf8_lossy(&saved).contains(&body) {
                Ok(phase)
            } else {
                Err(phase)
            };
            self.checked.lock().unwrap().push(verdict);
        }
        self.inner.send(frame).await
    }
    async fn recv(&mut self) -> Result<Option<String>, TransportError> {
        self.inner.recv().await
    }
    async fn close(&mut self) -> Result<(), TransportError> {
        self.inner.close().await
    }
}

#[test]
fn the_journal_is_written_before_any_frame_or_event_leaves() {
    let (_relay_rt, relay) = relay("resume-write-ahead");
    let journal = Arc::new(MemoryStorage::new());
    let checked = Arc::new(Mutex::new(Vec::new()));
    let transport = Arc::new(JournalChecking {
        journal: journal.clone(),
        checked: checked.clone(),
    });
    let mut a = Side::new(
        Wormhole::new(APPID, relay.url())
            .with_transport(transport)
            .with_journal(journal.clone(), "a"),
    );
    let mut b = Side::new(Wormhole::new(APPID, relay.url()));
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    // The code reached the application only after it was journaled.
    let saved = String::from_utf8(journal.get("a").unwrap().unwrap()).unwrap();
    assert!(saved.contains(&code.to_string()));
    b.run(|w| Box::pin(w.set_code(code))).unwrap();
    a.run(|w| Box::pin(w.send(FROM_A))).unwrap();
    b.run(|w| Box::pin(w.send(FROM_B))).unwrap();
    assert_eq!(a.run(|w| Box::pin(w.recv())).unwrap(), FROM_B);
    assert_eq!(b.run(|w| Box::pin(w.recv())).unwrap(), FROM_A);
    a.run(|w| Box::pin(w.close())).unwrap();
    b.run(|w| Box::pin(w.close())).unwrap();
    let checked = checked.lock().unwrap().clone();
    let phases: Vec<String> = checked.iter().flatten().cloned().collect();
    assert!(
        checked.iter().all(|c| c.is_ok()),
        "adds that left before their state was journaled: {checked:?}"
    );
    for phase in ["pake", "version", "0"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "{phase} not checked: {phases:?}"
        );
    }
}

/// A storage whose every other `put` fails.
#[derive(Debug, Default)]
struct Flaky {
    inner: MemoryStorage,
    puts: Mutex<u32>,
    written: Mutex<Vec<usize>>,
}

impl Storage for Flaky {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, wormhole::storage::StorageError> {
        self.inner.get(key)
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), wormhole::storage::StorageError> {
        let mut puts = self.puts.lock().unwrap();
        *puts += 1;
        if *puts % 2 == 1 {
            return Err(wormhole::storage::StorageError::Io {
                path: "flaky".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.written.lock().unwrap().push(value.len());
        self.inner.put(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), wormhole::storage::StorageError> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, wormhole::storage::StorageError> {
        self.inner.list(prefix)
    }
}

/// A journal that fails now and then does not stop the exchange, and never gets an empty
/// or partial state: only whole states are written, and the entry is gone at the end.
#[test]
fn a_failing_journal_neither_stops_the_exchange_nor_gets_a_bad_state() {
    let (_relay_rt, relay) = relay("resume-flaky");
    let flaky = Arc::new(Flaky::default());
    let journal: Arc<dyn Storage> = flaky.clone();
    let mut a = Side::new(Wormhole::new(APPID, relay.url()).with_journal(journal, "a"));
    let mut b = Side::new(Wormhole::new(APPID, relay.url()));
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    b.run(|w| Box::pin(w.set_code(code))).unwrap();
    a.run(|w| Box::pin(w.send(FROM_A))).unwrap();
    b.run(|w| Box::pin(w.send(FROM_B))).unwrap();
    let saved = flaky
        .inner
        .get("a")
        .unwrap()
        .expect("some state was journaled");
    let state = String::from_utf8(saved).unwrap();
    assert!(
        Wormhole::from_serialized(&state).is_ok(),
        "a whole, valid state"
    );
    assert_eq!(a.run(|w| Box::pin(w.recv())).unwrap(), FROM_B);
    assert_eq!(b.run(|w| Box::pin(w.recv())).unwrap(), FROM_A);
    a.run(|w| Box::pin(w.close())).unwrap();
    b.run(|w| Box::pin(w.close())).unwrap();
    assert!(*flaky.puts.lock().unwrap() >= 4);
    assert!(flaky.written.lock().unwrap().iter().all(|&n| n > 100));
    assert_eq!(flaky.inner.get("a").unwrap(), None);
}

#[test]
fn a_state_of_another_version_is_refused_with_a_clear_error() {
    let rt = runtime();
    let mut w = Wormhole::new(APPID, "mem://resume-version");
    let state = rt.block_on(w.serialize()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v["version"] = serde_json::json!(2);
    let err = Wormhole::from_serialized(&v.to_string()).unwrap_err();
    assert!(matches!(err, Error::BadState(_)), "{err:?}");
    assert!(err.to_string().contains("version 2"), "{err}");
    assert!(Wormhole::from_serialized("garbage").is_err());
    // A malformed part is not quoted back: it may be a secret.
    let mut v: serde_json::Value = serde_json::from_str(&state).unwrap();
    v["now"] = serde_json::json!("7-secret-words");
    let err = Wormhole::from_serialized(&v.to_string()).unwrap_err();
    assert!(matches!(err, Error::BadState(_)), "{err:?}");
    assert!(!err.to_string().contains("secret"), "{err}");
    // Blocking forms refuse it the same way.
    assert!(wormhole::blocking::Receiver::from_serialized(&v.to_string()).is_err());
}

/// A graceful shutdown: `suspend` stops a side without closing its exchange; restored from
/// the string, it finishes. (Dropping it instead would have closed the exchange.)
#[test]
fn a_suspended_wormhole_resumes_and_finishes() {
    let (_relay_rt, relay) = relay("resume-suspend");
    let mut a = Side::new(Wormhole::new(APPID, relay.url()));
    let mut b = Side::new(Wormhole::new(APPID, relay.url()));
    let code = a.run(|w| Box::pin(w.allocate_code(2))).unwrap();
    a.run(|w| Box::pin(w.send(FROM_A))).unwrap();
    let rt = a.rt.take().unwrap();
    let state = rt
        .block_on(async { tokio::time::timeout(STEP, a.w.suspend()).await })
        .unwrap()
        .unwrap();
    drop(rt);
    b.run(|w| Box::pin(w.set_code(code))).unwrap();
    b.run(|w| Box::pin(w.send(FROM_B))).unwrap();
    let mut a = Side::new(Wormhole::from_serialized(&state).unwrap());
    assert_eq!(a.run(|w| Box::pin(w.recv())).unwrap(), FROM_B);
    assert_eq!(b.run(|w| Box::pin(w.recv())).unwrap(), FROM_A);
    a.run(|w| Box::pin(w.close())).unwrap();
    b.run(|w| Box::pin(w.close())).unwrap();
}

/// The blocking forms: an initiator serialized after showing its code, dropped (its runtime
/// stops its driver, like a killed program), restored, and finishing the seed's one-shot
/// exchange without sending its message twice.
#[test]
fn the_blocking_forms_serialize_and_restore() {
    let (_relay_rt, relay) = relay("resume-blocking");
    let mut i = wormhole::blocking::Initiator::new(APPID, relay.url());
    let code = i.get_code().unwrap();
    let state = i.serialize().unwrap();
    drop(i);
    let url = relay.url().to_string();
    let code_text = code.to_string();
    let receiver = std::thread::spawn(move || {
        let mut r = wormhole::blocking::Receiver::new(APPID, &url);
        r.set_code(&code_text)?;
        r.get_data(FROM_B)
    });
    let mut i = wormhole::blocking::Initiator::from_serialized(&state).unwrap();
    assert_eq!(i.get_code().unwrap(), code);
    // A graceful stop and a second restore on the way.
    let state = i.suspend().unwrap();
    let mut i = wormhole::blocking::Initiator::from_serialized(&state).unwrap();
    assert_eq!(i.get_data(FROM_A).unwrap(), FROM_B);
    assert_eq!(receiver.join().unwrap().unwrap(), FROM_A);
}

// ---------------------------------------------------------------------------------------------
// Real processes

/// The `resume` example's binary, built if it is not there yet.
fn resume_example() -> PathBuf {
    let relay = PathBuf::from(env!("CARGO_BIN_EXE_wormhole-relay"));
    let dir = relay.parent().expect("target dir").join("examples");
    let exe = dir.join(format!("resume{}", std::env::consts::EXE_SUFFIX));
    if !exe.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "--example", "resume"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example resume");
        assert!(status.success());
    }
    exe
}

fn resume_cmd(url: &str, state: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(resume_example());
    cmd.arg("--relay")
        .arg(url)
        .arg("--state")
        .arg(state)
        .args(args);
    cmd
}

async fn wait_file(path: &std::path::Path) {
    let until = tokio::time::Instant::now() + DEADLINE;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < until,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Both clients are real processes killed with SIGKILL mid-exchange (A while waiting for B,
/// B while waiting for A) and started again from their state files: the exchange completes,
/// each prints the other's text, and the state files are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_processes_killed_with_sigkill_resume_from_their_state_files() {
    let relay = OurRelay::start().await;
    let dir = TempDir::new("resume-sigkill");
    let (a_state, b_state) = (dir.path().join("a.json"), dir.path().join("b.json"));

    let mut a = Proc::spawn("A", resume_cmd(relay.url(), &a_state, &["from A"]), vec![]);
    let code = a
        .wait_line_after(Stream::Stdout, "Invitation Code: ", DEADLINE)
        .await;
    a.kill().await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a_state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the state file holds secrets");
    }

    let mut b = Proc::spawn(
        "B",
        resume_cmd(relay.url(), &b_state, &["--code", &code, "from B"]),
        vec![],
    );
    wait_file(&b_state).await;
    // Let B send its pake, then kill it while it waits for A.
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.kill().await;

    let a = Proc::spawn("A again", resume_cmd(relay.url(), &a_state, &[]), vec![]);
    let b = Proc::spawn("B again", resume_cmd(relay.url(), &b_state, &[]), vec![]);
    let (a, b) = (
        a.wait_with_deadline(DEADLINE).await,
        b.wait_with_deadline(DEADLINE).await,
    );
    assert!(a.status.success(), "{a}");
    assert!(b.status.success(), "{b}");
    assert!(a.stdout.contains("Their data: from B"), "{a}");
    assert!(b.stdout.contains("Their data: from A"), "{b}");
    assert!(
        a.stdout.contains(&format!("Invitation Code: {code}")),
        "{a}"
    );
    assert!(
        !a_state.exists() && !b_state.exists(),
        "state files left behind"
    );

    // Nothing saved any more: resuming says so and fails.
    let none = Proc::spawn("nothing", resume_cmd(relay.url(), &a_state, &[]), vec![])
        .wait_with_deadline(DEADLINE)
        .await;
    assert!(!none.status.success(), "{none}");
    assert!(none.stderr.contains("no saved exchange"), "{none}");
}
