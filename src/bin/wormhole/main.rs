//! `wormhole`: send a text to another computer with a short code, compatible with the Python
//! magic-wormhole CLI (`wormhole send --text` / `wormhole receive`).

#[path = "../common/error_chain.rs"]
mod error_chain;
mod input;
mod receive;
mod send;
mod ui;
mod welcome;

use error_chain::error_chain;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use wormhole::text::{TextError, TEXT_APPID};
use wormhole::transports::websocket::ClientTls;
use wormhole::{Error, SchedulePreset, Wormhole};

/// The public relay the Python CLI 0.24 uses.
pub const DEFAULT_RELAY: &str = "ws://relay.magic-wormhole.io:4000/v1";

/// How long closing the wormhole may take after Ctrl-C.
const CLOSE_ON_INTERRUPT: Duration = Duration::from_secs(3);

const AFTER_HELP: &str = "\
Examples:
  wormhole send --text 'the password is hunter2'   # prints a code like 7-guitarist-revenge
  wormhole receive 7-guitarist-revenge             # on the other computer
  wormhole receive                                 # type the code, with <Tab> completion

Exit status:
    0  success
    1  other error (e.g. a protocol error from the other side)
    2  usage error (bad option or malformed code)
    3  wrong code: key confirmation failed (a mistyped code, or someone guessed)
    4  the code is already in use (crowded) or was already used
    5  the relay cannot be reached
    6  the relay reported an error or refuses service
    7  timed out (--timeout)
    8  the other side abandoned the transfer
    9  the other side offered a file or directory (only text is supported)
   10  you rejected the verifier (--verify)
  130  interrupted (Ctrl-C); the wormhole is closed first";

/// Send a text to another computer, securely, with a short code.
#[derive(Debug, Parser)]
#[command(
    name = "wormhole",
    version,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The rendezvous relay (mailbox server) to use
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "URL",
        env = "WORMHOLE_RELAY_URL",
        hide_env_values = true,
        default_value = DEFAULT_RELAY
    )]
    pub relay_url: String,

    /// The application id; both sides must use the same
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "ID",
        env = "WORMHOLE_APPID",
        hide_env_values = true,
        default_value = TEXT_APPID
    )]
    pub appid: String,

    /// Give up if the transfer is not done after SECS seconds (default: wait forever)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "SECS",
        env = "WORMHOLE_TIMEOUT",
        hide_env_values = true
    )]
    pub timeout: Option<f64>,

    /// Also trust the CA certificates in this PEM file for a wss:// relay (one with a private
    /// CA), besides the built-in roots
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = "WORMHOLE_RELAY_CA",
        hide_env_values = true
    )]
    pub relay_ca: Option<std::path::PathBuf>,

    /// How often to poll the relay and reconnect to it: face-to-face (every 0.5 s at first) or
    /// long-lived (hourly after the first hour, for a transfer that may wait for days)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PRESET",
        env = "WORMHOLE_SCHEDULE",
        hide_env_values = true,
        default_value = "face-to-face"
    )]
    pub schedule: ScheduleArg,

    /// Accepted for compatibility with the Python CLI and ignored: text transfers do not use
    /// a transit relay
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "tcp:HOST:PORT",
        env = "WORMHOLE_TRANSIT_HELPER",
        hide_env_values = true
    )]
    pub transit_helper: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The `--schedule` presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    // No doc comments here: they would switch clap to the long help layout.
    // Every 0.5 s for two minutes, then every 2 s, then every 10 s after five minutes.
    #[allow(missing_docs)]
    FaceToFace,
    // Every minute for ten minutes, then every ten minutes, then hourly after the first hour.
    #[allow(missing_docs)]
    LongLived,
}

impl From<ScheduleArg> for SchedulePreset {
    fn from(a: ScheduleArg) -> SchedulePreset {
        match a {
            ScheduleArg::FaceToFace => SchedulePreset::FaceToFace,
            ScheduleArg::LongLived => SchedulePreset::LongLived,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a text message
    #[command(visible_alias = "tx")]
    Send(SendArgs),
    /// Receive a text message
    #[command(visible_aliases = ["rx", "recv"], alias = "recieve")]
    Receive(ReceiveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = "Example: wormhole completions bash > /etc/bash_completion.d/wormhole")]
    Completions {
        /// The shell
        shell: Shell,
    },
}

/// Options shared by `send` and `receive`.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Show the verifier and ask for confirmation before the transfer
    #[arg(short, long)]
    pub verify: bool,
    /// Do not show the progress spinner
    #[arg(long)]
    pub hide_progress: bool,
}

/// QR-code options.
#[derive(Debug, Args, Clone)]
pub struct QrArgs {
    /// Show the code as a QR code (default: only when stderr is a terminal)
    #[arg(
        long,
        overrides_with = "no_qr",
        env = "WORMHOLE_QR",
        hide_env_values = true
    )]
    pub qr: bool,
    /// Never show a QR code
    #[arg(long)]
    pub no_qr: bool,
}

impl QrArgs {
    fn wanted(&self, stderr_tty: bool) -> bool {
        if self.no_qr {
            false
        } else {
            self.qr || stderr_tty
        }
    }
}

/// `wormhole send`.
#[derive(Debug, Args, Clone)]
pub struct SendArgs {
    /// The text to send; `-` reads it from stdin (without --text you are asked for it)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub text: Option<String>,
    /// Use this code instead of asking the relay for one (e.g. the receiver's, with `receive
    /// --allocate`)
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// Number of words in the allocated code
    #[arg(short = 'c', long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=32))]
    pub code_length: u8,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub qr: QrArgs,
}

/// `wormhole receive`.
#[derive(Debug, Args, Clone)]
pub struct ReceiveArgs {
    /// The code; words may also be given as separate arguments (without it you are asked for
    /// it, with <Tab> completion)
    #[arg(value_name = "CODE")]
    pub code: Vec<String>,
    /// Allocate the code here; the sender uses `send --code CODE`
    #[arg(short, long, conflicts_with = "code")]
    pub allocate: bool,
    /// Number of words in the allocated code (with --allocate) or to complete when typing it
    #[arg(short = 'c', long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=32))]
    pub code_length: u8,
    /// Accept only text (always the case: file transfer is not supported)
    #[arg(short = 't', long)]
    pub only_text: bool,
    /// Print the text escaped as the Python CLI does (a newline as \n, a tab as \t)
    #[arg(long)]
    pub escape: bool,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub qr: QrArgs,
}

/// Why a command failed, with what the user is told and the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The transfer failed.
    Text(TextError),
    /// Bad input from the user (exit 2).
    Usage(String),
    /// The user rejected the verifier (exit 10).
    Rejected,
    /// Ctrl-C.
    Interrupted,
    /// Anything else (exit 1).
    Other(String),
}

impl From<TextError> for Failure {
    fn from(e: TextError) -> Failure {
        Failure::Text(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Text(TextError::Wormhole(e))
    }
}

/// The context of the messages: where things were sent.
pub struct Context {
    /// The relay URL.
    pub relay_url: String,
    /// The timeout, if any.
    pub timeout: Option<f64>,
}

impl Failure {
    /// The exit status and the message (which says what happened and what to do).
    pub fn explain(&self, cx: &Context) -> (u8, String) {
        let url = &cx.relay_url;
        match self {
            Failure::Usage(m) => (2, m.clone()),
            Failure::Rejected => (
                10,
                "Verification rejected: the transfer was abandoned and the other side was told.\n\
                 If the verifiers differed, someone may have tried to intercept it; start again \
                 with a new code."
                    .into(),
            ),
            Failure::Interrupted => (
                130,
                "Interrupted: the wormhole is closed and the code can no longer be used.".into(),
            ),
            Failure::Other(m) => (1, m.clone()),
            Failure::Text(TextError::Remote(why)) => (
                8,
                format!(
                    "The other side abandoned the transfer (remote error, transfer abandoned: \
                     {why})."
                ),
            ),
            Failure::Text(TextError::UnsupportedOffer(kind)) => (
                9,
                format!(
                    "The other side offered a {kind}, but this wormhole only transfers text; \
                     file transfer is not supported. They were told so.\n\
                     Ask them to send text with `wormhole send --text`, or use the Python \
                     magic-wormhole CLI for files."
                ),
            ),
            Failure::Text(TextError::Protocol(m)) => (
                1,
                format!("The other side broke the protocol: {m}. Nothing was transferred."),
            ),
            Failure::Text(TextError::Wormhole(e)) => match e {
                Error::WrongCode => (
                    3,
                    "Key confirmation failed: either you or your correspondent typed the code \
                     wrong, or someone tried to guess it.\n\
                     Nothing was revealed. Check the code and try again with a new one."
                        .into(),
                ),
                Error::Crowded => (
                    4,
                    "This code is already in use: someone else is using the same nameplate \
                     (crowded), or the code was already used.\n\
                     Codes work only once; ask for a new code."
                        .into(),
                ),
                Error::RelayUnreachable(reason) => {
                    let why = unreachable_reason(reason, url);
                    let hint = if why.contains("TLS") {
                        "Check the relay URL (--relay-url or WORMHOLE_RELAY_URL); if the relay's \
                         certificate comes from a private CA, trust it with --relay-ca PATH (or \
                         WORMHOLE_RELAY_CA)."
                    } else {
                        "Check your network connection and the relay URL (--relay-url or \
                         WORMHOLE_RELAY_URL)."
                    };
                    (
                        5,
                        format!("Cannot reach the relay at {url}: {why}.\n{hint}"),
                    )
                }
                Error::Unwelcome(text) => (
                    6,
                    format!(
                        "The relay at {url} refuses service: {text}\n\
                         Try again later, or use another relay with --relay-url."
                    ),
                ),
                Error::Relay(text) => (
                    6,
                    format!(
                        "The relay at {url} reported an error: {text}\n\
                         Start again with a new code; if it persists, try another relay."
                    ),
                ),
                Error::Timeout => (
                    7,
                    format!(
                        "Timed out{} waiting for the other side.\n\
                         Check that they run `wormhole receive` (or `send`) with the same code \
                         and relay, then try again with a new code.",
                        cx.timeout
                            .map(|t| format!(" after {t} s"))
                            .unwrap_or_default()
                    ),
                ),
                Error::MessageTooLarge { size, limit } => (
                    2,
                    format!(
                        "The text is too long ({size} bytes; at most {limit} fit in a message). \
                         Send a shorter text."
                    ),
                ),
                Error::InvalidInput(m) => (2, format!("Invalid input: {m}.")),
                Error::Protocol(m) => (
                    1,
                    format!("The other side broke the protocol: {m}. Nothing was transferred."),
                ),
                other => (1, format!("The transfer failed: {other}.")),
            },
            Failure::Text(other) => (1, format!("The transfer failed: {other}.")),
        }
    }
}

/// The library's reason names the URL already; keep only what went wrong.
/// The "why" of an unreachable relay, without the URL the message already names.
fn unreachable_reason<'a>(reason: &'a str, url: &str) -> &'a str {
    let reason = reason.trim_end_matches('.');
    reason
        .strip_prefix(url)
        .and_then(|r| r.strip_prefix(": "))
        .unwrap_or(reason)
}

fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(ui::stderr_is_tty())
            .try_init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if let Command::Completions { shell } = cli.command {
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "wormhole", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Some(t) = cli.timeout {
        if !(t.is_finite() && t > 0.0) {
            eprintln!("error: --timeout must be a positive number of seconds");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let cx = Context {
        relay_url: cli.relay_url.clone(),
        timeout: cli.timeout,
    };
    let status = runtime.block_on(run(cli));
    let code = match status {
        Ok(()) => 0,
        Err(failure) => {
            let (code, message) = failure.explain(&cx);
            ui::error(&message);
            code
        }
    };
    let _ = std::io::stdout().flush();
    // Do not wait for a blocked stdin reader (a prompt) to finish.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let timeout = cli.timeout.map(Duration::from_secs_f64);
    // The preset's schedule; the timeout is --timeout's (none by default), not the preset's.
    let preset = SchedulePreset::from(cli.schedule);
    let mut w = Wormhole::new(&cli.appid, &cli.relay_url)
        .with_schedule(preset.schedule())
        .with_timeout(timeout);
    if let Some(path) = &cli.relay_ca {
        let tls = ClientTls::default()
            .with_extra_ca_file(path)
            .map_err(|e| Failure::Usage(format!("cannot use --relay-ca: {}", error_chain(&e))))?;
        w = w.with_tls(tls);
    }
    let setup = Setup {
        relay_url: cli.relay_url.clone(),
        appid: cli.appid.clone(),
    };
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let outcome = {
        let work = async {
            match &cli.command {
                Command::Send(args) => send::run(&mut w, args, &setup).await,
                Command::Receive(args) => receive::run(&mut w, args, &setup).await,
                Command::Completions { .. } => Ok(()),
            }
        };
        tokio::select! {
            r = work => r,
            _ = &mut interrupt => Err(Failure::Interrupted),
        }
    };
    if matches!(outcome, Err(Failure::Interrupted)) {
        // Close politely (release the nameplate, close the mailbox), but not forever.
        match tokio::time::timeout(CLOSE_ON_INTERRUPT, w.close()).await {
            Ok(Ok(())) => tracing::debug!("closed after Ctrl-C"),
            Ok(Err(e)) => tracing::debug!(error = %e, "close after Ctrl-C failed"),
            Err(_) => tracing::debug!("close after Ctrl-C timed out"),
        }
    }
    outcome
}

/// Waits for the relay's welcome and shows its message of the day, and a note if it
/// advertises a newer CLI version.
pub async fn show_welcome(w: &mut Wormhole, setup: &Setup) -> Result<(), Failure> {
    let welcome = w.wait_welcome().await?;
    for line in welcome::lines(&welcome, &setup.relay_url, env!("CARGO_PKG_VERSION")) {
        ui::say(&line);
    }
    Ok(())
}

/// What the commands need to know to tell the user how the other side runs.
pub struct Setup {
    /// The relay URL in use.
    pub relay_url: String,
    /// The app id in use.
    pub appid: String,
}

impl Setup {
    /// The global options the other side must repeat (those that differ from the defaults).
    pub fn other_side_options(&self) -> String {
        let mut s = String::new();
        if self.relay_url != DEFAULT_RELAY {
            s.push_str(&format!(
                " --relay-url {}",
                ui::shell_quote(&self.relay_url)
            ));
        }
        if self.appid != TEXT_APPID {
            s.push_str(&format!(" --appid {}", ui::shell_quote(&self.appid)));
        }
        s
    }
}
