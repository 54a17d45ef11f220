//! A `redis-server` of the test's own (loopback, a free port, its own data directory), and
//! our relay as a process on a Redis store. Without `redis-server` on the PATH the tests
//! fail and say so (CI installs it: `.ci/run`).

use std::time::{Duration, Instant};

use tokio::process::Command;

use wormhole::{Error, Wormhole};

use crate::support::{free_port, listening, Proc, Stream, TempDir, DEADLINE};

/// A `redis-server` on 127.0.0.1. Killed (SIGKILL) when dropped.
pub struct TestRedis {
    proc: Option<Proc>,
    port: u16,
    dir: TempDir,
    appendonly: bool,
}

impl TestRedis {
    /// Starts one; `appendonly`: AOF persistence with `appendfsync always`, so that a
    /// restart on the same directory finds every acknowledged write.
    pub async fn start(appendonly: bool) -> TestRedis {
        let mut redis = TestRedis {
            proc: None,
            port: free_port(),
            dir: TempDir::new("redis"),
            appendonly,
        };
        redis.run().await;
        redis
    }

    async fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "yes"])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path());
        ensure_redis_server();
        if std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "redis-server is not installed: these tests need it on the PATH \
                 (Debian/Ubuntu: apt-get install -y redis-server; .ci/run does that)"
            );
        }
        let proc = Proc::spawn("redis-server", cmd, Vec::new());
        proc.wait_for(Stream::Stdout, DEADLINE, "redis-server ready", |out| {
            out.contains("Ready to accept connections").then_some(())
        })
        .await;
        self.proc = Some(proc);
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL.
    pub async fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill().await;
        }
    }

    /// Starts it again on the same port and directory (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.run().await;
    }

    /// A command to this server (`redis-cli` is not needed: a synchronous client call).
    pub fn query(&self, args: &[&str]) -> String {
        use std::io::{BufRead, BufReader, Write};
        let deadline = Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(deadline)).expect("timeout");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("send");
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).expect("reply");
        if let Some(len) = line.strip_prefix('$') {
            let len: i64 = len.trim().parse().unwrap_or(-1);
            if len < 0 {
                return String::new();
            }
            let mut body = vec![0u8; len as usize + 2];
            std::io::Read::read_exact(&mut reader, &mut body).expect("body");
            return String::from_utf8_lossy(&body[..len as usize]).into_owned();
        }
        line.trim().to_owned()
    }
}

/// Our `wormhole-relay` on a Redis store, as a process. Killed (SIGKILL) when dropped.
pub struct RedisRelay {
    pub proc: Option<Proc>,
    pub url: String,
    pub addr: std::net::SocketAddr,
}

impl RedisRelay {
    pub async fn start(store: &str) -> RedisRelay {
        RedisRelay::start_with(store, &[]).await
    }

    /// A relay on `store` with more arguments (e.g. limits).
    pub async fn start_with(store: &str, args: &[&str]) -> RedisRelay {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--store")
            .arg(store)
            .arg("--redis-timeout-ms")
            .arg("1000")
            .args(args)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn("wormhole-relay --store redis", cmd, Vec::new());
        let (url, addr) = listening(&proc).await;
        RedisRelay {
            proc: Some(proc),
            url,
            addr,
        }
    }

    pub async fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill().await;
        }
    }

    /// Its log so far (stderr).
    pub fn log(&self) -> String {
        self.proc.as_ref().map(|p| p.output().1).unwrap_or_default()
    }
}

/// Waits (bounded) until `check` holds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Installs redis-server (scripts/setup-redis.sh, Debian's package) once per test process when
/// it is missing, as the interop harness does for the Python peers, so `cargo test --workspace`
/// works on a fresh machine.
fn ensure_redis_server() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let present = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok();
        if !present {
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-redis.sh");
            let _ = std::process::Command::new("bash").arg(script).status();
        }
    });
}

/// Both sides send two messages and read the other's two, then close; each must get exactly
/// the other's, in order. Bounded by the test deadline.
pub async fn exchange_two_messages_each(mut a: Wormhole, mut b: Wormhole, what: &str) {
    let ta = tokio::spawn(async move {
        a.send(b"one from a").await?;
        a.send(b"two from a").await?;
        let got = (a.recv().await?, a.recv().await?);
        a.close().await?;
        Ok::<_, Error>(got)
    });
    let tb = tokio::spawn(async move {
        b.send(b"one from b").await?;
        b.send(b"two from b").await?;
        let got = (b.recv().await?, b.recv().await?);
        b.close().await?;
        Ok::<_, Error>(got)
    });
    let (ra, rb) = tokio::time::timeout(DEADLINE, async { (ta.await, tb.await) })
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"));
    let ra = ra.expect("task").expect("a");
    let rb = rb.expect("task").expect("b");
    assert_eq!(
        (ra.0.as_slice(), ra.1.as_slice()),
        (&b"one from b"[..], &b"two from b"[..])
    );
    assert_eq!(
        (rb.0.as_slice(), rb.1.as_slice()),
        (&b"one from a"[..], &b"two from a"[..])
    );
}

/// Runs a whole test body, bounded by three test deadlines.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE * 3, f)
        .await
        .expect("the test did not finish in time")
}

/// Waits for one step, bounded by the test deadline; fails naming the step.
pub async fn deadline<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// Three relay processes on `redis`.
pub async fn three_relays(redis: &TestRedis) -> Vec<RedisRelay> {
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(RedisRelay::start(&redis.url()).await);
    }
    relays
}
