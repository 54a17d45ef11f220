//! What the relay's welcome tells the user: its message of the day, and a note when it
//! advertises a newer CLI version than this one (as the Python CLI's `handle_welcome`).

use wormhole::wire::Welcome;

/// The lines to show on stderr for `welcome` from the relay at `relay_url`, for a CLI of
/// version `mine`.
///
/// The motd is shown exactly as the Python CLI does (`Server (at URL) says:` and the text,
/// each line indented by one space). The Python CLI warns whenever the advertised version
/// differs from its own; this one only when the advertised version is newer (dotted numbers
/// compared numerically), and never from a development build (`+` in the version), since a
/// relay may well advertise the older release of another implementation.
pub fn lines(welcome: &Welcome, relay_url: &str, mine: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(motd) = &welcome.motd {
        let text = motd.lines().collect::<Vec<_>>().join("\n ");
        out.push(format!("Server (at {relay_url}) says:\n {text}"));
    }
    if let Some(current) = &welcome.current_cli_version {
        if !mine.contains('+') && is_newer(current, mine) {
            out.push(format!(
                "Note: the relay says version {current} of the wormhole CLI is current, but \
                 this is {mine}; consider upgrading (errors may occur unless both sides run \
                 the same version)."
            ));
        }
    }
    out
}

/// Whether `theirs` is a newer version than `mine`: both read as dot-separated numbers
/// (a leading `v` and anything after `-` or `+` ignored), missing parts count as 0. A version
/// that does not read that way is never called newer.
fn is_newer(theirs: &str, mine: &str) -> bool {
    match (numbers(theirs), numbers(mine)) {
        (Some(mut t), Some(mut m)) => {
            let len = t.len().max(m.len());
            t.resize(len, 0);
            m.resize(len, 0);
            t > m
        }
        _ => false,
    }
}

fn numbers(version: &str) -> Option<Vec<u64>> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or("");
    if core.is_empty() {
        return None;
    }
    core.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(motd: Option<&str>, version: Option<&str>) -> Welcome {
        Welcome {
            motd: motd.map(str::to_string),
            current_cli_version: version.map(str::to_string),
            ..Welcome::default()
        }
    }

    #[test]
    fn the_motd_is_shown_as_the_python_cli_shows_it() {
        let w = welcome(Some("line one\nline two"), None);
        assert_eq!(
            lines(&w, "ws://r:4000/v1", "0.1.0"),
            vec!["Server (at ws://r:4000/v1) says:\n line one\n line two".to_string()]
        );
        assert!(lines(&welcome(None, None), "ws://r", "0.1.0").is_empty());
    }

    #[test]
    fn only_a_newer_advertised_version_is_mentioned() {
        let url = "ws://r";
        let newer = lines(&welcome(None, Some("0.2.0")), url, "0.1.0");
        assert_eq!(newer.len(), 1);
        assert!(newer[0].contains("version 0.2.0"), "{newer:?}");
        assert!(newer[0].contains("this is 0.1.0"), "{newer:?}");
        for (theirs, mine) in [
            ("0.1.0", "0.1.0"),
            ("0.0.9", "0.1.0"),
            ("0.1", "0.1.0"),
            ("garbage", "0.1.0"),
            ("", "0.1.0"),
            ("9.9.9", "0.1.0+dev.g1234"),
        ] {
            assert!(
                lines(&welcome(None, Some(theirs)), url, mine).is_empty(),
                "{theirs} vs {mine}"
            );
        }
        assert!(is_newer("v0.10.0", "0.9.9"));
        assert!(is_newer("1.0.0-rc1", "0.24.0"));
        assert!(is_newer("0.1.0.1", "0.1.0"));
    }
}
