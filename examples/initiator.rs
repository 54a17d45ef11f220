//! The seed's initiator: allocates a code, prints it, and exchanges data with a receiver.
//!
//! `cargo run --example initiator -- RELAY_URL [DATA]` (or set `WORMHOLE_RELAY_URL`).

use wormhole::blocking::Initiator;

const APPID: &str = "lothar.com/wormhole/demo";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let relay = args
        .next()
        .or_else(|| std::env::var("WORMHOLE_RELAY_URL").ok())
        .ok_or("give the relay URL as the first argument or in WORMHOLE_RELAY_URL")?;
    let data = args.next().unwrap_or_else(|| "initiator's data".into());

    let mut i = Initiator::new(APPID, &relay);
    let code = i.get_code()?;
    println!("Invitation Code: {code}");
    let theirs = i.get_data(data.as_bytes())?;
    println!("Their data: {}", String::from_utf8_lossy(&theirs));
    Ok(())
}
