//! Wire tests: snapshot encodings of every message, parsing of every captured frame, and the
//! (de)serialisation vectors of test-vectors.md §5 and §9.

use serde_json::{json, Value};

use super::*;

fn client(message: ClientMessage) -> ClientFrame {
    ClientFrame::new(message)
}

fn server(message: ServerMessage) -> ServerFrame {
    ServerFrame {
        message,
        server_tx: Some(1795698622.2753868),
    }
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// Structural JSON equality, with numbers compared as floats to within a relative 1e-12
/// (serde_json's float parsing is not always exact to the last bit).
fn assert_json_close(a: &Value, b: &Value, context: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                "{x} != {y} in {context}"
            );
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{context}");
            for (x, y) in x.iter().zip(y) {
                assert_json_close(x, y, context);
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| {
                m.keys().cloned().collect::<std::collections::BTreeSet<_>>()
            };
            assert_eq!(keys(x), keys(y), "{context}");
            for (key, x) in x {
                assert_json_close(x, &y[key], context);
            }
        }
        _ => assert_eq!(a, b, "{context}"),
    }
}

// ----- snapshots of every variant's encoding ----------------------------------------------

#[test]
fn client_message_encodings() {
    let frames = [
        (
            "bind",
            client(ClientMessage::Bind {
                appid: "lothar.com/wormhole/text-or-file-xfer".into(),
                side: "0e95556248".into(),
                client_version: Some(json!(["rust", "0.1.0"])),
            }),
        ),
        (
            "bind_without_version",
            client(ClientMessage::Bind {
                appid: "appid".into(),
                side: "side1".into(),
                client_version: None,
            }),
        ),
        ("list", client(ClientMessage::List)),
        ("allocate", client(ClientMessage::Allocate)),
        (
            "claim",
            client(ClientMessage::Claim {
                nameplate: "3".into(),
            }),
        ),
        (
            "release",
            client(ClientMessage::Release {
                nameplate: Some("3".into()),
            }),
        ),
        (
            "release_without_nameplate",
            client(ClientMessage::Release { nameplate: None }),
        ),
        (
            "open",
            client(ClientMessage::Open {
                mailbox: "a46uh23vrp6wi".into(),
            }),
        ),
        (
            "add",
            client(ClientMessage::Add {
                phase: "pake".into(),
                body: "626f6479".into(),
            }),
        ),
        (
            "close",
            client(ClientMessage::Close {
                mailbox: Some("a46uh23vrp6wi".into()),
                mood: Some("happy".into()),
            }),
        ),
        (
            "close_bare",
            client(ClientMessage::Close {
                mailbox: None,
                mood: None,
            }),
        ),
        ("ping", client(ClientMessage::Ping { ping: 7 })),
        (
            "submit_permission",
            client(ClientMessage::SubmitPermission {
                method: "hashcash".into(),
                stamp: "1:6:210723:resource-string::rand:ctr".into(),
            }),
        ),
        (
            "claim_with_id",
            ClientFrame {
                message: ClientMessage::Claim {
                    nameplate: "3".into(),
                },
                id: Some("7a27".into()),
            },
        ),
    ];
    for (name, frame) in frames {
        let json = frame.to_json();
        insta::assert_snapshot!(format!("client_{name}"), json);
        assert_eq!(ClientFrame::parse(&json).expect("round trip"), frame);
    }
}

#[test]
fn server_message_encodings() {
    let frames = [
        (
            "welcome",
            server(ServerMessage::Welcome {
                welcome: Welcome {
                    your_address: Some(json!({"port": 49044, "ipv4": "127.0.0.1"})),
                    ..Welcome::default()
                },
            }),
        ),
        (
            "welcome_full",
            server(ServerMessage::Welcome {
                welcome: Welcome {
                    motd: Some("hello from motd".into()),
                    current_cli_version: Some("0.24.0".into()),
                    error: Some("server closed for maintenance".into()),
                    your_address: Some(json!({"port": 5, "ipv6": "::1"})),
                    permission_required: Some(json!({"none": {}})),
                },
            }),
        ),
        (
            "ack",
            server(ServerMessage::Ack {
                id: Some("b10f".into()),
            }),
        ),
        ("ack_null", server(ServerMessage::Ack { id: None })),
        (
            "nameplates",
            server(ServerMessage::Nameplates {
                nameplates: ["10", "2", "5"]
                    .into_iter()
                    .map(|id| NameplateEntry { id: id.into() })
                    .collect(),
            }),
        ),
        (
            "allocated",
            server(ServerMessage::Allocated {
                nameplate: "3".into(),
            }),
        ),
        (
            "claimed",
            server(ServerMessage::Claimed {
                mailbox: "a46uh23vrp6wi".into(),
            }),
        ),
        ("released", server(ServerMessage::Released)),
        (
            "message",
            server(ServerMessage::Message {
                side: "0e95556248".into(),
                phase: "pake".into(),
                body: "7b22".into(),
                server_rx: Some(1795698622.2898777),
                id: "dde1".into(),
            }),
        ),
        (
            "message_null_id",
            server(ServerMessage::Message {
                side: "sa".into(),
                phase: "0".into(),
                body: "".into(),
                server_rx: Some(1795698688.5),
                id: Value::Null,
            }),
        ),
        ("closed", server(ServerMessage::Closed)),
        ("pong", server(ServerMessage::Pong { pong: 7 })),
        (
            "error",
            server(ServerMessage::Error {
                error: "crowded".into(),
                orig: json!({"type": "claim", "nameplate": "123", "id": "c1"}),
            }),
        ),
        ("unknown", server(ServerMessage::Unknown)),
        (
            "without_server_tx",
            ServerFrame {
                message: ServerMessage::Released,
                server_tx: None,
            },
        ),
    ];
    for (name, frame) in frames {
        let json = frame.to_json();
        insta::assert_snapshot!(format!("server_{name}"), json);
        let back = ServerFrame::parse(&json).expect("round trip");
        assert_json_close(
            &serde_json::to_value(&back).expect("encode"),
            &value(&json),
            name,
        );
    }
}

// ----- every captured frame ---------------------------------------------------------------

/// `(file, direction is C>S, JSON text)` for every TEXT/BINARY frame of every capture.
fn captured_frames() -> Vec<(String, bool, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/captures");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("captures directory")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(".frames.txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let mut frames = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("capture");
        for line in text.lines() {
            let parts: Vec<&str> = line.trim_start().splitn(5, ' ').collect();
            let [_, _, dir, kind, rest] = parts[..] else {
                continue;
            };
            if !matches!(kind, "TEXT" | "BINARY") || !matches!(dir, "C>S" | "S>C") {
                continue;
            }
            let json = rest.strip_prefix("masked ").unwrap_or(rest);
            frames.push((name.clone(), dir == "C>S", json.to_owned()));
        }
    }
    frames
}

/// The deliberately malformed commands of the run2 server probes (test-vectors.md §7), by
/// their text: no type, unknown types, a bind without side, a claim without nameplate and a
/// ping without ping.
const MALFORMED_PROBES: [&str; 6] = [
    r#"{"id": "0003"}"#,
    r#"{"type": "bogus", "id": "0004"}"#,
    r#"{"type": "bind", "appid": "test/app", "id": "0005"}"#,
    r#"{"type": "claim", "id": "000c"}"#,
    r#"{"type": "bogus2", "id": "000d"}"#,
    r#"{"type": "ping"}"#,
];

#[test]
fn every_captured_frame_parses() {
    let frames = captured_frames();
    let (mut clients, mut servers, mut refused) = (0, 0, Vec::new());
    for (file, to_server, text) in &frames {
        let context = format!("{file}: {text}");
        let original = value(text);
        if *to_server {
            match ClientFrame::parse(text) {
                Ok(frame) => {
                    // Nothing is lost: the re-encoded frame is the original object.
                    assert_json_close(&value(&frame.to_json()), &original, &context);
                    clients += 1;
                }
                Err(_) => refused.push(text.as_str()),
            }
        } else {
            let frame = ServerFrame::parse(text).unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_ne!(frame.message, ServerMessage::Unknown, "{context}");
            assert!(frame.server_tx.is_some(), "{context}");
            assert_json_close(
                &serde_json::to_value(&frame).expect("encode"),
                &original,
                &context,
            );
            servers += 1;
        }
    }
    // Only the malformed probes fail, each of them does, and all of them are in run2.
    assert_eq!(refused, MALFORMED_PROBES);
    assert_eq!(servers, 313);
    assert_eq!(clients + refused.len(), 151);
}

// ----- test-vectors.md §9 and §5 ----------------------------------------------------------

#[test]
fn client_messages_serialise_to_the_reference_objects() {
    let cases = [
        (
            ClientMessage::Bind {
                appid: "appid".into(),
                side: "side1".into(),
                client_version: None,
            },
            json!({"type": "bind", "appid": "appid", "side": "side1"}),
        ),
        (ClientMessage::List, json!({"type": "list"})),
        (ClientMessage::Allocate, json!({"type": "allocate"})),
        (
            ClientMessage::Claim {
                nameplate: "nameplate1".into(),
            },
            json!({"type": "claim", "nameplate": "nameplate1"}),
        ),
        (
            ClientMessage::Release {
                nameplate: Some("nameplate1".into()),
            },
            json!({"type": "release", "nameplate": "nameplate1"}),
        ),
        (
            ClientMessage::Open {
                mailbox: "mailbox1".into(),
            },
            json!({"type": "open", "mailbox": "mailbox1"}),
        ),
        (
            ClientMessage::Add {
                phase: "phase1".into(),
                body: hex::encode(b"body"),
            },
            json!({"type": "add", "phase": "phase1", "body": "626f6479"}),
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(value(&client(message).to_json()), expected);
    }
    for mood in ["happy", "errory", "scary"] {
        let message = ClientMessage::Close {
            mailbox: Some("mailbox1".into()),
            mood: Some(mood.into()),
        };
        assert_eq!(
            value(&client(message).to_json()),
            json!({"type": "close", "mailbox": "mailbox1", "mood": mood})
        );
    }
}

#[test]
fn reference_inbound_messages_parse() {
    let welcome = |text: &str| match ServerFrame::parse(text).expect(text).message {
        ServerMessage::Welcome { welcome } => welcome,
        other => panic!("not a welcome: {other:?}"),
    };
    let frame = ServerFrame::parse(r#"{"type": "welcome", "welcome": {}, "server_tx": 1234.56}"#)
        .expect("welcome");
    assert_eq!(frame.server_tx, Some(1234.56));
    assert_eq!(
        welcome(r#"{"type": "welcome", "welcome": {} }"#),
        Welcome::default()
    );
    assert_eq!(
        welcome(
            r#"{"type": "welcome", "welcome": { "motd": "hello world" }, "server_tx": 1234.56 }"#
        )
        .motd
        .as_deref(),
        Some("hello world")
    );
    assert_eq!(
        ServerFrame::parse(r#"{"type": "ack", "id": null, "server_tx": 1234.56}"#)
            .expect("ack")
            .message,
        ServerMessage::Ack { id: None }
    );
    let permissions = json!({ "none": {}, "hashcash": { "bits": 6, "resource": "resource-string" }, "dark-ritual": { "hocrux": true } });
    let text =
        json!({"type": "welcome", "welcome": {"permission-required": permissions}}).to_string();
    assert_eq!(welcome(&text).permission_required, Some(permissions));
}

#[test]
fn reference_message_frame_parses() {
    let text = r#"{"body": "7b2270616b655f7631223a22353361346566366234363434303364376534633439343832663964373236646538396462366631336632613832313537613335646562393562366237633536353533227d", "server_rx": 1523468188.293486, "id": null, "phase": "pake", "server_tx": 1523498654.753594, "type": "message", "side": "side1"}"#;
    let frame = ServerFrame::parse(text).expect("message frame");
    assert_eq!(frame.server_tx, Some(1523498654.753594));
    let ServerMessage::Message {
        side,
        phase,
        body,
        server_rx,
        id,
    } = frame.message
    else {
        panic!("not a message: {frame:?}");
    };
    assert_eq!(
        (side.as_str(), phase.as_str(), id),
        ("side1", "pake", Value::Null)
    );
    assert_eq!(server_rx, Some(1523468188.293486));
    let decoded = hex::decode(body).expect("hex body");
    assert_eq!(
        value(std::str::from_utf8(&decoded).expect("utf-8"))["pake_v1"],
        "53a4ef6b464403d7e4c49482f9d726de89db6f13f2a82157a35deb95b6b7c56553"
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let frame = ClientFrame::parse(
        r#"{"type": "claim", "nameplate": "4", "id": "x", "extra": [1], "future": {"a": 1}}"#,
    )
    .expect("claim");
    assert_eq!(
        frame,
        ClientFrame {
            message: ClientMessage::Claim {
                nameplate: "4".into()
            },
            id: Some("x".into()),
        }
    );
    let frame = ServerFrame::parse(
        r#"{"type": "claimed", "mailbox": "m", "server_rx": 1.0, "id": null, "new": true, "server_tx": 2.5}"#,
    )
    .expect("claimed");
    assert_eq!(
        frame,
        ServerFrame {
            message: ServerMessage::Claimed {
                mailbox: "m".into()
            },
            server_tx: Some(2.5),
        }
    );
    let welcome = ServerFrame::parse(
        r#"{"type": "welcome", "welcome": {"your-address": {"port": 1, "ipv4": "10.0.0.1"}, "you": 1}}"#,
    )
    .expect("welcome");
    assert!(matches!(welcome.message, ServerMessage::Welcome { .. }));
}

#[test]
fn unknown_server_type_is_unknown() {
    for text in [
        r#"{"type": "permission-granted", "server_tx": 1.0}"#,
        r#"{"type": "something-new", "payload": {"x": [1, 2]}}"#,
    ] {
        let frame = ServerFrame::parse(text).expect(text);
        assert_eq!(frame.message, ServerMessage::Unknown, "{text}");
    }
    // Unknown client types are refused: the relay core reports them itself.
    assert!(ClientFrame::parse(r#"{"type": "bogus"}"#).is_err());
    assert!(ServerFrame::parse(r#"{"no": "type"}"#).is_err());
}

/// test-vectors.md §9: the Rust client's hashcash frame, as an exact string.
#[test]
fn submit_permission_matches_the_rust_client_exactly() {
    let frame = ClientFrame::new(ClientMessage::SubmitPermission {
        method: "hashcash".into(),
        stamp: "stamp".into(),
    });
    assert_eq!(
        frame.to_json(),
        r#"{"type":"submit-permission","method":"hashcash","stamp":"stamp"}"#
    );
}

/// Some clients number their commands: the relay echoes the `id` as sent, and a message with a
/// numeric (or any other JSON) id must still parse, or every message of that peer is lost.
#[test]
fn a_message_echo_with_a_numeric_or_structured_id_parses() {
    for (id, expected) in [
        ("17", Value::from(17)),
        ("\"ab12\"", Value::from("ab12")),
        ("{\"n\": [1]}", serde_json::json!({"n": [1]})),
        ("null", Value::Null),
    ] {
        let text = format!(
            r#"{{"type": "message", "side": "s", "phase": "0", "body": "00", "server_rx": 1.5, "id": {id}}}"#
        );
        let frame = ServerFrame::parse(&text).expect("message");
        let ServerMessage::Message { id: got, phase, .. } = frame.message else {
            panic!("not a message: {text}");
        };
        assert_eq!(got, expected);
        assert_eq!(phase, "0");
    }
}
