//! Whole exchanges through an in-process relay (`mem://`), with the async and blocking APIs.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use wormhole::relay::server::spawn_memory;
use wormhole::{Error, Initiator, Receiver, Wormhole};

const APPID: &str = "example.com/exchange-test";
/// Every wait in these tests has a deadline.
const DEADLINE: Duration = Duration::from_secs(60);

async fn exchange(url: &str, a_data: Vec<u8>, b_data: Vec<u8>) -> Result<(), String> {
    let mut initiator = Initiator::new(APPID, url);
    let code = initiator.get_code().await.map_err(|e| e.to_string())?;
    let mut receiver = Receiver::new(APPID, url);
    receiver
        .set_code(code.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let (a_mine, b_mine) = (a_data.clone(), b_data.clone());
    let a = tokio::spawn(async move {
        let got = initiator.get_data(&a_mine).await;
        (got, initiator.wormhole().verifier())
    });
    let b = tokio::spawn(async move {
        let got = receiver.get_data(&b_mine).await;
        (got, receiver.wormhole().verifier())
    });
    let (a, b) = (
        a.await.map_err(|e| e.to_string())?,
        b.await.map_err(|e| e.to_string())?,
    );
    let a_got = a.0.map_err(|e| format!("initiator: {e}"))?;
    let b_got = b.0.map_err(|e| format!("receiver: {e}"))?;
    if a_got != b_data || b_got != a_data {
        return Err("data mismatch".into());
    }
    match (a.1, b.1) {
        (Some(va), Some(vb)) if va == vb => Ok(()),
        _ => Err("verifiers differ or are missing".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_exchanges_with_random_codes_and_sizes() {
    let relay = spawn_memory("exchange-1000").unwrap();
    let url = relay.url().to_string();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
    let run = async {
        // 50 at a time: the relay sees many live nameplates, so codes vary in length too.
        for batch in 0..20 {
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let a_len = if rng.gen_bool(0.1) {
                    0
                } else {
                    rng.gen_range(0..=64 * 1024)
                };
                let b_len = rng.gen_range(0..=64 * 1024);
                let a: Vec<u8> = (0..a_len).map(|_| rng.gen()).collect();
                let b: Vec<u8> = (0..b_len).map(|_| rng.gen()).collect();
                let url = url.clone();
                tasks.push(tokio::spawn(async move { exchange(&url, a, b).await }));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                let r = t.await.unwrap();
                assert!(r.is_ok(), "batch {batch} exchange {i}: {r:?}");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("1000 exchanges within 5 minutes");
    relay.shutdown().await;
}

#[tokio::test]
async fn a_mistyped_code_gives_both_sides_the_wrong_code_error() {
    let relay = spawn_memory("exchange-wrong").unwrap();
    let url = relay.url().to_string();
    let run = async {
        let mut initiator = Initiator::new(APPID, &url);
        let code = initiator.get_code().await.unwrap();
        let mut receiver = Receiver::new(APPID, &url);
        receiver
            .set_code(&format!("{}-mistyped-words", code.nameplate()))
            .await
            .unwrap();
        let a = tokio::spawn(async move { initiator.get_data(b"a").await });
        let b = tokio::spawn(async move { receiver.get_data(b"b").await });
        (a.await.unwrap(), b.await.unwrap())
    };
    let (a, b) = tokio::time::timeout(DEADLINE, run).await.unwrap();
    assert_eq!(a, Err(Error::WrongCode));
    assert_eq!(b, Err(Error::WrongCode));
}

#[tokio::test]
async fn many_messages_each_way_and_app_versions() {
    let relay = spawn_memory("exchange-many").unwrap();
    let url = relay.url().to_string();
    let run = async {
        let mut a = Wormhole::new(APPID, &url)
            .with_app_versions(serde_json::json!({"side": "a", "features": [1, 2]}));
        let code = a.allocate_code(3).await.unwrap();
        assert_eq!(code.words().split('-').count(), 3);
        let mut b = Wormhole::new(APPID, &url).with_app_versions(serde_json::json!({"side": "b"}));
        b.set_code(code).await.unwrap();
        for i in 0..20u8 {
            a.send(&[i; 3]).await.unwrap();
            b.send(&[100 + i]).await.unwrap();
        }
        for i in 0..20u8 {
            assert_eq!(b.recv().await.unwrap(), vec![i; 3]);
            assert_eq!(a.recv().await.unwrap(), vec![100 + i]);
        }
        assert_eq!(a.peer_app_versions().unwrap()["side"], "b");
        assert_eq!(b.peer_app_versions().unwrap()["features"][1], 2);
        assert_eq!(a.verifier(), b.verifier());
        assert!(a.verifier().is_some());
        let ka = a
            .derive_key(b"example.com/test/file-key", 32)
            .await
            .unwrap();
        let kb = b
            .derive_key(b"example.com/test/file-key", 32)
            .await
            .unwrap();
        assert_eq!(ka, kb);
        assert_ne!(ka, b.derive_key(b"another purpose", 32).await.unwrap());
        assert_eq!(a.close().await, Ok(()));
        assert_eq!(b.close().await, Ok(()));
        assert!(matches!(a.send(b"late").await, Err(Error::Closed)));
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap();
}

#[tokio::test]
async fn a_relay_that_is_not_there_is_a_clear_error() {
    let mut a = Wormhole::new(APPID, "mem://nobody-listens-here");
    let err = tokio::time::timeout(DEADLINE, a.allocate_code(2))
        .await
        .unwrap()
        .unwrap_err();
    match err {
        Error::RelayUnreachable(reason) => {
            assert!(reason.contains("mem://nobody-listens-here"), "{reason}")
        }
        other => panic!("expected RelayUnreachable, got {other:?}"),
    }
    assert_eq!(
        Error::RelayUnreachable("mem://x: gone".into()).to_string(),
        "cannot reach the relay at mem://x: gone"
    );
    let mut b = Wormhole::new(APPID, "gopher://example");
    assert!(matches!(
        b.allocate_code(2).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn the_hard_timeout_ends_a_lonely_wait() {
    let relay = spawn_memory("exchange-timeout").unwrap();
    let mut a = Initiator::from_wormhole(
        Wormhole::new(APPID, relay.url()).with_timeout(Some(Duration::from_secs(90))),
    );
    let start = tokio::time::Instant::now();
    a.get_code().await.unwrap();
    let err = a.get_data(b"nobody will read this").await.unwrap_err();
    assert_eq!(err, Error::Timeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(90) && waited < Duration::from_secs(91),
        "{waited:?}"
    );
}

#[tokio::test]
async fn the_blocking_api_refuses_to_run_inside_a_runtime() {
    let mut i = wormhole::blocking::Initiator::new(APPID, "mem://unused");
    assert!(matches!(i.get_code(), Err(Error::InvalidInput(_))));
}

#[test]
fn the_blocking_api_works_across_threads() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt
        .block_on(async { spawn_memory("exchange-blocking") })
        .unwrap();
    let url = relay.url().to_string();
    let mut i = wormhole::blocking::Initiator::new(APPID, &url);
    let code = i.get_code().unwrap();
    let url2 = url.clone();
    let receiver = std::thread::spawn(move || {
        let mut r = wormhole::blocking::Receiver::new(APPID, &url2);
        r.set_code(code.as_str())?;
        r.get_data(b"receiver's data")
    });
    let theirs = i.get_data(b"initiator's data").unwrap();
    assert_eq!(theirs, b"receiver's data");
    assert_eq!(receiver.join().unwrap().unwrap(), b"initiator's data");
    rt.block_on(relay.shutdown());
}

#[tokio::test(start_paused = true)]
async fn the_hard_timeout_ends_both_waiting_sides_at_its_deadline() {
    let relay = spawn_memory("exchange-timeout-both").unwrap();
    let timeout = Duration::from_secs(40);
    let start = tokio::time::Instant::now();
    let mut a = Wormhole::new(APPID, relay.url()).with_timeout(Some(timeout));
    let code = a.allocate_code(2).await.unwrap();
    let mut b = Wormhole::new(APPID, relay.url()).with_timeout(Some(timeout));
    b.set_code(code).await.unwrap();
    // The key is exchanged, but neither side sends: both wait until the deadline.
    let (va, vb) = tokio::join!(a.verify(), b.verify());
    assert_eq!(va.unwrap(), vb.unwrap());
    let (ra, rb) = tokio::join!(a.recv(), b.recv());
    assert_eq!(ra.unwrap_err(), Error::Timeout);
    assert_eq!(rb.unwrap_err(), Error::Timeout);
    let waited = start.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(1),
        "{waited:?}"
    );
    // Every later operation reports the same.
    assert_eq!(a.send(b"late").await.unwrap_err(), Error::Timeout);
    assert_eq!(b.close().await.unwrap_err(), Error::Timeout);
    tokio::time::timeout(DEADLINE, relay.shutdown())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_max_timeout_and_the_presets_exchange_normally() {
    use wormhole::SchedulePreset;
    let relay = spawn_memory("exchange-presets").unwrap();
    let run = async {
        for (i, preset) in SchedulePreset::ALL.into_iter().enumerate() {
            let mut a = Initiator::new(APPID, relay.url()).with_preset(preset);
            let mut b = Receiver::new(APPID, relay.url())
                .with_preset(preset)
                .with_timeout(Some(Duration::MAX));
            assert_eq!(a.wormhole().schedule(), &preset.schedule());
            assert_eq!(a.wormhole().timeout(), Some(preset.timeout()));
            assert_eq!(b.wormhole().timeout(), Some(Duration::MAX));
            let code = a.get_code().await.unwrap();
            b.set_code(code.as_str()).await.unwrap();
            let mine_a = format!("from A, round {i}");
            let (got_a, got_b) = tokio::join!(a.get_data(mine_a.as_bytes()), b.get_data(b"from B"));
            assert_eq!(got_a.unwrap(), b"from B");
            assert_eq!(got_b.unwrap(), mine_a.as_bytes());
        }
    };
    tokio::time::timeout(DEADLINE, run).await.unwrap();
}

#[test]
fn the_blocking_api_takes_a_timeout_and_a_preset() {
    use wormhole::SchedulePreset;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let relay = rt
        .block_on(async { spawn_memory("exchange-blocking-options") })
        .unwrap();
    let url = relay.url().to_string();
    // Nobody comes: the timeout ends the wait, on time.
    let timeout = Duration::from_millis(1500);
    let mut lonely = wormhole::blocking::Initiator::new(APPID, &url).with_timeout(Some(timeout));
    let start = std::time::Instant::now();
    lonely.get_code().unwrap();
    assert_eq!(lonely.get_data(b"nobody").unwrap_err(), Error::Timeout);
    let waited = start.elapsed();
    assert!(waited >= timeout && waited < timeout * 3, "{waited:?}");
    // The long-lived preset and an explicit schedule still exchange at once.
    let mut i = wormhole::blocking::Initiator::new(APPID, &url)
        .with_preset(SchedulePreset::LongLived)
        .with_timeout(Some(Duration::from_secs(60)));
    let code = i.get_code().unwrap();
    let url2 = url.clone();
    let receiver = std::thread::spawn(move || {
        let mut r = wormhole::blocking::Receiver::new(APPID, &url2)
            .with_schedule(wormhole::Schedule::long_lived())
            .with_timeout(Some(Duration::from_secs(60)));
        r.set_code(code.as_str())?;
        r.get_data(b"receiver's data")
    });
    assert_eq!(i.get_data(b"initiator's data").unwrap(), b"receiver's data");
    assert_eq!(receiver.join().unwrap().unwrap(), b"initiator's data");
    rt.block_on(relay.shutdown());
}
