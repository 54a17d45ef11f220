//! Interactive code entry for `wormhole receive` without a code.
//!
//! On a terminal, a line editor (rustyline) completes nameplates on <Tab> (listed live by the
//! relay) and then PGP words by position; the nameplate is claimed as soon as it is typed
//! with its `-`, as the Python CLI does, so the sender learns early that someone is coming.
//! Otherwise the code is read from one line of stdin.

use std::io::IsTerminal;
use std::sync::mpsc as std_mpsc;
use std::sync::Mutex;
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::config::{Behavior, CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use tokio::sync::mpsc;
use wormhole::code::{completions, Code, Nameplate};
use wormhole::Wormhole;

use crate::ui;
use crate::Failure;

/// How long a <Tab> waits for the relay's list of nameplates.
const LIST_WAIT: Duration = Duration::from_secs(3);

const PROMPT: &str = "Enter receive wormhole code: ";

/// A request from the line editor's thread to the wormhole.
enum Request {
    /// List the nameplates; reply on the channel.
    List(std_mpsc::Sender<Vec<String>>),
    /// Claim this nameplate.
    Claim(String),
}

/// The line editor's helper: completion and early claiming.
struct CodeHelper {
    words: usize,
    requests: mpsc::UnboundedSender<Request>,
    claimed: Mutex<Option<String>>,
}

impl CodeHelper {
    /// Claims the nameplate once the line starts with `DIGITS-`.
    fn claim_if_typed(&self, line: &str) {
        let Some((nameplate, _)) = line.split_once('-') else {
            return;
        };
        if Nameplate::new(nameplate).is_err() {
            return;
        }
        let Ok(mut claimed) = self.claimed.lock() else {
            return;
        };
        if claimed.is_none() {
            *claimed = Some(nameplate.to_string());
            let _ = self.requests.send(Request::Claim(nameplate.to_string()));
        }
    }

    fn nameplates(&self) -> Vec<String> {
        let (tx, rx) = std_mpsc::channel();
        if self.requests.send(Request::List(tx)).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(LIST_WAIT).unwrap_or_default()
    }
}

impl Completer for CodeHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let typed = line.get(..pos).unwrap_or(line);
        self.claim_if_typed(typed);
        let listed = if typed.contains('-') {
            Vec::new()
        } else {
            self.nameplates()
        };
        // The list shows the last word (or the nameplate); the line gets the whole code.
        let pairs = completions(typed, self.words, &listed)
            .into_iter()
            .map(|code| {
                let shown = code.trim_end_matches('-');
                let display = match shown.rsplit_once('-') {
                    Some((_, last)) => last.to_string(),
                    None => shown.to_string(),
                };
                Pair {
                    display,
                    replacement: code,
                }
            })
            .collect();
        Ok((0, pairs))
    }
}

impl Hinter for CodeHelper {
    type Hint = String;

    // Called on every change of the line: the place to notice a typed nameplate.
    fn hint(&self, line: &str, _pos: usize, _ctx: &Context<'_>) -> Option<String> {
        self.claim_if_typed(line);
        None
    }
}

impl Highlighter for CodeHelper {}
impl Validator for CodeHelper {}
impl Helper for CodeHelper {}

/// Asks for the code and sets it on `w` (claiming the nameplate early on a terminal).
pub async fn enter_code(w: &mut Wormhole, words: usize) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        let line = ui::read_line("").await?.unwrap_or_default();
        let code = parse(&line)?;
        w.set_code(code).await?;
        return Ok(());
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let helper = CodeHelper {
        words,
        requests: tx,
        claimed: Mutex::new(None),
    };
    let mut editor = thread_editor(helper)?;
    ui::say("(note: you can use <Tab> to complete words)");
    let mut line_done = tokio::task::spawn_blocking(move || editor.readline(PROMPT));

    let mut claimed: Option<Nameplate> = None;
    let mut trouble: Option<Failure> = None;
    let line = loop {
        tokio::select! {
            line = &mut line_done => break line,
            Some(req) = rx.recv() => match req {
                Request::List(reply) => {
                    let listed = match tokio::time::timeout(LIST_WAIT, w.list_nameplates()).await {
                        Ok(Ok(list)) => list.iter().map(|n| n.as_str().to_string()).collect(),
                        Ok(Err(e)) => {
                            trouble.get_or_insert(e.into());
                            Vec::new()
                        }
                        Err(_) => Vec::new(),
                    };
                    let _ = reply.send(listed);
                }
                Request::Claim(n) => {
                    if let (None, Ok(nameplate)) = (&claimed, Nameplate::new(&n)) {
                        tracing::debug!(nameplate = %nameplate, "claiming the typed nameplate");
                        match w.claim_nameplate(nameplate.clone()).await {
                            Ok(()) => claimed = Some(nameplate),
                            Err(e) => {
                                trouble.get_or_insert(e.into());
                            }
                        }
                    }
                }
            },
        }
    };
    let line = match line {
        Ok(Ok(line)) => line,
        Ok(Err(ReadlineError::Interrupted)) => return Err(Failure::Interrupted),
        Ok(Err(ReadlineError::Eof)) => {
            return Err(Failure::Usage("no code was entered".into()));
        }
        Ok(Err(e)) => return Err(Failure::Other(format!("cannot read the code: {e}"))),
        Err(e) => return Err(Failure::Other(format!("cannot read the code: {e}"))),
    };
    if let Some(failure) = trouble {
        return Err(failure);
    }
    let code = parse(&line)?;
    if let Some(n) = &claimed {
        if code.nameplate() != *n {
            return Err(Failure::Usage(format!(
                "the nameplate {n} was already claimed while you typed, so the code must \
                 start with {n}-; run `wormhole receive` again"
            )));
        }
    }
    w.set_code(code).await?;
    Ok(())
}

fn thread_editor(
    helper: CodeHelper,
) -> Result<Editor<CodeHelper, rustyline::history::DefaultHistory>, Failure> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .behavior(Behavior::PreferTerm)
        .auto_add_history(false)
        .build();
    let mut editor = Editor::with_config(config)
        .map_err(|e| Failure::Other(format!("cannot start the line editor: {e}")))?;
    editor.set_helper(Some(helper));
    Ok(editor)
}

fn parse(line: &str) -> Result<Code, Failure> {
    Code::parse(line).map_err(|e| {
        Failure::Usage(format!(
            "the code {:?} is not valid: {e}; a code looks like 7-guitarist-revenge",
            line.trim()
        ))
    })
}
