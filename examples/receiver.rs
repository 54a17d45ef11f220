//! The seed's receiver: is given the code, and exchanges data with the initiator.
//!
//! `cargo run --example receiver -- RELAY_URL CODE [DATA]` (or set `WORMHOLE_RELAY_URL` and
//! pass only `CODE [DATA]`).

use wormhole::blocking::Receiver;

const APPID: &str = "lothar.com/wormhole/demo";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let relay = match std::env::var("WORMHOLE_RELAY_URL") {
        Ok(url) if !args.first().is_some_and(|a| a.contains("://")) => url,
        _ if !args.is_empty() => args.remove(0),
        _ => return Err("usage: receiver RELAY_URL CODE [DATA]".into()),
    };
    let code = if args.is_empty() {
        return Err("usage: receiver RELAY_URL CODE [DATA]".into());
    } else {
        args.remove(0)
    };
    let data = args.pop().unwrap_or_else(|| "receiver's data".into());

    let mut r = Receiver::new(APPID, &relay);
    r.set_code(&code)?;
    let theirs = r.get_data(data.as_bytes())?;
    println!("Their data: {}", String::from_utf8_lossy(&theirs));
    Ok(())
}
