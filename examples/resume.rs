//! An exchange that survives the program being killed: the seed's "wait for days while the
//! program restarts" scenario.
//!
//! ```sh
//! resume --relay URL --state FILE [--code CODE] TEXT   # start: sends TEXT
//! resume --relay URL --state FILE                      # resume the exchange saved in FILE
//! ```
//!
//! Starting without `--code` allocates a code and prints `Invitation Code: CODE`; with
//! `--code` it uses that code. The state is journaled to FILE (created `0600`: it holds the
//! code and the key exchange's secret) before anything leaves the program, so killing it at
//! any instant and running it again without TEXT finishes the exchange. Either way it prints
//! `Their data: ...` and exits 0 when done, and FILE is removed.
//!
//! `cargo run --example resume -- --relay ws://127.0.0.1:4000/v1 --state /tmp/x.json hello`

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use wormhole::storage::{Storage, StorageError};
use wormhole::{Code, Wormhole};

const APPID: &str = "example.com/resume";
/// The one key this program stores.
const KEY: &str = "exchange";

const USAGE: &str = "usage: resume --relay URL --state FILE [--code CODE] TEXT   (start)\n       \
                     resume --relay URL --state FILE                      (resume)";

struct Args {
    relay: String,
    state: PathBuf,
    code: Option<String>,
    text: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut relay, mut state, mut code, mut text) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--relay" => relay = Some(value("--relay")?),
            "--state" => state = Some(PathBuf::from(value("--state")?)),
            "--code" => code = Some(value("--code")?),
            "-h" | "--help" => return Err(String::new()),
            "--" => text = args.next(),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if text.is_some() => return Err("give TEXT as one argument (quote it)".into()),
            _ => text = Some(arg),
        }
    }
    let relay = relay.ok_or("--relay URL is required")?;
    let state = state.ok_or("--state FILE is required")?;
    if code.is_some() && text.is_none() {
        return Err("--code is for starting an exchange: give TEXT too".into());
    }
    Ok(Args {
        relay,
        state,
        code,
        text,
    })
}

/// A [`Storage`] of one value in one file, replaced atomically (write a `0600` temporary
/// file, sync it, rename it over FILE, sync the directory).
#[derive(Debug)]
struct FileStorage {
    path: PathBuf,
}

impl FileStorage {
    fn check(&self, key: &str) -> Result<(), StorageError> {
        if key == KEY {
            Ok(())
        } else {
            Err(StorageError::BadKey(key.to_string()))
        }
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |source| StorageError::Io { path, source }
    }
}

impl Storage for FileStorage {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check(key)?;
        match fs::read(&self.path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check(key)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(self.io(&tmp))?;
        file.write_all(value).map_err(self.io(&tmp))?;
        file.sync_all().map_err(self.io(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(self.io(&self.path))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable (best effort where directories cannot be opened).
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check(key)?;
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let exists = self.path.exists();
        Ok(if exists && KEY.starts_with(prefix) {
            vec![KEY.to_string()]
        } else {
            Vec::new()
        })
    }
}

async fn start(
    args: &Args,
    storage: Arc<dyn Storage>,
    text: &str,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    if storage.get(KEY)?.is_some() {
        return Err(format!(
            "{} already holds an unfinished exchange: resume it (run without TEXT) or delete it",
            args.state.display()
        )
        .into());
    }
    let mut w = Wormhole::new(APPID, &args.relay).with_journal(storage, KEY);
    match &args.code {
        // The receiving side: the code first, then the message.
        Some(code) => {
            w.set_code(Code::parse(code)?).await?;
            w.send(text.as_bytes()).await?;
        }
        // The allocating side: the message first (queued, and journaled, until the key), so
        // that a resumed run knows it is the allocating side.
        None => {
            w.send(text.as_bytes()).await?;
            let code = w.allocate_code(2).await?;
            println!("Invitation Code: {code}");
        }
    }
    finish(w).await
}

async fn resume(storage: Arc<dyn Storage>) -> Result<Vec<u8>, ResumeError> {
    let Some(mut w) = Wormhole::from_storage(storage.clone(), KEY)? else {
        return Err(ResumeError::Nothing);
    };
    match (w.code(), w.sent_messages()) {
        (Some(code), 1..) => println!("Invitation Code: {code}"),
        // Killed between sending and allocating: the allocating side, allocate now.
        (None, 1..) => {
            let code = w.allocate_code(2).await?;
            println!("Invitation Code: {code}");
        }
        // Killed before the message was saved: nothing to resume.
        (_, 0) => {
            storage.delete(KEY)?;
            return Err(ResumeError::Unstarted);
        }
    }
    Ok(finish(w).await?)
}

async fn finish(mut w: Wormhole) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let theirs = w.recv().await?;
    if let Err(e) = w.close().await {
        eprintln!("warning: the exchange finished but closing it failed: {e}");
    }
    Ok(theirs)
}

#[derive(Debug)]
enum ResumeError {
    Nothing,
    Unstarted,
    Other(Box<dyn std::error::Error>),
}

impl<E: Into<Box<dyn std::error::Error>>> From<E> for ResumeError {
    fn from(e: E) -> ResumeError {
        ResumeError::Other(e.into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("resume: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let storage: Arc<dyn Storage> = Arc::new(FileStorage {
        path: args.state.clone(),
    });
    let result = match &args.text {
        Some(text) => start(&args, storage, text)
            .await
            .map_err(ResumeError::Other),
        None => resume(storage).await,
    };
    match result {
        Ok(theirs) => {
            println!("Their data: {}", String::from_utf8_lossy(&theirs));
            ExitCode::SUCCESS
        }
        Err(ResumeError::Nothing) => {
            eprintln!(
                "resume: no saved exchange in {}; start one with TEXT",
                args.state.display()
            );
            ExitCode::from(1)
        }
        Err(ResumeError::Unstarted) => {
            eprintln!(
                "resume: the exchange saved in {} was killed before its message was saved; \
                 it is removed, start again with TEXT",
                args.state.display()
            );
            ExitCode::from(1)
        }
        Err(ResumeError::Other(e)) => {
            eprintln!("resume: {e}");
            ExitCode::from(1)
        }
    }
}
