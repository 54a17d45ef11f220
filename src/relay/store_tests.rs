//! The same tests against every [`MailboxStore`]: [`MemoryStore`] and (feature `sqlite`)
//! [`SqliteStore`] in memory and in a file. Then relays over each store, driven by the same
//! random command sequence, must answer byte for byte the same; and a relay restarted on the
//! SQLite file must find everything again.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::json;

use super::*;

fn side(name: &str, t: f64) -> MailboxSide {
    MailboxSide {
        side: name.into(),
        opened: true,
        mood: None,
        added: t,
    }
}

fn msg(side: &str, phase: &str, t: f64, id: Option<Value>) -> StoredMessage {
    StoredMessage {
        side: side.into(),
        phase: phase.into(),
        body: format!("{side}{phase}"),
        server_rx: t,
        msg_id: id,
    }
}

fn tx<S: MailboxStore, T>(
    store: &mut S,
    mut work: impl FnMut(&mut dyn MailboxTables) -> Result<T, StoreError>,
) -> T {
    store
        .transaction(&mut |t| work(t))
        .expect("transaction commits")
}

/// Everything in a store, in a canonical form.
pub(super) fn dump<S: MailboxStore>(store: &mut S) -> Value {
    tx(store, |t| {
        let mut apps = Map::new();
        let mut app_ids = t.app_ids()?;
        app_ids.sort();
        for appid in app_ids {
            let mut names = t.nameplate_names(&appid)?;
            names.sort();
            let mut nameplates = Map::new();
            for name in names {
                let mut record = t.nameplate(&appid, &name)?;
                if let Some(r) = &mut record {
                    r.sides.sort_by(|a, b| a.side.cmp(&b.side));
                }
                nameplates.insert(name, serde_json::to_value(record).unwrap_or_default());
            }
            let mut ids = t.mailbox_ids(&appid)?;
            ids.sort();
            let mut mailboxes = Map::new();
            for id in ids {
                let mut record = t.mailbox(&appid, &id)?;
                if let Some(r) = &mut record {
                    r.sides.sort_by(|a, b| a.side.cmp(&b.side));
                }
                let messages = t.messages(&appid, &id)?;
                mailboxes.insert(id, json!({"record": record, "messages": messages}));
            }
            apps.insert(
                appid,
                json!({"nameplates": nameplates, "mailboxes": mailboxes}),
            );
        }
        Ok(Value::Object(apps))
    })
}

pub(super) fn tables_behave<S: MailboxStore>(mut store: S) {
    // Children of missing rows are refused; deleting missing rows is fine.
    tx(&mut store, |t| {
        let side_err = t.put_nameplate_side(
            "a",
            "1",
            NameplateSide {
                side: "s".into(),
                claimed: true,
                added: 1.0,
            },
        );
        assert!(matches!(side_err, Err(StoreError::NotFound(_))));
        assert!(matches!(
            t.put_mailbox_side("a", "m", side("s", 1.0)),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            t.add_message("a", "m", msg("s", "0", 1.0, None)),
            Err(StoreError::NotFound(_))
        ));
        t.delete_mailbox("a", "m")?;
        t.delete_nameplate("a", "1")?;
        t.touch_mailbox("a", "m", 5.0)?;
        assert_eq!(t.app_ids()?, Vec::<String>::new());
        Ok(())
    });
    // Rows, one per side (an update replaces it), order of messages by insertion.
    tx(&mut store, |t| {
        t.insert_mailbox("a", "m", true, 1.0)?;
        t.insert_nameplate("a", "7", "m")?;
        for s in ["zed", "alpha", "mid"] {
            t.put_mailbox_side("a", "m", side(s, 2.0))?;
        }
        t.put_mailbox_side(
            "a",
            "m",
            MailboxSide {
                opened: false,
                mood: Some("happy".into()),
                ..side("zed", 2.0)
            },
        )?;
        for s in ["zed", "alpha"] {
            let row = NameplateSide {
                side: s.into(),
                claimed: true,
                added: 3.0,
            };
            t.put_nameplate_side("a", "7", row)?;
        }
        t.add_message("a", "m", msg("zed", "1", 9.0, Some(json!("x"))))?;
        t.add_message("a", "m", msg("alpha", "0", 4.0, Some(json!(17))))?;
        t.add_message(
            "a",
            "m",
            msg("zed", "2", 4.0, Some(json!({"k": [1, null]}))),
        )?;
        t.add_message("a", "m", msg("alpha", "3", 1e9 + 0.123456, None))?;
        t.touch_mailbox("a", "m", 6.5)?;
        Ok(())
    });
    tx(&mut store, |t| {
        let mailbox = t.mailbox("a", "m")?.expect("mailbox");
        assert!(mailbox.for_nameplate);
        assert_eq!(mailbox.updated, 6.5);
        let mut sides = mailbox.sides.clone();
        sides.sort_by(|a, b| a.side.cmp(&b.side));
        let names: Vec<_> = sides.iter().map(|s| s.side.as_str()).collect();
        assert_eq!(names, ["alpha", "mid", "zed"], "one row per side");
        assert_eq!(sides[2].mood.as_deref(), Some("happy"));
        assert!(!sides[2].opened);
        let phases: Vec<_> = t
            .messages("a", "m")?
            .into_iter()
            .map(|m| (m.phase, m.msg_id, m.server_rx))
            .collect();
        assert_eq!(
            phases,
            [
                ("1".into(), Some(json!("x")), 9.0),
                ("0".into(), Some(json!(17)), 4.0),
                ("2".into(), Some(json!({"k": [1, null]})), 4.0),
                ("3".into(), None, 1e9 + 0.123456),
            ]
        );
        let plate = t.nameplate("a", "7")?.expect("nameplate");
        assert_eq!(plate.mailbox_id, "m");
        assert_eq!(plate.sides.len(), 2);
        assert_eq!(t.nameplate_names("a")?, ["7"]);
        assert_eq!(t.mailbox_ids("a")?, ["m"]);
        assert_eq!(t.app_ids()?, ["a"]);
        assert_eq!(t.nameplate_names("b")?, Vec::<String>::new());
        Ok(())
    });
    // A failing unit of work leaves nothing behind, whatever it did before failing.
    let before = dump(&mut store);
    let failed = store.transaction(&mut |t| -> Result<(), StoreError> {
        t.add_message("a", "m", msg("mid", "9", 10.0, None))?;
        t.put_mailbox_side("a", "m", side("late", 10.0))?;
        t.delete_nameplate_sides_of("a", "zed")?;
        t.insert_nameplate("a", "8", "m")?;
        t.touch_mailbox("a", "m", 99.0)?;
        t.delete_nameplates_for_mailbox("a", "m")?;
        t.delete_mailbox("a", "m")?;
        t.insert_mailbox("b", "n", false, 1.0)?;
        t.add_message("a", "gone", msg("x", "0", 1.0, None))
    });
    assert!(matches!(failed, Err(StoreError::NotFound(_))));
    assert_eq!(
        dump(&mut store),
        before,
        "the failed transaction rolled back"
    );
    // Deletes: nameplate sides of one side, the nameplates of a mailbox, the mailbox.
    tx(&mut store, |t| {
        t.insert_nameplate("a", "8", "m")?;
        t.delete_nameplate_sides_of("a", "zed")?;
        let plate = t.nameplate("a", "7")?.expect("nameplate");
        assert_eq!(plate.sides.len(), 1);
        t.delete_nameplates_for_mailbox("a", "m")?;
        assert_eq!(t.nameplate_names("a")?, Vec::<String>::new());
        t.delete_mailbox("a", "m")?;
        assert_eq!(t.mailbox("a", "m")?, None);
        assert_eq!(t.messages("a", "m")?, Vec::new());
        assert_eq!(t.app_ids()?, Vec::<String>::new());
        Ok(())
    });
}

/// Inside a batch, a failing transaction still rolls back alone; the others commit at the end.
fn batches_behave<S: MailboxStore>(mut store: S) {
    tx(&mut store, |t| t.insert_mailbox("a", "m", false, 1.0));
    store.begin_batch().expect("batch");
    tx(&mut store, |t| {
        t.add_message("a", "m", msg("s", "A", 2.0, None))
    });
    let failed = store.transaction(&mut |t| -> Result<(), StoreError> {
        t.add_message("a", "m", msg("s", "B", 3.0, None))?;
        t.touch_mailbox("a", "m", 3.0)?;
        Err(StoreError::Backend("refused".into()))
    });
    assert!(failed.is_err());
    tx(&mut store, |t| {
        t.add_message("a", "m", msg("s", "C", 4.0, None))
    });
    store.end_batch().expect("commit");
    let (phases, updated) = tx(&mut store, |t| {
        let phases: Vec<String> = t.messages("a", "m")?.into_iter().map(|m| m.phase).collect();
        Ok((phases, t.mailbox("a", "m")?.map(|m| m.updated)))
    });
    assert_eq!(phases, ["A", "C"]);
    assert_eq!(updated, Some(1.0));
    // Transactions after the batch commit by themselves again.
    tx(&mut store, |t| {
        t.add_message("a", "m", msg("s", "D", 5.0, None))
    });
    assert_eq!(tx(&mut store, |t| t.messages("a", "m")).len(), 3);
}

#[test]
fn memory_store_tables_behave() {
    tables_behave(MemoryStore::default());
    batches_behave(MemoryStore::default());
}

/// A random but valid-looking command for a relay with few app ids, sides, nameplates and
/// mailboxes, so that claims collide, mailboxes crowd and close.
pub(super) fn random_frame(rng: &mut ChaCha20Rng) -> String {
    let pick =
        |rng: &mut ChaCha20Rng, items: &[&str]| items[rng.gen_range(0..items.len())].to_owned();
    let frame = match rng.gen_range(0..12) {
        0 => {
            json!({"type": "bind", "appid": pick(rng, &["a", "b"]), "side": pick(rng, &["s1", "s2", "s3", "s4"])})
        }
        1 => json!({"type": "allocate"}),
        2 | 3 => json!({"type": "claim", "nameplate": pick(rng, &["1", "2", "3"])}),
        4 => json!({"type": "release"}),
        5 | 6 => json!({"type": "open", "mailbox": pick(rng, &["m1", "m2"])}),
        7 | 8 => {
            json!({"type": "add", "phase": pick(rng, &["pake", "version", "0"]), "body": "ab", "id": rng.gen_range(0..5)})
        }
        9 => json!({"type": "close", "mood": pick(rng, &["happy", "lonely"])}),
        10 => json!({"type": "list"}),
        _ => json!({"type": "ping", "ping": 3}),
    };
    frame.to_string()
}

/// Feeds the same random life of 12 connections to `relays`; every output must be identical.
/// Returns how many frames were compared.
pub(super) fn differential<S: MailboxStore>(
    relays: &mut [Relay<S>],
    seed: u64,
    steps: usize,
) -> usize {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut now = 1.0e9;
    let mut compared = 0;
    for step in 0..steps {
        now += rng.gen_range(0.0..2.0);
        let conn = rng.gen_range(0..12u64);
        let action = rng.gen_range(0..40);
        let frame = random_frame(&mut rng);
        for relay in relays.iter_mut() {
            match action {
                0 => relay.connected(conn, None, now),
                1 => relay.disconnected(conn),
                2 => {
                    relay.prune(now + 600.0);
                }
                _ => relay.received(conn, &frame, now),
            }
        }
        let outputs: Vec<Vec<RelayOutput>> = relays
            .iter_mut()
            .map(|r| std::iter::from_fn(|| r.poll_output()).collect())
            .collect();
        for other in &outputs[1..] {
            assert_eq!(&outputs[0], other, "step {step}: {frame}");
        }
        compared += outputs[0].len();
    }
    compared
}

#[test]
fn memory_relays_agree_with_themselves() {
    // The differential harness itself: two memory relays with one seed agree.
    let mut relays: Vec<_> = (0..2)
        .map(|_| Relay::new(RelayConfig::default(), MemoryStore::default(), [3; 32]))
        .collect();
    assert!(differential(&mut relays, 1, 2000) > 2000);
}

/// One step of a differential run: `action` 0 connects `conn`, 1 disconnects it, 2 prunes
/// ten minutes on, anything else sends it `frame`; the relay's outputs.
#[cfg(any(feature = "sqlite", feature = "redis"))]
pub(super) fn apply_action<S: MailboxStore>(
    r: &mut Relay<S>,
    action: u32,
    conn: ConnId,
    frame: &str,
    now: f64,
) -> Vec<RelayOutput> {
    match action {
        0 => r.connected(conn, None, now),
        1 => r.disconnected(conn),
        2 => {
            r.prune(now + 600.0);
        }
        _ => r.received(conn, frame, now),
    }
    std::iter::from_fn(|| r.poll_output()).collect()
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use crate::relay::sqlite::SCHEMA_VERSION;

    fn temp_db(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wormhole-store-{label}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("relay.sqlite")
    }

    #[test]
    fn sqlite_store_tables_behave() {
        tables_behave(SqliteStore::in_memory().expect("in-memory database"));
        batches_behave(SqliteStore::in_memory().expect("in-memory database"));
        let path = temp_db("tables");
        tables_behave(SqliteStore::open(&path).expect("database file"));
        let path2 = temp_db("batches");
        batches_behave(SqliteStore::open(&path2).expect("database file"));
        let _ = std::fs::remove_dir_all(path2.parent().unwrap_or(&path2));
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }

    #[test]
    fn relays_on_memory_and_sqlite_answer_byte_for_byte_alike() {
        for seed in 0..4 {
            let memory = Relay::new(
                RelayConfig::default(),
                MemoryStore::default(),
                [seed as u8; 32],
            );
            let sqlite = Relay::new(
                RelayConfig::default(),
                SqliteStore::in_memory().expect("database"),
                [seed as u8; 32],
            );
            // Two relays of different store types: compare through a common wrapper.
            let mut relays = [Either::Memory(memory), Either::Sqlite(sqlite)];
            let compared = differential_either(&mut relays, seed, 1500);
            assert!(compared > 1500, "seed {seed}: only {compared} frames");
        }
    }

    enum Either {
        Memory(Relay<MemoryStore>),
        Sqlite(Relay<SqliteStore>),
    }

    impl Either {
        fn drain(&mut self) -> Vec<RelayOutput> {
            match self {
                Either::Memory(r) => std::iter::from_fn(|| r.poll_output()).collect(),
                Either::Sqlite(r) => std::iter::from_fn(|| r.poll_output()).collect(),
            }
        }

        fn batch(&mut self, open: bool) {
            match (self, open) {
                (Either::Memory(r), true) => r.begin_batch(),
                (Either::Memory(r), false) => r.end_batch(),
                (Either::Sqlite(r), true) => r.begin_batch(),
                (Either::Sqlite(r), false) => r.end_batch(),
            }
        }

        fn apply(&mut self, action: u32, conn: ConnId, frame: &str, now: f64) -> Vec<RelayOutput> {
            match self {
                Either::Memory(r) => apply_action(r, action, conn, frame, now),
                Either::Sqlite(r) => apply_action(r, action, conn, frame, now),
            }
        }
    }

    fn differential_either(relays: &mut [Either; 2], seed: u64, steps: usize) -> usize {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut now = 1.0e9;
        let mut compared = 0;
        for step in 0..steps {
            now += rng.gen_range(0.0..2.0);
            let conn = rng.gen_range(0..12u64);
            let mut action = rng.gen_range(0..40u32);
            let frame = random_frame(&mut rng);
            // Every few steps, a batch of a few inputs (as the runner makes them); its outputs
            // come out at its end. Prune only outside batches.
            let batch = rng.gen_bool(0.2);
            if batch {
                relays.iter_mut().for_each(|r| r.batch(true));
                if action == 2 {
                    action = 3;
                }
            }
            let a = relays[0].apply(action, conn, &frame, now);
            let b = relays[1].apply(action, conn, &frame, now);
            assert_eq!(a, b, "step {step}: {frame}");
            if batch {
                assert!(a.is_empty(), "nothing comes out of an open batch");
                let extra = random_frame(&mut rng);
                let a = relays[0].apply(3, conn, &extra, now);
                let b = relays[1].apply(3, conn, &extra, now);
                assert!(a.is_empty() && b.is_empty());
                relays.iter_mut().for_each(|r| r.batch(false));
            }
            let a2 = relays[0].drain();
            let b2 = relays[1].drain();
            assert_eq!(a2, b2, "step {step}: {frame}");
            assert!(batch || a2.is_empty());
            compared += a.len() + a2.len();
        }
        compared
    }

    #[test]
    fn a_relay_restarted_on_its_file_finds_everything_again() {
        let path = temp_db("restart");
        let mut memory = Relay::new(RelayConfig::default(), MemoryStore::default(), [5; 32]);
        let mut first = Relay::new(
            RelayConfig::default(),
            SqliteStore::open(&path).expect("database"),
            [5; 32],
        );
        let mut relays = [Either::Memory(memory), Either::Sqlite(first)];
        differential_either(&mut relays, 11, 800);
        let [Either::Memory(m), Either::Sqlite(s)] = relays else {
            unreachable!()
        };
        memory = m;
        first = s;
        drop(first); // the process ends; only the file stays
        let mut reopened = SqliteStore::open(&path).expect("reopen");
        let mut memory_store = memory.store().clone();
        assert_eq!(dump(&mut reopened), dump(&mut memory_store));
        assert_ne!(dump(&mut reopened), json!({}), "the run left state behind");
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }

    #[test]
    fn pruning_deletes_expired_rows_from_the_file() {
        let path = temp_db("prune");
        let mut relay = Relay::new(
            RelayConfig::default(),
            SqliteStore::open(&path).expect("database"),
            [9; 32],
        );
        let t0 = 1.0e9;
        relay.connected(1, None, t0);
        for frame in [
            r#"{"type":"bind","appid":"a","side":"s1"}"#,
            r#"{"type":"claim","nameplate":"7"}"#,
            r#"{"type":"open","mailbox":"idle-mailbox"}"#,
            r#"{"type":"add","phase":"pake","body":"ab"}"#,
        ] {
            relay.received(1, frame, t0);
        }
        relay.disconnected(1);
        assert_eq!(relay.prune(t0 + 60.0), 0, "not expired yet");
        drop(relay);
        let mut store = SqliteStore::open(&path).expect("reopen");
        assert_ne!(dump(&mut store), json!({}));
        let mut relay = Relay::new(RelayConfig::default(), store, [9; 32]);
        // Both mailboxes (the claimed nameplate's and the opened one) expire.
        assert_eq!(relay.prune(t0 + 3600.0), 2);
        drop(relay);
        let mut store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(dump(&mut store), json!({}), "nothing left in the file");
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }

    #[test]
    fn foreign_and_future_databases_are_refused_with_a_clear_error() {
        let path = temp_db("foreign");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            conn.execute_batch("CREATE TABLE version (version INTEGER)")
                .expect("python-like table");
        }
        let err = SqliteStore::open(&path).expect_err("a foreign database");
        assert!(
            err.to_string().contains("not a wormhole-relay database"),
            "{err}"
        );
        let future = temp_db("future");
        drop(SqliteStore::open(&future).expect("create"));
        {
            let conn = rusqlite::Connection::open(&future).expect("open");
            conn.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
                .expect("bump");
        }
        let err = SqliteStore::open(&future).expect_err("a newer schema");
        assert!(err.to_string().contains("schema version 2"), "{err}");
        let garbage = temp_db("garbage");
        std::fs::write(&garbage, b"this is not a database, just some bytes...........................................................................................").expect("write");
        let err = SqliteStore::open(&garbage).expect_err("not SQLite");
        assert!(
            std::error::Error::source(&err).is_some(),
            "{err}: with its cause"
        );
        for p in [path, future, garbage] {
            let _ = std::fs::remove_dir_all(p.parent().unwrap_or(&p));
        }
    }
}
