//! `wormhole receive`.

use std::io::Write;

use wormhole::code::Code;
use wormhole::text::{abandon, receive_text, RECEIVER_REJECTED};
use wormhole::Wormhole;

use crate::ui::{self, Progress};
use crate::{input, send, Failure, ReceiveArgs, Setup};

/// Runs `wormhole receive`.
pub async fn run(w: &mut Wormhole, args: &ReceiveArgs, setup: &Setup) -> Result<(), Failure> {
    let progress = !args.common.hide_progress;
    let words = usize::from(args.code_length);
    if args.allocate {
        let code = {
            let _p = Progress::new(progress, "Connecting to the relay");
            w.allocate_code(words).await?
        };
        crate::show_welcome(w, setup).await?;
        let send = format!(
            "{} send --code {code} --text TEXT",
            setup.other_side_options()
        );
        send::show_code(&code, &send, args.qr.wanted(ui::stderr_is_tty()));
    } else if args.code.is_empty() {
        input::enter_code(w, words).await?;
    } else {
        // `wormhole receive 4 purple sausages` works too, as in the Python CLI.
        let typed = args.code.join("-");
        let code = Code::parse(&typed)
            .map_err(|e| Failure::Usage(format!("the code {typed:?} is not valid: {e}")))?;
        w.set_code(code).await?;
    }
    if !args.allocate {
        crate::show_welcome(w, setup).await?;
    }

    let waiting = Progress::new(progress, "Waiting for the sender");
    if args.common.verify {
        let verifier = w.verify().await?;
        drop(waiting);
        if !ui::confirm_verifier(&verifier.to_hex()).await? {
            abandon(w, RECEIVER_REJECTED).await?;
            return Err(Failure::Rejected);
        }
    } else {
        drop(waiting);
    }
    let received = {
        let _p = Progress::new(progress, "Waiting for the text");
        receive_text(w).await?
    };
    let shown = if args.escape {
        ui::python_escape(&received.text)
    } else {
        received.text
    };
    let mut out = std::io::stdout().lock();
    out.write_all(shown.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Other(format!("cannot write the text to stdout: {e}")))
}
