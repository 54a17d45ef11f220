//! Measures the heap held per idle relay-side WebSocket connection, with a counting allocator.
//!
//! Run with `cargo test -p wormhole-transports --test websocket_memory -- --nocapture` to see
//! the numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use tokio::time::timeout;
use wormhole_transports::websocket::{WebSocketListener, WebSocketOptions, WebSocketTransport};
use wormhole_transports::{Connection, Listener};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: usize = 300;

async fn settle() -> isize {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    LIVE.load(Ordering::Relaxed)
}

#[tokio::test]
async fn idle_relay_connection_heap_is_small() {
    timeout(Duration::from_secs(60), async {
        let mut l = WebSocketListener::bind("127.0.0.1:0".parse().expect("lit"), WebSocketOptions::relay())
            .expect("bind");
        let t = WebSocketTransport::default();
        let welcome = format!("{{\"welcome\": {{\"your-address\": {{\"port\": 49044, \"ipv4\": \"127.0.0.1\"}}}}, \"type\": \"welcome\", \"server_tx\": {:.7}}}", 1795698622.2753868f64);
        let bind = r#"{"appid": "lothar.com/wormhole/text-or-file-xfer", "side": "0e95556248", "client_version": ["python", "0.24.0"], "id": "b10f", "type": "bind"}"#;
        let mut clients = Vec::with_capacity(N);
        let mut servers = Vec::with_capacity(N);
        for _ in 0..N {
            let mut c = t.connect_ws(&l.url()).await.expect("connect");
            let mut s = l.accept_ws().await.expect("accept");
            s.send(welcome.clone()).await.expect("welcome");
            assert!(c.recv().await.expect("recv").is_some());
            c.send(bind.to_string()).await.expect("bind");
            assert!(s.recv().await.expect("recv").is_some());
            clients.push(c);
            servers.push(s);
        }

        // (a) the connection objects alone.
        let with = settle().await;
        servers.clear(); // keeps the Vec's own buffer: only the connections are freed
        let without = settle().await;
        let per_conn = (with - without) / N as isize;

        // (b) connections each with a task parked in `recv`, as in the relay.
        drop(clients);
        let mut clients = Vec::with_capacity(N);
        let mut servers = Vec::with_capacity(N);
        for _ in 0..N {
            clients.push(t.connect_ws(&l.url()).await.expect("connect"));
            servers.push(l.accept_ws().await.expect("accept"));
        }
        // A connection not yet polled by `recv` still holds the waker of its (finished)
        // handshake task, whose cell is freed on the first poll: measure the steady state.
        for s in servers.iter_mut() {
            let _ = timeout(Duration::ZERO, s.recv()).await;
        }
        let before = settle().await;
        let tasks: Vec<_> = servers
            .into_iter()
            .map(|mut s| tokio::spawn(async move { s.recv().await.map(|_| ()) }))
            .collect();
        let parked = settle().await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let after = settle().await;
        let per_recv = (parked - before) / N as isize;
        let per_conn_b = (before - after) / N as isize;

        println!("read_buffer_size = {}", WebSocketOptions::relay().read_buffer_size);
        println!("heap per idle relay connection (after welcome/bind): {per_conn} bytes");
        println!("heap per fresh relay connection (after its first poll): {per_conn_b} bytes");
        println!("extra heap per task parked in recv (task + boxed future + timer): {per_recv} bytes");
        assert!(per_conn > 0 && per_conn < 4096, "per connection: {per_conn}");
        assert!(per_conn_b > 0 && per_conn_b < 4096, "per fresh connection: {per_conn_b}");
        assert!(per_recv > 0 && per_conn + per_recv < 4096, "per parked recv: {per_recv}");
        drop(clients);
    })
    .await
    .expect("deadline");
}
