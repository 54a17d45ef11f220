//! `wormhole send --text`.

use std::io::IsTerminal;

use wormhole::code::Code;
use wormhole::text::{abandon, send_text, SENDER_REJECTED};
use wormhole::Wormhole;

use crate::ui::{self, Progress};
use crate::{Failure, SendArgs, Setup};

/// Gets the text to send: `--text TEXT`, `--text -` (all of stdin), or a prompt.
async fn the_text(args: &SendArgs) -> Result<String, Failure> {
    match args.text.as_deref() {
        Some("-") => ui::read_all_stdin().await,
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => {
            let prompt = if std::io::stdin().is_terminal() {
                "Text to send: "
            } else {
                ""
            };
            match ui::read_line(prompt).await? {
                Some(t) if !t.is_empty() => Ok(t),
                _ => Err(Failure::Usage(
                    "no text to send: give it with --text TEXT, or --text - to read stdin".into(),
                )),
            }
        }
    }
}

/// Prints the code the way the Python CLI does, then a QR code if wanted.
pub fn show_code(code: &Code, other_side: &str, qr: bool) {
    ui::say(&format!("Wormhole code is: {code}"));
    if qr {
        if let Some(q) = ui::qr(code.as_str()) {
            ui::say(&q);
        }
    }
    ui::say("On the other computer, please run:");
    ui::say("");
    ui::say(&format!("wormhole{other_side}"));
    ui::say("");
}

/// Runs `wormhole send`.
pub async fn run(w: &mut Wormhole, args: &SendArgs, setup: &Setup) -> Result<(), Failure> {
    let text = the_text(args).await?;
    let progress = !args.common.hide_progress;
    ui::say(&format!(
        "Sending text message ({})",
        ui::natural_size(text.len())
    ));

    let code = match &args.code {
        Some(c) => {
            let code = Code::parse(c)
                .map_err(|e| Failure::Usage(format!("the code {c:?} is not valid: {e}")))?;
            w.set_code(code.clone()).await?;
            code
        }
        None => {
            let _p = Progress::new(progress, "Connecting to the relay");
            w.allocate_code(usize::from(args.code_length)).await?
        }
    };
    crate::show_welcome(w, setup).await?;
    let receive = format!("{} receive {code}", setup.other_side_options());
    show_code(&code, &receive, args.qr.wanted(ui::stderr_is_tty()));

    let waiting = Progress::new(progress, "Waiting for the other side");
    let verifier = w.verify().await?;
    drop(waiting);
    if args.common.verify && !ui::confirm_verifier(&verifier.to_hex()).await? {
        abandon(w, SENDER_REJECTED).await?;
        return Err(Failure::Rejected);
    }

    let sending = Progress::new(progress, "Sending");
    send_text(w, &text).await?;
    drop(sending);
    if w.code_consumed() {
        println!("Note: code has been consumed and can no longer be used.");
    }
    ui::say("text message sent");
    Ok(())
}
