//! The async API: two sides in one program, several messages each way, the verifier and a
//! derived application key, through an in-process relay.
//!
//! `cargo run --example async_exchange`

use wormhole::relay::server::spawn_memory;
use wormhole::Wormhole;

const APPID: &str = "example.com/async-example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let relay = spawn_memory("async-example")?;
    let mut alice = Wormhole::new(APPID, relay.url());
    let code = alice.allocate_code(2).await?;
    println!("Invitation Code: {code}");

    let mut bob = Wormhole::new(APPID, relay.url());
    bob.set_code(code).await?;

    let bob_task = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(String::from_utf8_lossy(&bob.recv().await?).into_owned());
        }
        bob.send(b"thanks, all three arrived").await?;
        let key = bob.derive_key(b"example.com/async-example/key", 32).await?;
        bob.close().await?;
        Ok::<_, wormhole::Error>((got, key))
    });

    for part in ["one", "two", "three"] {
        alice.send(part.as_bytes()).await?;
    }
    let reply = alice.recv().await?;
    let verifier = alice.verify().await?;
    let key = alice
        .derive_key(b"example.com/async-example/key", 32)
        .await?;
    alice.close().await?;

    let (bob_got, bob_key) = bob_task.await??;
    println!("Bob got: {bob_got:?}");
    println!("Alice got: {}", String::from_utf8_lossy(&reply));
    println!("Verifier: {}", verifier.to_hex());
    println!("Derived keys agree: {}", key == bob_key);
    relay.shutdown().await;
    Ok(())
}
