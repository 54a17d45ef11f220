//! Runs a whole exchange in one process: an in-process relay (`mem://demo`), an initiator
//! and a receiver, each on its own thread with the blocking API, as the seed's examples do.
//!
//! `cargo run --example demo`

use std::sync::mpsc;
use std::thread;

use wormhole::blocking::{Initiator, Receiver};

const APPID: &str = "lothar.com/wormhole/demo";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The relay lives on its own runtime for as long as `relay` is held.
    let runtime = tokio::runtime::Runtime::new()?;
    let relay = runtime.block_on(async { wormhole::relay::server::spawn_memory("demo") })?;
    let url = relay.url().to_string();

    let (code_tx, code_rx) = mpsc::channel();
    let initiator = {
        let url = url.clone();
        thread::spawn(move || -> Result<Vec<u8>, wormhole::Error> {
            let mut i = Initiator::new(APPID, &url);
            let code = i.get_code()?;
            println!("Invitation Code: {code}");
            let _ = code_tx.send(code.to_string());
            i.get_data(b"initiator's data")
        })
    };
    let receiver = thread::spawn(move || -> Result<Vec<u8>, wormhole::Error> {
        let code = code_rx
            .recv()
            .map_err(|_| wormhole::Error::InvalidInput("the initiator never made a code".into()))?;
        let mut r = Receiver::new(APPID, &url);
        r.set_code(&code)?;
        r.get_data(b"receiver's data")
    });

    let initiator_got = initiator
        .join()
        .map_err(|_| "initiator thread panicked")??;
    let receiver_got = receiver.join().map_err(|_| "receiver thread panicked")??;
    println!(
        "Initiator: Their data: {}",
        String::from_utf8_lossy(&initiator_got)
    );
    println!(
        "Receiver: Their data: {}",
        String::from_utf8_lossy(&receiver_got)
    );
    runtime.block_on(relay.shutdown());
    Ok(())
}
