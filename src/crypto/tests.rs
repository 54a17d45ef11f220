//! Unit tests: HKDF known answers that need a salt or a non-32-byte IKM (test-vectors.md §1,
//! §2.2), and error paths.

use super::keys::{derive_phase_key_ikm, hkdf_sha256, phase_purpose};
use super::*;
use hkdf::Hkdf;
use sha2::Sha256;

const APPID: &str = "lothar.com/wormhole/text-or-file-xfer";

fn hkdf_salted(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut okm = vec![0u8; len];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .unwrap();
    okm
}

// test-vectors.md §1.1: IKM "secret", L = 64, every prefix 0..63 too.
const KAT_1_1: [(&str, &str, &str); 4] = [
    ("", "", "2f34e5ff91ec85d53ca9b543683174d0cf550b60d5f52b24c97b386cfcf6cbbf9cfd42fd37e1e5a214d15f03058d7fee63dc28f564b7b9fe3da514f80daad4bf"),
    ("", "context", "c24c303a1adfb4c3e2b092e6254ed481c41d8955ba8ec3f6a1473493a60c957b31b723018ca75557214d3d5c61c0c7a5315b103b21ff00cb03ebe023dc347a47"),
    ("salt", "", "f1156507c39b0e326159e778696253122de430899a8df2484040a85a5f95ceb1dfca555d4cc603bdf7153ed1560de8cbc3234b27a6d2be8e8ca202d90649679a"),
    ("salt", "context", "61a4f201a867bcc12381ddb180d27074408d03ee9d5750855e5a12d967fa060f10336ead9370927eaabb0d60b259346ee5f57eb7ceba8c72f1ed3f2932b1bf19"),
];

#[test]
fn hkdf_kat_1_1_all_prefixes() {
    for (salt, info, okm_hex) in KAT_1_1 {
        let full = hex::decode(okm_hex).unwrap();
        assert_eq!(full.len(), 64);
        for len in 0..=64 {
            let got = hkdf_salted(salt.as_bytes(), b"secret", info.as_bytes(), len);
            assert_eq!(got, full[..len], "salt={salt:?} info={info:?} len={len}");
            if salt.is_empty() {
                // The no-salt variants go through the production helper.
                let ours = hkdf_sha256(b"secret", info.as_bytes(), len);
                assert_eq!(ours, full[..len], "ours info={info:?} len={len}");
            }
        }
    }
}

#[test]
fn hkdf_kat_1_2_short() {
    assert_eq!(hex::encode(hkdf_sha256(&[0x01], &[0x02], 4)), "f4a855e4");
    assert_eq!(hex::encode(hkdf_sha256(&[0x01], b"", 4)), "be7e83fb");
    // An empty salt, a single zero byte and 32 zero bytes are all equivalent to no salt.
    for salt in [&[][..], &[0u8][..], &[0u8; 32][..]] {
        assert_eq!(
            hex::encode(hkdf_salted(salt, &[0x01], &[0x02], 4)),
            "f4a855e4"
        );
    }
    assert_eq!(
        hex::encode(hkdf_salted(&[0x01], &[0x01], b"", 32)),
        "f0f7dcf9fe847ae58a24e82b13737c52bf6a4a45810f5d819ec3932eaa601290"
    );
    assert_eq!(
        hex::encode(hkdf_sha256(&[0x0b; 22], b"", 42)),
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    );
}

#[test]
fn hkdf_length_is_clamped_not_panicking() {
    let key = Key::from_bytes([9u8; 32]);
    assert_eq!(derive_key(&key, b"x", 0).len(), 0);
    assert_eq!(
        derive_key(&key, b"x", MAX_DERIVED_KEY_LEN).len(),
        MAX_DERIVED_KEY_LEN
    );
    let clamped = derive_key(&key, b"x", MAX_DERIVED_KEY_LEN + 1);
    assert_eq!(clamped, derive_key(&key, b"x", MAX_DERIVED_KEY_LEN));
    assert_eq!(
        derive_key(&key, b"x", usize::MAX).len(),
        MAX_DERIVED_KEY_LEN
    );
}

#[test]
fn phase_key_non_32_byte_ikm() {
    // test-vectors.md §2.2, derive_phase_key(b"key", "side", "phase1").
    assert_eq!(
        hex::encode(derive_phase_key_ikm(b"key", "side", "phase1").as_bytes()),
        "fe9315729668a6278a97449dc99a5f4c2102a668c6853338152906bb75526a96"
    );
}

#[test]
fn phase_purpose_uses_raw_digests() {
    let p = phase_purpose("side", "phase");
    assert_eq!(p.len(), 79);
    assert_eq!(&p[..15], b"wormhole:phase:");
    assert_eq!(
        hex::encode(&p[15..47]),
        "ea7bf4bb723041e7d63fe6c74dc46c048c617eb49a454a1cd6edbf34d05a418e"
    );
    assert_eq!(p[47..], <Sha256 as sha2::Digest>::digest(b"phase")[..]);
}

// ----- pake body parsing error paths (test-vectors.md §5 and protocol.md §7.2) -----

const GOOD_MSG: &str = "537631dcfd0d3ad8a04b4f51d953a145c8e8bfc780dda984794ef4fa6ee60c9f6e";

fn assert_bad_pake(body: &[u8]) {
    match parse_pake_body(body) {
        Err(CryptoError::BadPakeMessage(_)) => {}
        other => panic!("expected BadPakeMessage for {body:?}, got {other:?}"),
    }
    // finish must reject it the same way, without panicking.
    let p = Pake::start("1-a-b", APPID, [3u8; 32]);
    assert!(matches!(
        p.finish(body),
        Err(CryptoError::BadPakeMessage(_))
    ));
}

#[test]
fn parse_pake_body_accepts_compact_and_spaced() {
    let want = hex::decode(GOOD_MSG).unwrap();
    let compact = format!("{{\"pake_v1\":\"{GOOD_MSG}\"}}");
    let spaced = format!("{{ \"pake_v1\" : \"{GOOD_MSG}\" , \"extra\": 1 }}");
    assert_eq!(parse_pake_body(compact.as_bytes()).unwrap().to_vec(), want);
    assert_eq!(parse_pake_body(spaced.as_bytes()).unwrap().to_vec(), want);
}

#[test]
fn parse_pake_body_rejects_malformed() {
    assert_bad_pake(b"");
    assert_bad_pake(b"not json");
    assert_bad_pake(b"\xff\xfe");
    assert_bad_pake(b"[]");
    assert_bad_pake(b"\"pake_v1\"");
    assert_bad_pake(b"{}");
    assert_bad_pake(format!("{{\"pake_v2\": \"{GOOD_MSG}\"}}").as_bytes());
    assert_bad_pake(b"{\"pake_v1\": 5}");
    assert_bad_pake(b"{\"pake_v1\": null}");
    // odd-length hex
    assert_bad_pake(format!("{{\"pake_v1\": \"{}\"}}", &GOOD_MSG[..65]).as_bytes());
    // non-hex characters
    assert_bad_pake(format!("{{\"pake_v1\": \"zz{}\"}}", &GOOD_MSG[2..]).as_bytes());
    // 32 bytes (side byte missing)
    assert_bad_pake(format!("{{\"pake_v1\": \"{}\"}}", &GOOD_MSG[2..]).as_bytes());
    // 34 bytes
    assert_bad_pake(format!("{{\"pake_v1\": \"{GOOD_MSG}00\"}}").as_bytes());
    // empty
    assert_bad_pake(b"{\"pake_v1\": \"\"}");
    // side 'A' and 'B' (asymmetric) are rejected
    assert_bad_pake(format!("{{\"pake_v1\": \"41{}\"}}", &GOOD_MSG[2..]).as_bytes());
    assert_bad_pake(format!("{{\"pake_v1\": \"42{}\"}}", &GOOD_MSG[2..]).as_bytes());
}

#[test]
fn finish_rejects_invalid_point() {
    // y = 2 is not the y-coordinate of any point on edwards25519.
    let mut msg = [0u8; 33];
    msg[0] = b'S';
    msg[1] = 2;
    let p = Pake::start("1-a-b", APPID, [3u8; 32]);
    assert!(matches!(
        p.finish(&build_pake_body(&msg)),
        Err(CryptoError::BadPakeMessage(_))
    ));
}

#[test]
fn finish_rejects_reflection() {
    let p = Pake::start("1-a-b", APPID, [3u8; 32]);
    let own = p.body();
    assert!(matches!(p.finish(&own), Err(CryptoError::Reflection)));
    // Also when the reflected body is re-serialised compactly.
    let p = Pake::start("1-a-b", APPID, [3u8; 32]);
    let compact = format!("{{\"pake_v1\":\"{}\"}}", hex::encode(p.message()));
    assert!(matches!(
        p.finish(compact.as_bytes()),
        Err(CryptoError::Reflection)
    ));
}

#[test]
fn open_rejects_short_bodies() {
    let key = Key::from_bytes([5u8; 32]);
    let body = vec![0u8; 40];
    for len in 0..40 {
        assert!(
            matches!(open(&key, &body[..len]), Err(CryptoError::Decrypt)),
            "len {len}"
        );
    }
    // 40 zero bytes: long enough, but the MAC is wrong.
    assert!(matches!(open(&key, &body), Err(CryptoError::Decrypt)));
    // A genuine empty-plaintext box is exactly 40 bytes and opens.
    let sealed = seal(&key, &[1u8; 24], b"");
    assert_eq!(sealed.len(), OVERHEAD);
    assert_eq!(open(&key, &sealed).unwrap(), b"");
}

#[test]
fn debug_is_redacted() {
    let bytes = [0xabu8; 32];
    let key = Key::from_bytes(bytes);
    let dbg = format!("{key:?}");
    assert_eq!(dbg, "Key(<redacted>)");
    assert!(!dbg.to_lowercase().contains("ab, ") && !dbg.contains("171"));

    let code = "7-guitarist-revenge";
    let pake = Pake::start(code, APPID, [0x11u8; 32]);
    let dbg = format!("{pake:?} {pake:#?}");
    assert!(!dbg.contains("guitarist"), "{dbg}");
    assert!(!dbg.contains(&hex::encode(pake.message())), "{dbg}");
    assert!(!dbg.contains("17, 17"), "{dbg}");
    let other = Pake::start(code, APPID, [0x22u8; 32]);
    let shared = pake.finish(&other.body()).unwrap();
    let dbg = format!("{shared:?}");
    assert_eq!(dbg, "Key(<redacted>)");
    assert!(!dbg.contains(&hex::encode(shared.as_bytes())));
}

#[test]
fn error_messages_contain_no_secrets() {
    let p = Pake::start("9-amulet-wallet", APPID, [4u8; 32]);
    let err = p
        .finish(format!("{{\"pake_v1\": \"41{}\"}}", &GOOD_MSG[2..]).as_bytes())
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("amulet"), "{text}");
    assert!(text.starts_with("bad pake message"), "{text}");
    assert_eq!(
        CryptoError::Decrypt.to_string(),
        "decryption failed (wrong key or corrupted message)"
    );
}
