//! A TCP load balancer for tests: round-robin over backends, skipping those that refuse the
//! connection (a killed relay process), as a real balancer's health check would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The balancer. Stops when dropped.
pub struct Balancer {
    addr: SocketAddr,
    /// Which backend each accepted connection went to (`None`: none was alive).
    routed: Arc<Mutex<Vec<Option<usize>>>>,
    acceptor: JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let routed: Arc<Mutex<Vec<Option<usize>>>> = Arc::default();
        let next = Arc::new(AtomicUsize::new(0));
        let log = routed.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let slot = {
                    let mut log = log.lock().unwrap();
                    log.push(None);
                    log.len() - 1
                };
                let (backends, next, log) = (backends.clone(), next.clone(), log.clone());
                tokio::spawn(async move {
                    let first = next.fetch_add(1, Ordering::SeqCst);
                    for i in 0..backends.len() {
                        let which = (first + i) % backends.len();
                        let attempt = tokio::time::timeout(
                            Duration::from_secs(2),
                            TcpStream::connect(backends[which]),
                        )
                        .await;
                        if let Ok(Ok(mut server)) = attempt {
                            log.lock().unwrap()[slot] = Some(which);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer {
            addr,
            routed,
            acceptor,
        }
    }

    /// The relay URL through the balancer.
    pub fn url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// The backend of each connection so far, in accept order.
    pub fn routed(&self) -> Vec<Option<usize>> {
        self.routed.lock().unwrap().clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}
