//! The relay over a failing store: a store error becomes an `error` frame, a command rolls
//! back whole wherever the store fails, and a batch's replies wait for (and die with) its
//! commit. [`FailingStore`] and [`UncommittableStore`] are the failing stores.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

/// A store that fails every call while its switch is on, or (with `fail_at`) the n-th call
/// from now (counting from 0, reads and writes alike).
struct FailingStore {
    inner: MemoryStore,
    failing: Rc<Cell<bool>>,
    fail_at: Rc<Cell<Option<usize>>>,
}

impl FailingStore {
    fn new() -> Self {
        FailingStore {
            inner: MemoryStore::default(),
            failing: Rc::default(),
            fail_at: Rc::default(),
        }
    }
}

impl MailboxStore for FailingStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (failing, fail_at) = (self.failing.clone(), self.fail_at.clone());
        self.inner.transaction(&mut |tx| {
            work(&mut FailingTables {
                inner: tx,
                failing: &failing,
                fail_at: &fail_at,
            })
        })
    }
}

struct FailingTables<'a> {
    inner: &'a mut dyn MailboxTables,
    failing: &'a Cell<bool>,
    fail_at: &'a Cell<Option<usize>>,
}

impl FailingTables<'_> {
    fn check(&self) -> Result<(), StoreError> {
        let due = match self.fail_at.get() {
            Some(0) => true,
            Some(n) => {
                self.fail_at.set(Some(n - 1));
                false
            }
            None => false,
        };
        if due {
            self.fail_at.set(None);
        }
        if self.failing.get() || due {
            Err(StoreError::Backend("disk on fire".into()))
        } else {
            Ok(())
        }
    }
}

impl MailboxTables for FailingTables<'_> {
    fn app_ids(&self) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.app_ids()
    }
    fn nameplate_names(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.nameplate_names(appid)
    }
    fn nameplate(&self, appid: &str, name: &str) -> Result<Option<NameplateRecord>, StoreError> {
        self.check()?;
        self.inner.nameplate(appid, name)
    }
    fn insert_nameplate(
        &mut self,
        appid: &str,
        name: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_nameplate(appid, name, mailbox_id)
    }
    fn put_nameplate_side(
        &mut self,
        appid: &str,
        name: &str,
        side: NameplateSide,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_nameplate_side(appid, name, side)
    }
    fn delete_nameplate(&mut self, appid: &str, name: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplate(appid, name)
    }
    fn delete_nameplate_sides_of(&mut self, appid: &str, side: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplate_sides_of(appid, side)
    }
    fn delete_nameplates_for_mailbox(
        &mut self,
        appid: &str,
        mailbox_id: &str,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_nameplates_for_mailbox(appid, mailbox_id)
    }
    fn mailbox_ids(&self, appid: &str) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.inner.mailbox_ids(appid)
    }
    fn mailbox(&self, appid: &str, id: &str) -> Result<Option<MailboxRecord>, StoreError> {
        self.check()?;
        self.inner.mailbox(appid, id)
    }
    fn insert_mailbox(
        &mut self,
        appid: &str,
        id: &str,
        for_nameplate: bool,
        updated: f64,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_mailbox(appid, id, for_nameplate, updated)
    }
    fn put_mailbox_side(
        &mut self,
        appid: &str,
        id: &str,
        side: MailboxSide,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.put_mailbox_side(appid, id, side)
    }
    fn touch_mailbox(&mut self, appid: &str, id: &str, when: f64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch_mailbox(appid, id, when)
    }
    fn delete_mailbox(&mut self, appid: &str, id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete_mailbox(appid, id)
    }
    fn add_message(
        &mut self,
        appid: &str,
        mailbox_id: &str,
        message: StoredMessage,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.add_message(appid, mailbox_id, message)
    }
    fn messages(&self, appid: &str, mailbox_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.check()?;
        self.inner.messages(appid, mailbox_id)
    }
}

#[test]
fn store_failure_becomes_an_error_frame() {
    let store = FailingStore::new();
    let failing = store.failing.clone();
    let mut h = Harness::with_store(RelayConfig::default(), store, [1; 32]);
    h.connect(1);
    h.expect_ack(1, json!({"type": "bind", "appid": "a", "side": "s"}));
    let mailbox = {
        let out = h.send(1, json!({"type": "claim", "nameplate": "1"}));
        out[1]["mailbox"].as_str().unwrap().to_owned()
    };
    failing.set(true);
    for frame in [
        json!({"type": "list"}),
        json!({"type": "allocate"}),
        json!({"type": "open", "mailbox": mailbox}),
    ] {
        let out = h.send(1, frame.clone());
        assert_eq!(
            out,
            vec![
                ack(None),
                json!({"type": "error", "error": format!("{}: storage backend failed: disk on fire", errors::INTERNAL), "orig": frame})
            ]
        );
    }
    assert_eq!(h.relay.prune(h.now + 1e6), 0);
    // Ping needs no store, and the connection recovers with the store.
    let out = h.send(1, json!({"type": "ping", "ping": 1}));
    assert_eq!(out[1], json!({"type": "pong", "pong": 1}));
    failing.set(false);
    let out = h.send(1, json!({"type": "list"}));
    assert_eq!(
        out[1],
        json!({"type": "nameplates", "nameplates": [{"id": "1"}]})
    );
    let out = h.send(1, json!({"type": "open", "mailbox": mailbox}));
    assert_eq!(out, vec![ack(None)]);
}

// ----- transactions ----------------------------------------------------------------------

#[test]
fn replays_follow_insertion_order_even_when_the_clock_steps_back() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.open(1, "m");
    h.send(1, json!({"type": "add", "phase": "0", "body": "first"}));
    let first_rx = h.now;
    // The wall clock steps back ten seconds (NTP) before the second add.
    h.now -= 10.0;
    h.send(1, json!({"type": "add", "phase": "1", "body": "second"}));
    let second_rx = h.now;
    assert!(second_rx < first_rx);
    h.connect_bound(2, "a", "sb");
    assert_eq!(
        h.open(2, "m"),
        vec![
            message("sa", "0", "first", first_rx, None),
            message("sa", "1", "second", second_rx, None),
        ]
    );
}

/// Runs `frame` on connection 2 (bound as side `sb` after `setup` ran on a fresh relay) with the
/// store failing at its k-th call, for every k until the command goes through. Every failed
/// attempt must answer `internal server error` and leave the tables exactly as before; the
/// retry then behaves as on a store that never failed (so the connection's state was left
/// alone too), except that `allocate` draws fresh randomness (compared without the nameplate).
/// Returns the successful replies.
fn fails_atomically(setup: impl Fn(&mut Harness<FailingStore>), frame: Value) -> Vec<Value> {
    let fresh = || {
        let mut h = Harness::with_store(RelayConfig::default(), FailingStore::new(), [1; 32]);
        setup(&mut h);
        h.connect_bound(2, "a", "sb");
        h
    };
    // The replies without failures, with a relay in the same state and the same randomness.
    let expected = fresh().send(2, frame.clone());
    let mut h = fresh();
    for k in 0.. {
        assert!(k < 100, "{frame}: still failing after {k} store calls");
        let before = h.relay.store().inner.clone();
        h.relay.store().fail_at.set(Some(k));
        let out = h.send(2, frame.clone());
        let failed = h.relay.store().fail_at.get().is_none();
        h.relay.store().fail_at.set(None);
        if !failed {
            // The command made fewer than k+1 calls: it went through.
            let fresh_draw = |mut frames: Vec<Value>| {
                if let Some(nameplate) = frames.get_mut(1).and_then(|f| f.get_mut("nameplate")) {
                    *nameplate = json!("any");
                }
                frames
            };
            assert_eq!(
                fresh_draw(out.clone()),
                fresh_draw(expected),
                "{frame}: the retry after {k} failures"
            );
            return out;
        }
        assert_eq!(
            out,
            vec![
                ack(None),
                json!({"type": "error", "error": format!("{}: storage backend failed: disk on fire", errors::INTERNAL), "orig": frame})
            ],
            "{frame}: failing at call {k}"
        );
        assert_eq!(
            h.relay.store().inner,
            before,
            "{frame}: failing at call {k} left changes behind"
        );
    }
    unreachable!()
}

#[test]
fn a_store_error_at_any_point_rolls_the_whole_command_back() {
    // Side sa has claimed nameplate 5, opened its mailbox and added a message.
    let claimed = |h: &mut Harness<FailingStore>| {
        h.connect_bound(1, "a", "sa");
        let mailbox = h.claim(1, "5");
        h.open(1, &mailbox);
        h.send(1, json!({"type": "add", "phase": "pake", "body": "aa"}));
    };
    let mut probe = Harness::with_store(RelayConfig::default(), FailingStore::new(), [1; 32]);
    claimed(&mut probe);
    let mailbox = probe
        .relay
        .store()
        .inner
        .nameplate("a", "5")
        .unwrap()
        .unwrap()
        .mailbox_id;

    let out = fails_atomically(claimed, json!({"type": "claim", "nameplate": "5"}));
    assert_eq!(out[1]["mailbox"], json!(mailbox));
    fails_atomically(claimed, json!({"type": "allocate"}));
    let out = fails_atomically(claimed, json!({"type": "open", "mailbox": mailbox}));
    assert_eq!(out.len(), 2, "ack and the replayed message: {out:?}");
    // Side sb has the mailbox open too (add and close need it).
    let both = |h: &mut Harness<FailingStore>| {
        claimed(h);
        h.connect_bound(3, "a", "sb");
        h.claim(3, "5");
    };
    fails_atomically(both, json!({"type": "release", "nameplate": "5"}));
    let both_open = |h: &mut Harness<FailingStore>| {
        both(h);
        h.open(
            3,
            &h.relay
                .store()
                .inner
                .nameplate("a", "5")
                .unwrap()
                .unwrap()
                .mailbox_id
                .clone(),
        );
    };
    // A close that deletes the mailbox (sa closed first) and one that opens it implicitly.
    fails_atomically(
        |h| {
            both_open(h);
            h.send(1, json!({"type": "close"}));
        },
        json!({"type": "close", "mailbox": mailbox, "mood": "happy"}),
    );
    // A third side's claim is refused as crowded, and its rows stay (the quirk), atomically.
    let crowded = |h: &mut Harness<FailingStore>| {
        claimed(h);
        h.connect_bound(4, "a", "sc");
        h.claim(4, "5");
    };
    let out = fails_atomically(crowded, json!({"type": "claim", "nameplate": "5"}));
    assert_eq!(out[1]["error"], json!(errors::CROWDED));
}

#[test]
fn a_refused_claim_commits_the_rows_written_before_the_refusal() {
    let mut h = Harness::new();
    for (conn, side) in [(1, "sa"), (2, "sb")] {
        h.connect_bound(conn, "a", side);
        h.claim(conn, "4");
    }
    h.connect_bound(3, "a", "sc");
    h.error(
        3,
        json!({"type": "claim", "nameplate": "4"}),
        errors::CROWDED,
    );
    let record = h.relay.store().nameplate("a", "4").unwrap().unwrap();
    assert_eq!(record.sides.len(), 3, "the crowded side's row was kept");
    let mailbox = h
        .relay
        .store()
        .mailbox("a", &record.mailbox_id)
        .unwrap()
        .unwrap();
    assert_eq!(mailbox.sides.len(), 3);
}

#[test]
fn a_batch_holds_its_outputs_until_it_commits() {
    let mut h = Harness::new();
    h.connect_bound(1, "a", "sa");
    h.relay.begin_batch();
    h.tick();
    h.relay
        .received(1, r#"{"type": "claim", "nameplate": "3"}"#, h.now);
    h.relay.received(1, r#"{"type": "ping", "ping": 8}"#, h.now);
    assert_eq!(h.relay.poll_output(), None, "held while the batch is open");
    h.relay.end_batch();
    let out: Vec<Value> = h.drain().into_iter().map(|(_, f)| f).collect();
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[1]["type"], json!("claimed"));
    assert_eq!(out[3], json!({"type": "pong", "pong": 8}));
}

/// A store whose batches fail to commit (a [`MemoryStore`] cannot lose them, so the rows
/// stay: this tests only what the relay does about it).
#[derive(Default)]
struct UncommittableStore(MemoryStore);

impl MailboxStore for UncommittableStore {
    fn transaction<T>(
        &mut self,
        work: &mut dyn FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.0.transaction(work)
    }
    fn end_batch(&mut self) -> Result<(), StoreError> {
        Err(StoreError::Backend("disk full".into()))
    }
}

#[test]
fn a_batch_that_fails_to_commit_drops_its_replies_and_closes_its_connections() {
    let mut h = Harness::with_store(
        RelayConfig::default(),
        UncommittableStore::default(),
        [1; 32],
    );
    h.connect_bound(1, "a", "sa");
    h.connect_bound(2, "a", "sb");
    h.connect_bound(3, "a", "sc");
    h.relay.begin_batch();
    h.tick();
    h.relay
        .received(1, r#"{"type": "claim", "nameplate": "3"}"#, h.now);
    h.relay.received(2, r#"{"type": "list"}"#, h.now);
    h.relay.end_batch();
    let mut closed = Vec::new();
    while let Some(out) = h.relay.poll_output() {
        match out {
            RelayOutput::Close { conn } => closed.push(conn),
            RelayOutput::Send { conn, frame } => panic!("{conn} was sent {frame}"),
        }
    }
    assert_eq!(closed, [1, 2], "the connections of the lost batch, not 3");
    // They are forgotten: a frame on 1 is as on a fresh connection (not bound).
    h.error(1, json!({"type": "list"}), errors::MUST_BIND_FIRST);
    let out = h.send(3, json!({"type": "ping", "ping": 1}));
    assert_eq!(out[1], json!({"type": "pong", "pong": 1}), "3 is untouched");
}
