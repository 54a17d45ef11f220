//! A relay killed with SIGKILL and started again on its `--db` file loses nothing: real
//! `wormhole-relay` processes on 127.0.0.1, our library clients and the Python CLIs (which
//! reconnect by themselves), and the SQLite file read directly to see what the relay holds.

#![cfg(feature = "sqlite")]

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use support::*;
use wormhole::core::Schedule;
use wormhole::Wormhole;

const APPID: &str = "example.com/wormhole-restart";
/// Overall limit for one test.
const TEST_LIMIT: Duration = Duration::from_secs(120);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_LIMIT:?}"))
}

async fn deadline<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// A relay on a fresh database file in its own directory.
async fn relay_on_db(label: &str) -> (OurRelay, PathBuf, TempDir) {
    let dir = TempDir::new(label);
    let db = dir.path().join("relay.sqlite");
    let relay = OurRelay::start_with(0, &["--db", db.to_str().expect("utf-8 path")]).await;
    (relay, db, dir)
}

/// `(side, phase)` of every message row the relay has committed, in insertion order, read
/// from the file by a separate read-only connection.
fn committed_messages(db: &Path) -> Vec<(String, String)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the relay's database read-only");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let mut stmt = conn
        .prepare("SELECT side, phase FROM messages ORDER BY seq")
        .expect("query");
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read rows")
}

fn count_rows(db: &Path, table: &str) -> i64 {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the relay's database read-only");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .expect("count")
}

/// Waits (bounded) until the database holds at least `n` messages of `phase`.
async fn until_committed(db: &Path, phase: &str, n: usize) {
    deadline(&format!("{n} {phase} message(s) committed"), async {
        loop {
            let rows = committed_messages(db);
            if rows.iter().filter(|(_, p)| p == phase).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Reconnect quickly after the relay goes away (the default waits 0.5 s between tries too;
/// this keeps the test short).
fn client(url: &str) -> Wormhole {
    let schedule = Schedule::new(vec![(Duration::ZERO, Duration::from_millis(100))])
        .expect("a valid schedule");
    Wormhole::new(APPID, url).with_schedule(schedule)
}

async fn kill_and_restart(relay: &mut OurRelay) {
    relay.kill().await;
    assert!(
        tokio::net::TcpStream::connect(relay.addr()).await.is_err(),
        "the killed relay still accepts connections"
    );
    relay.restart().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn library_clients_finish_after_the_relay_is_killed_mid_exchange() {
    within(async {
        let (mut relay, db, _dir) = relay_on_db("restart-lib").await;
        let url = relay.url().to_string();
        let mut a = client(&url);
        let code = deadline("allocate", a.allocate_code(2))
            .await
            .expect("allocate");
        let mut b = client(&url);
        b.set_code(code).await.expect("set code");
        // Both sides have sent their first messages (pake, version) and confirmed the key.
        let (va, vb) = deadline("key confirmation", async {
            tokio::join!(a.verify(), b.verify())
        })
        .await;
        assert_eq!(va.expect("a verifies"), vb.expect("b verifies"));
        // a's first application message is committed; b has not read it yet.
        deadline("a sends", a.send(b"from a, before the kill"))
            .await
            .expect("a sends");
        until_committed(&db, "0", 1).await;
        let before = committed_messages(&db);

        kill_and_restart(&mut relay).await;
        assert_eq!(relay.url(), url);
        assert_eq!(
            committed_messages(&db),
            before,
            "the restarted relay found every committed message"
        );

        // Both reconnect by themselves, re-open the mailbox and carry on.
        let got = deadline("b receives", b.recv()).await.expect("b receives");
        assert_eq!(got, b"from a, before the kill");
        deadline("b sends", b.send(b"from b, after the restart"))
            .await
            .expect("b sends");
        let got = deadline("a receives", a.recv()).await.expect("a receives");
        assert_eq!(got, b"from b, after the restart");
        // Nothing is delivered twice: the next message is the next one sent.
        a.send(b"second from a").await.expect("a sends again");
        let got = deadline("b receives again", b.recv())
            .await
            .expect("b receives again");
        assert_eq!(got, b"second from a");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), b.recv())
                .await
                .is_err(),
            "b got a message nobody sent"
        );
        let phases: Vec<String> = committed_messages(&db)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for phase in ["pake", "version", "0", "1"] {
            assert!(
                phases.iter().any(|p| p == phase),
                "phase {phase} is in the database: {phases:?}"
            );
        }
        let (ca, cb) = deadline("close", async { tokio::join!(a.close(), b.close()) }).await;
        ca.expect("a closes");
        cb.expect("b closes");
        // Once both closed, the relay deleted the mailbox: nothing is left in the file.
        deadline("the mailbox is deleted", async {
            while count_rows(&db, "mailboxes") + count_rows(&db, "messages") > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert_eq!(count_rows(&db, "nameplates"), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nameplate_and_its_first_message_survive_until_the_receiver_comes() {
    within(async {
        let (mut relay, db, _dir) = relay_on_db("restart-nameplate").await;
        let url = relay.url().to_string();
        let mut a = client(&url);
        let code = deadline("allocate", a.allocate_code(2))
            .await
            .expect("allocate");
        let a_task = tokio::spawn(async move {
            let result = a.get_data(b"initiator's data").await;
            let _ = a.close().await;
            result
        });
        until_committed(&db, "pake", 1).await;
        // The relay dies with only the initiator's claim and pake message committed, and is
        // back before the receiver arrives.
        kill_and_restart(&mut relay).await;
        assert_eq!(count_rows(&db, "nameplates"), 1, "the nameplate is kept");
        let mut b = client(&url);
        b.set_code(code).await.expect("set code");
        let got = deadline("receiver", b.get_data(b"receiver's data"))
            .await
            .expect("the receiver finishes");
        assert_eq!(got, b"initiator's data");
        let got = deadline("initiator", a_task)
            .await
            .expect("initiator task")
            .expect("the initiator finishes");
        assert_eq!(got, b"receiver's data");
        let _ = deadline("close", b.close()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn python_clis_finish_through_a_relay_killed_and_restarted() {
    within(async {
        let (mut relay, db, _dir) = relay_on_db("restart-python").await;
        let url = relay.url().to_string();
        let text = "survives a SIGKILL of the relay";
        let sender = py_send_text(&url, text, Some("4-guitarist-revenge"));
        sender.code().await;
        until_committed(&db, "pake", 1).await;
        // The Python sender is connected and waiting; the relay dies under it.
        kill_and_restart(&mut relay).await;
        let receiver = py_receive(&url, "4-guitarist-revenge");
        let received = receiver.wait_with_deadline(DEADLINE).await;
        assert!(received.status.success(), "python receive: {received}");
        assert_eq!(received.stdout, format!("{text}\n"), "{received}");
        let sent = sender.finish().await;
        assert!(sent.status.success(), "python send: {sent}");
        assert!(
            sent.stderr.lines().any(|l| l == "text message sent"),
            "the sender did not report success: {sent}"
        );
    })
    .await
}
