//! Harness for the interop tests: the pinned Python magic-wormhole packages, processes with
//! deadlines, our relay binary, the Python mailbox server, text-transfer helpers on top of our
//! library, and a TCP proxy that can cut connections.
//!
//! Every wait has a deadline; every child process is killed when its handle is dropped.

// Not every test binary that includes this module uses every helper.
#![allow(dead_code)]

use std::fmt;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};
use wormhole::text::TextError;
use wormhole::{Code, Error, Wormhole};

/// The app id of `wormhole send --text` / `wormhole receive`.
pub use wormhole::text::TEXT_APPID;
/// Deadline for any single wait on a process or a network event.
pub const DEADLINE: Duration = Duration::from_secs(45);
/// A transit helper nobody listens on: keeps the Python CLI off the public transit relay.
pub const DEAD_TRANSIT_HELPER: &str = "tcp:127.0.0.1:9";

// ---------------------------------------------------------------------------------------------
// The Python venv

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv holding the pinned Python packages: `$WORMHOLE_INTEROP_VENV` or `<repo>/.venv`.
/// Runs `scripts/setup-interop.sh` once per test binary if `bin/wormhole` or `bin/twist` is
/// missing, and panics if that fails.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = VENV.get_or_init(|| {
        let dir = match std::env::var_os("WORMHOLE_INTEROP_VENV") {
            Some(v) => {
                let p = PathBuf::from(v);
                if p.is_absolute() {
                    p
                } else {
                    repo_dir().join(p)
                }
            }
            None => repo_dir().join(".venv"),
        };
        let ready = |d: &Path| d.join("bin/wormhole").is_file() && d.join("bin/twist").is_file();
        if ready(&dir) {
            return Ok(dir);
        }
        let script = repo_dir().join("scripts/setup-interop.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .env("WORMHOLE_INTEROP_VENV", &dir)
            .current_dir(repo_dir())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() || !ready(&dir) {
            return Err(format!(
                "{} failed ({}); the interop tests need Python 3 and PyPI access.\n\
                 stdout:\n{}\nstderr:\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match result {
        Ok(dir) => dir,
        Err(e) => panic!("interop venv unavailable: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "wormhole-interop-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Processes with deadlines

#[derive(Default)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_done: bool,
    stderr_done: bool,
}

#[derive(Default)]
struct Shared {
    captured: Mutex<Captured>,
    changed: Notify,
}

/// Which output stream to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A child process whose stdout and stderr are collected in the background. It is killed
/// (SIGKILL) when dropped.
pub struct Proc {
    name: String,
    command_line: String,
    child: Child,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    _dirs: Vec<TempDir>,
}

/// How a process ended, with everything it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn spawn_reader(
    shared: Arc<Shared>,
    mut pipe: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            let n = pipe.read(&mut buf).await.unwrap_or(0);
            {
                let mut guard = shared.captured.lock().unwrap();
                let c = &mut *guard;
                let (out, done) = match stream {
                    Stream::Stdout => (&mut c.stdout, &mut c.stdout_done),
                    Stream::Stderr => (&mut c.stderr, &mut c.stderr_done),
                };
                if n == 0 {
                    *done = true;
                } else {
                    out.extend_from_slice(&buf[..n]);
                }
            }
            shared.changed.notify_waiters();
            if n == 0 {
                return;
            }
        }
    })
}

impl Proc {
    /// Spawns `command` (stdin closed, stdout/stderr captured, killed on drop). `dirs` are
    /// kept alive as long as the process handle.
    pub fn spawn(name: &str, mut command: Command, dirs: Vec<TempDir>) -> Proc {
        let command_line = format!("{:?}", command.as_std());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {command_line}: {e}"));
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![
            spawn_reader(shared.clone(), stdout, Stream::Stdout),
            spawn_reader(shared.clone(), stderr, Stream::Stderr),
        ];
        Proc {
            name: name.to_string(),
            command_line,
            child,
            shared,
            readers,
            _dirs: dirs,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the process printed so far.
    pub fn output(&self) -> (String, String) {
        let c = self.shared.captured.lock().unwrap();
        (
            String::from_utf8_lossy(&c.stdout).into_owned(),
            String::from_utf8_lossy(&c.stderr).into_owned(),
        )
    }

    fn fail(&self, why: &str) -> ! {
        let (out, err) = self.output();
        panic!(
            "{}: {why}\ncommand: {}\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
            self.name, self.command_line
        )
    }

    /// Waits until `find` returns `Some` on the whole output of `stream` so far; fails the test
    /// if the stream ends first or `deadline` passes.
    pub async fn wait_for<T>(
        &self,
        stream: Stream,
        deadline: Duration,
        what: &str,
        find: impl Fn(&str) -> Option<T>,
    ) -> T {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ended = {
                let c = self.shared.captured.lock().unwrap();
                let (bytes, done) = match stream {
                    Stream::Stdout => (&c.stdout, c.stdout_done),
                    Stream::Stderr => (&c.stderr, c.stderr_done),
                };
                if let Some(found) = find(&String::from_utf8_lossy(bytes)) {
                    return found;
                }
                done
            };
            if ended {
                self.fail(&format!("{stream:?} ended before {what}"));
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                self.fail(&format!("no {what} within {deadline:?}"));
            }
        }
    }

    /// Waits for a whole line on `stream` that starts with `prefix` and returns the rest of it.
    pub async fn wait_line_after(
        &self,
        stream: Stream,
        prefix: &str,
        deadline: Duration,
    ) -> String {
        self.wait_for(stream, deadline, &format!("line {prefix:?}"), |text| {
            let complete = match text.rfind('\n') {
                Some(i) => &text[..i],
                None => return None,
            };
            complete
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|rest| rest.trim_end_matches('\r').to_string())
        })
        .await
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to exit and for its output to end; fails the test with the
    /// captured output if that takes longer than `deadline`.
    pub async fn wait_with_deadline(mut self, deadline: Duration) -> Finished {
        let until = tokio::time::Instant::now() + deadline;
        let status = match tokio::time::timeout_at(until, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => self.fail(&format!("cannot wait: {e}")),
            Err(_) => self.fail(&format!("still running after {deadline:?}")),
        };
        for reader in std::mem::take(&mut self.readers) {
            if tokio::time::timeout_at(until, reader).await.is_err() {
                self.fail("output did not end after the process exited");
            }
        }
        let (stdout, stderr) = self.output();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        if tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .is_err()
        {
            self.fail("did not die after SIGKILL");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        for reader in &self.readers {
            reader.abort();
        }
        // Reap it now rather than leaving a zombie to the runtime's orphan queue (which dies
        // with the test's runtime). SIGKILL takes effect at once; this waits briefly.
        let until = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Relays

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it first).
pub fn free_port() -> u16 {
    let l = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Waits until a `wormhole-relay` process announces its URL; the URL and its address.
pub async fn listening(proc: &Proc) -> (String, SocketAddr) {
    let url = proc
        .wait_line_after(Stream::Stdout, "wormhole-relay listening on ", DEADLINE)
        .await;
    let addr = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|hp| hp.parse().ok())
        .unwrap_or_else(|| panic!("unexpected relay URL {url:?}"));
    (url, addr)
}

/// Our `wormhole` CLI with a clean environment: no `WORMHOLE_*` setting from the caller, no
/// logs; `--relay-url` when given.
pub fn our_cli_command(relay_url: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole"));
    for var in [
        "WORMHOLE_RELAY_URL",
        "WORMHOLE_APPID",
        "WORMHOLE_TIMEOUT",
        "WORMHOLE_SCHEDULE",
        "WORMHOLE_RELAY_CA",
        "WORMHOLE_TRANSIT_HELPER",
        "WORMHOLE_QR",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    if let Some(url) = relay_url {
        cmd.arg("--relay-url").arg(url);
    }
    cmd
}

/// Our CLI on `relay_url` with `args`, started.
pub fn our_cli(relay_url: &str, args: &[&str]) -> Proc {
    let mut cmd = our_cli_command(Some(relay_url));
    cmd.args(args);
    Proc::spawn("our wormhole", cmd, Vec::new())
}

/// Fails unless the process exited with `code`, showing its output.
pub fn assert_exit(f: &Finished, code: i32, who: &str) {
    assert_eq!(f.status.code(), Some(code), "{who}: {f}");
}

/// Our `wormhole-relay` binary.
pub struct OurRelay {
    proc: Option<Proc>,
    url: String,
    addr: SocketAddr,
    /// Extra arguments (e.g. `--db FILE`), given again on a restart.
    args: Vec<String>,
}

impl OurRelay {
    /// Starts the relay on a port chosen by the OS.
    pub async fn start() -> OurRelay {
        OurRelay::start_on(0).await
    }

    /// Starts the relay on `port` (0: any) and waits until it says it is listening.
    pub async fn start_on(port: u16) -> OurRelay {
        OurRelay::start_with(port, &[]).await
    }

    /// Starts the relay on `port` (0: any) with extra arguments, which a restart repeats.
    pub async fn start_with(port: u16, args: &[&str]) -> OurRelay {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wormhole-relay"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("RUST_LOG", "info");
        let proc = Proc::spawn("wormhole-relay", cmd, Vec::new());
        let (url, addr) = listening(&proc).await;
        OurRelay {
            proc: Some(proc),
            url,
            addr,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the relay with SIGKILL (no graceful shutdown).
    pub async fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill().await;
        }
    }

    /// Kills the relay (if running) and starts a new one on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let fresh = OurRelay::start_with(self.addr.port(), &args).await;
        assert_eq!(fresh.url, self.url, "the restarted relay has another URL");
        *self = fresh;
    }
}

/// The Python `magic-wormhole-mailbox-server`, run with `twist wormhole-mailbox`.
pub struct PythonRelay {
    proc: Proc,
    port: u16,
}

impl PythonRelay {
    pub async fn start() -> PythonRelay {
        // The port is found by binding and releasing it, so it can be taken in between:
        // try a few times.
        let mut last = None;
        for _ in 0..3 {
            match PythonRelay::try_start(free_port()).await {
                Ok(relay) => return relay,
                Err(why) => last = Some(why),
            }
        }
        panic!("cannot start the Python mailbox server: {}", last.unwrap());
    }

    async fn try_start(port: u16) -> Result<PythonRelay, String> {
        let dir = TempDir::new("mailbox");
        let mut cmd = Command::new(venv().join("bin/twist"));
        cmd.arg("wormhole-mailbox")
            .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
            .current_dir(dir.path())
            .env("HOME", dir.path());
        let mut proc = Proc::spawn("twist wormhole-mailbox", cmd, vec![dir]);
        let started = Instant::now();
        let deadline = Duration::from_secs(30);
        loop {
            if http_get_root(port).await {
                return Ok(PythonRelay { proc, port });
            }
            if proc.has_exited() {
                let (out, err) = proc.output();
                return Err(format!(
                    "exited early on port {port}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
                ));
            }
            if started.elapsed() > deadline {
                proc.fail(&format!(
                    "not answering HTTP on port {port} after {deadline:?}"
                ));
            }
            // Nothing to wait on but the port itself: poll it.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }
}

/// Whether an HTTP server answers `GET /` on 127.0.0.1:`port`.
async fn http_get_root(port: u16) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        head.starts_with(b"HTTP/1.").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(()))
    )
}

// ---------------------------------------------------------------------------------------------
// The Python CLI

/// A `wormhole` CLI command from the venv, with a private `HOME`, the given relay, and the
/// dead transit helper. Environment variables that could point it elsewhere are removed.
pub fn python_cli(relay_url: &str, home: &TempDir) -> Command {
    let mut cmd = Command::new(venv().join("bin/wormhole"));
    cmd.env("HOME", home.path())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .env_remove("WORMHOLE_RELAY_URL")
        .env_remove("WORMHOLE_TRANSIT_HELPER")
        .env_remove("WORMHOLE_QR")
        .env_remove("WORMHOLE_ACCEPT_FILE")
        .current_dir(home.path())
        .arg("--relay-url")
        .arg(relay_url)
        .arg("--transit-helper")
        .arg(DEAD_TRANSIT_HELPER);
    cmd
}

/// A running `wormhole send --text`.
pub struct PySender {
    pub proc: Proc,
}

impl PySender {
    /// The code, from the `Wormhole code is: CODE` line on stderr.
    pub async fn code(&self) -> String {
        self.proc
            .wait_line_after(Stream::Stderr, "Wormhole code is: ", DEADLINE)
            .await
    }

    pub async fn finish(self) -> Finished {
        self.proc.wait_with_deadline(DEADLINE).await
    }
}

/// Starts `wormhole --relay-url URL --transit-helper DEAD send --text TEXT [--code CODE]
/// --hide-progress --no-qr`.
pub fn py_send_text(relay_url: &str, text: &str, code: Option<&str>) -> PySender {
    let home = TempDir::new("py-send");
    let mut cmd = python_cli(relay_url, &home);
    cmd.arg("send").arg("--text").arg(text);
    if let Some(code) = code {
        cmd.arg("--code").arg(code);
    }
    cmd.arg("--hide-progress").arg("--no-qr");
    PySender {
        proc: Proc::spawn("python wormhole send", cmd, vec![home]),
    }
}

/// Starts `wormhole --relay-url URL --transit-helper DEAD receive --hide-progress --only-text
/// CODE`.
pub fn py_receive(relay_url: &str, code: &str) -> Proc {
    let home = TempDir::new("py-receive");
    let mut cmd = python_cli(relay_url, &home);
    cmd.arg("receive")
        .arg("--hide-progress")
        .arg("--only-text")
        .arg(code);
    Proc::spawn("python wormhole receive", cmd, vec![home])
}

/// What the Python receiver prints for `text`: `repr(text)[1:-1]`, computed by Python itself.
pub fn python_repr_body(text: &str) -> String {
    let out = std::process::Command::new(venv().join("bin/python"))
        .env("PYTHONIOENCODING", "utf-8")
        .arg("-c")
        .arg("import sys; sys.stdout.write(repr(sys.argv[1])[1:-1])")
        .arg(text)
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "python repr failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 repr")
}

// ---------------------------------------------------------------------------------------------
// Text transfer with our library (`wormhole::text`)

/// The library's text errors as `wormhole::Error`s, which these tests compare against.
fn plain(e: TextError) -> Error {
    match e {
        TextError::Wormhole(e) => e,
        other => Error::Protocol(other.to_string()),
    }
}

/// The sender's half of a text transfer on a wormhole that has its code: offer, wait for the
/// answer, close.
pub async fn send_text_on(w: &mut Wormhole, text: &str) -> Result<(), Error> {
    wormhole::text::send_text(w, text).await.map_err(plain)
}

/// Sends `text` as `wormhole send --text` does. With `code`, uses it; without, allocates a
/// 2-word code. Returns the code as soon as it is known, and the rest of the transfer as a
/// task.
pub async fn rust_send_text(
    url: &str,
    text: &str,
    code: Option<&str>,
) -> Result<(Code, JoinHandle<Result<(), Error>>), Error> {
    let mut w = Wormhole::new(TEXT_APPID, url);
    let code = match code {
        Some(c) => {
            let c = Code::parse(c).map_err(|e| Error::InvalidInput(e.to_string()))?;
            w.set_code(c.clone()).await?;
            c
        }
        None => w.allocate_code(2).await?,
    };
    let text = text.to_string();
    let task = tokio::spawn(async move { send_text_on(&mut w, &text).await });
    Ok((code, task))
}

/// Receives a text as `wormhole receive` does: waits for the offer, answers it, closes.
pub async fn rust_receive_text(url: &str, code: &str) -> Result<String, Error> {
    let mut w = Wormhole::new(TEXT_APPID, url);
    let code = Code::parse(code).map_err(|e| Error::InvalidInput(e.to_string()))?;
    w.set_code(code).await?;
    wormhole::text::receive_text(&mut w)
        .await
        .map(|r| r.text)
        .map_err(plain)
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can cut its connections

/// Forwards TCP connections from 127.0.0.1:PORT to `upstream`, and can drop them all.
pub struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (acc, lv) = (accepted.clone(), live.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let conn = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut lv = lv.lock().unwrap();
                lv.retain(|h| !h.is_finished());
                lv.push(conn.abort_handle());
            }
        });
        Proxy {
            addr,
            accepted,
            live,
            acceptor,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The relay URL through this proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Drops every live connection (both ends see the TCP connection close); the proxy keeps
    /// accepting new ones. Returns how many were live.
    pub fn cut_all(&self) -> usize {
        let mut live = self.live.lock().unwrap();
        let mut cut = 0;
        for h in live.drain(..) {
            if !h.is_finished() {
                cut += 1;
            }
            h.abort();
        }
        cut
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut_all();
    }
}
