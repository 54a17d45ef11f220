//! What the user sees: the spinner, the QR code, prompts, messages and escaping.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use crate::Failure;

/// Whether stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Prints an error message on stderr, the Python CLI's way (`ERROR: ...`).
pub fn error(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "ERROR: {message}");
}

/// Prints a line on stderr.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// A status line with a spinner on stderr; shown only when enabled and stderr is a terminal,
/// cleared when dropped.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner showing `message`, or nothing if `enabled` is false or stderr is not a
    /// terminal.
    pub fn new(enabled: bool, message: &str) -> Progress {
        let bar = if enabled && stderr_is_tty() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                .with_finish(ProgressFinish::AndClear);
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar.set_message(message.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The QR code of `wormhole-transfer:CODE` as text, for a terminal (dark background).
pub fn qr(code: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let qr = qrcode::QrCode::new(format!("wormhole-transfer:{code}").as_bytes()).ok()?;
    Some(
        qr.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Quotes `s` for a POSIX shell, if needed.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Reads one line from stdin (without its line ending) after printing `prompt` on stderr;
/// `None` at end of input. Runs on a blocking thread.
pub async fn read_line(prompt: &str) -> Result<Option<String>, Failure> {
    if !prompt.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
    }
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => {
                let trimmed = line.strip_suffix('\n').unwrap_or(&line);
                let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
                Ok(Some(trimmed.to_string()))
            }
            Err(e) => Err(e),
        }
    })
    .await;
    match read {
        Ok(Ok(line)) => Ok(line),
        Ok(Err(e)) => Err(Failure::Other(format!("cannot read from stdin: {e}"))),
        Err(e) => Err(Failure::Other(format!("cannot read from stdin: {e}"))),
    }
}

/// Reads all of stdin as UTF-8 text.
pub async fn read_all_stdin() -> Result<String, Failure> {
    let read = tokio::task::spawn_blocking(|| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map(|_| bytes)
    })
    .await;
    match read {
        Ok(Ok(bytes)) => String::from_utf8(bytes)
            .map_err(|_| Failure::Usage("the text on stdin is not valid UTF-8".into())),
        Ok(Err(e)) => Err(Failure::Other(format!("cannot read from stdin: {e}"))),
        Err(e) => Err(Failure::Other(format!("cannot read from stdin: {e}"))),
    }
}

/// Shows the verifier and asks `yes`/`no` until one is given, as the Python CLI does.
/// Drop any spinner before calling this.
pub async fn confirm_verifier(verifier: &str) -> Result<bool, Failure> {
    let prompt = format!("Verifier {verifier}. ok? (yes/no): ");
    loop {
        match read_line(&prompt).await? {
            None => {
                return Err(Failure::Usage(
                    "cannot ask whether the verifier is ok: stdin is closed; \
                     answer yes or no on stdin, or drop --verify"
                        .into(),
                ))
            }
            Some(a) => match a.trim().to_lowercase().as_str() {
                "yes" | "y" => return Ok(true),
                "no" | "n" => return Ok(false),
                _ => say("Please answer yes or no."),
            },
        }
    }
}

/// A size the way the Python CLI shows it (`humanize.naturalsize`): `11 Bytes`, `1.2 kB`.
pub fn natural_size(bytes: usize) -> String {
    match bytes {
        1 => "1 Byte".into(),
        n if n < 1000 => format!("{n} Bytes"),
        n => {
            let mut v = n as f64 / 1000.0;
            for unit in ["kB", "MB", "GB", "TB"] {
                if v < 1000.0 {
                    return format!("{v:.1} {unit}");
                }
                v /= 1000.0;
            }
            format!("{v:.1} PB")
        }
    }
}

/// Python's `repr(text)[1:-1]`: what the Python CLI prints for a received text (`--escape`).
///
/// Quotes: like Python, the repr is single-quoted unless the text has a `'` and no `"`; only
/// the quote in use is escaped. Characters Python deems unprintable are escaped as `\xNN`,
/// `\uNNNN` or `\UNNNNNNNN`; that test is approximated (controls, separators other than the
/// space, format and private-use characters, and surrogates).
pub fn python_escape(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !python_printable(c) => {
                let n = u32::from(c);
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn python_printable(c: char) -> bool {
    let n = u32::from(c);
    if c == ' ' {
        return true;
    }
    if c.is_control() {
        return false;
    }
    !matches!(n,
        0xA0 | 0xAD | 0x034F | 0x061C | 0x1680 | 0x180E
        | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x2064 | 0x2066..=0x206F
        | 0x3000 | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF
        | 0xE0001 | 0xE0020..=0xE007F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_pythons() {
        assert_eq!(natural_size(1), "1 Byte");
        assert_eq!(natural_size(11), "11 Bytes");
        assert_eq!(natural_size(999), "999 Bytes");
        assert_eq!(natural_size(1234), "1.2 kB");
        assert_eq!(natural_size(2_500_000), "2.5 MB");
    }

    #[test]
    fn escaping_reads_like_python_repr() {
        assert_eq!(python_escape("a\nb\tc\\"), "a\\nb\\tc\\\\");
        assert_eq!(python_escape("it's"), "it's");
        assert_eq!(python_escape("it's \"x\""), "it\\'s \"x\"");
        assert_eq!(python_escape("caf\u{e9} \u{1F600}"), "caf\u{e9} \u{1F600}");
        assert_eq!(
            python_escape("\u{0}\u{7f}\u{a0}\u{2028}"),
            "\\x00\\x7f\\xa0\\u2028"
        );
    }

    #[test]
    fn quoting_for_the_shell() {
        assert_eq!(
            shell_quote("ws://127.0.0.1:4000/v1"),
            "ws://127.0.0.1:4000/v1"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn qr_codes_render() {
        let q = qr("7-guitarist-revenge").unwrap();
        assert!(q.lines().count() > 10);
    }
}
