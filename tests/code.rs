//! Tests of `wormhole::code`: generation, parsing, serde, the word lists and completion, with the
//! vectors of `shared/test-vectors.md` §8.

use std::collections::VecDeque;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wormhole::code::wordlist::{even_index, even_word, odd_index, odd_word, word_completions};
use wormhole::code::{completions, Code, CodeError, Nameplate, DEFAULT_WORDS, MAX_NAMEPLATE_LEN};

/// An RNG that hands out fixed bytes, one per `fill_bytes` call of one byte (how
/// `Code::generate` draws each word), and fails the test if asked for anything else.
struct FakeBytes(VecDeque<u8>);

impl FakeBytes {
    fn new(bytes: &[u8]) -> Self {
        FakeBytes(bytes.iter().copied().collect())
    }
}

impl RngCore for FakeBytes {
    fn next_u32(&mut self) -> u32 {
        panic!("generate must draw bytes with fill_bytes, not next_u32")
    }
    fn next_u64(&mut self) -> u64 {
        panic!("generate must draw bytes with fill_bytes, not next_u64")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert_eq!(dest.len(), 1, "one byte per word");
        for d in dest {
            *d = self.0.pop_front().expect("the fake ran out of bytes");
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn np(s: &str) -> Nameplate {
    Nameplate::new(s).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Checks each word of `code` against the list its position requires.
fn assert_alternation(code: &Code, n: usize) {
    let words: Vec<&str> = code.words().split('-').collect();
    assert_eq!(words.len(), n, "{code}");
    for (i, w) in words.iter().enumerate() {
        if i % 2 == 0 {
            assert!(
                odd_index(w).is_some(),
                "word {i} {w:?} of {code} not in odd list"
            );
            assert!(even_index(w).is_none());
        } else {
            assert!(
                even_index(w).is_some(),
                "word {i} {w:?} of {code} not in even list"
            );
            assert!(odd_index(w).is_none());
        }
    }
}

// ---- word lists -------------------------------------------------------------------------

#[test]
fn first_and_last_words() {
    assert_eq!(even_word(0), "aardvark");
    assert_eq!(odd_word(0), "adroitness");
    assert_eq!(even_word(255), "zulu");
    assert_eq!(odd_word(255), "yucatan");
    assert_eq!(odd_word(0x04), "alkali");
    assert_eq!(even_word(0x10), "assume");
}

#[test]
fn index_lookup_is_case_insensitive() {
    assert_eq!(even_index("Zulu"), Some(255));
    assert_eq!(odd_index("YUCATAN"), Some(255));
    assert_eq!(odd_index("zulu"), None);
    assert_eq!(even_index("purple"), None);
}

#[test]
fn captured_codes_alternate_lists() {
    for c in [
        "3-company-befriend",
        "2-monument-crackdown",
        "9-integrate-willow",
        "9-amulet-wallet",
        "7-determine-lockup",
    ] {
        let code = Code::parse(c).unwrap();
        assert_alternation(&code, 2);
    }
}

// ---- generation -------------------------------------------------------------------------

#[test]
fn generate_vector_alkali_assume() {
    let mut rng = FakeBytes::new(&[0x04, 0x10]);
    let code = Code::generate(&np("4"), 2, &mut rng);
    assert_eq!(code.as_str(), "4-alkali-assume");
    assert_eq!(code.words(), "alkali-assume");
    assert!(rng.0.is_empty());
}

#[test]
fn generate_uses_one_byte_per_word_in_order() {
    let mut rng = FakeBytes::new(&[0, 0, 255, 255, 0x04]);
    let code = Code::generate(&np("17"), 5, &mut rng);
    assert_eq!(code.as_str(), "17-adroitness-aardvark-yucatan-zulu-alkali");
}

#[test]
fn generate_counts_and_alternation() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for n in [1, 2, 3, 5] {
        let code = Code::generate(&np("4"), n, &mut rng);
        assert_alternation(&code, n);
        assert_eq!(Code::parse(code.as_str()), Ok(code));
    }
    assert_eq!(DEFAULT_WORDS, 2);
}

#[test]
fn generate_zero_words_gives_one() {
    let mut rng = FakeBytes::new(&[0x04]);
    let code = Code::generate(&np("4"), 0, &mut rng);
    assert_eq!(code.as_str(), "4-alkali");
}

#[test]
fn thousand_random_codes_parse_back() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    for _ in 0..1000 {
        let nameplate = np(&rng.gen_range(0u32..1_000_000).to_string());
        let n = rng.gen_range(1..=6);
        let code = Code::generate(&nameplate, n, &mut rng);
        let parsed = Code::parse(&code.to_string()).unwrap();
        assert_eq!(parsed, code);
        assert_eq!(parsed.nameplate(), nameplate);
        assert_alternation(&parsed, n);
    }
}

// ---- parsing ----------------------------------------------------------------------------

#[test]
fn parse_valid() {
    let c = Code::parse("4-purple-sausages").unwrap();
    assert_eq!(c.nameplate(), np("4"));
    assert_eq!(c.words(), "purple-sausages");
    assert_eq!(c.as_str(), "4-purple-sausages");
    assert_eq!(c.to_string(), "4-purple-sausages");

    let c: Code = "123-Hello".parse().unwrap();
    assert_eq!(c.words(), "Hello", "case is kept: it's a password");
    assert_eq!(c.nameplate().as_str(), "123");

    // Only the first '-' separates the nameplate.
    assert_eq!(Code::parse("0-a-b-c").unwrap().words(), "a-b-c");
    // Non-ASCII words are fine.
    assert_eq!(Code::parse("5-café").unwrap().words(), "café");
    // Trimmed at both ends.
    assert_eq!(Code::parse(" 4-a-b").unwrap().as_str(), "4-a-b");
    assert_eq!(Code::parse("4-a-b\r\n").unwrap().as_str(), "4-a-b");
}

#[test]
fn parse_errors() {
    assert_eq!(Code::parse(""), Err(CodeError::Empty));
    assert_eq!(Code::parse("  \n"), Err(CodeError::Empty));
    assert_eq!(
        Code::parse("abc-def"),
        Err(CodeError::BadNameplate("abc".into()))
    );
    assert_eq!(Code::parse("4"), Err(CodeError::NoWords));
    assert_eq!(Code::parse("4-"), Err(CodeError::NoWords));
    assert_eq!(Code::parse("4 -a-b"), Err(CodeError::ContainsSpace));
    assert_eq!(Code::parse("4-a b"), Err(CodeError::ContainsSpace));
    assert_eq!(Code::parse("4-a\tb"), Err(CodeError::ContainsSpace));
    assert_eq!(Code::parse("-a-b"), Err(CodeError::EmptyNameplate));
    assert_eq!(Code::parse("4-a--b"), Err(CodeError::EmptyWord));
    assert_eq!(Code::parse("4-a-"), Err(CodeError::EmptyWord));
    assert_eq!(
        Code::parse("４-a"),
        Err(CodeError::BadNameplate("４".into()))
    );
    assert_eq!(
        Code::parse("+4-a"),
        Err(CodeError::BadNameplate("+4".into()))
    );

    let max = "9".repeat(MAX_NAMEPLATE_LEN);
    assert!(Code::parse(&format!("{max}-a")).is_ok());
    assert_eq!(
        Code::parse(&format!("{max}9-a")),
        Err(CodeError::NameplateTooLong(MAX_NAMEPLATE_LEN + 1))
    );
}

#[test]
fn error_messages() {
    assert_eq!(
        CodeError::BadNameplate("abc".into()).to_string(),
        "the nameplate (the part before the first '-') must be decimal digits, got \"abc\""
    );
    // No message carries the words.
    for bad in [
        "4 secret-words",
        "4-secret--words",
        "4-secretwords-",
        "-secret-words",
    ] {
        let err = Code::parse(bad).unwrap_err();
        let msg = err.to_string();
        let dbg = format!("{err:?}");
        assert!(
            !msg.contains("secret") && !dbg.contains("secret"),
            "{msg} / {dbg}"
        );
    }
}

#[test]
fn from_parts() {
    let c = Code::from_parts(&np("4"), "purple-sausages").unwrap();
    assert_eq!(c, Code::parse("4-purple-sausages").unwrap());
    assert_eq!(Code::from_parts(&np("4"), ""), Err(CodeError::NoWords));
    assert_eq!(Code::from_parts(&np("4"), "a-"), Err(CodeError::EmptyWord));
    assert_eq!(
        Code::from_parts(&np("4"), " a"),
        Err(CodeError::ContainsSpace)
    );
}

#[test]
fn nameplate_validation() {
    assert_eq!(np("007").as_str(), "007");
    assert_eq!(np("42").to_string(), "42");
    assert_eq!("42".parse::<Nameplate>(), Ok(np("42")));
    assert_eq!(Nameplate::new(""), Err(CodeError::EmptyNameplate));
    assert_eq!(
        Nameplate::new("4a"),
        Err(CodeError::BadNameplate("4a".into()))
    );
    assert_eq!(
        Nameplate::new(" 4"),
        Err(CodeError::BadNameplate(" 4".into()))
    );
    assert_eq!(
        Nameplate::new(&"1".repeat(41)),
        Err(CodeError::NameplateTooLong(41))
    );
}

#[test]
fn debug_hides_words() {
    let c = Code::parse("4-purple-sausages").unwrap();
    let dbg = format!("{c:?}");
    assert_eq!(dbg, r#"Code { nameplate: "4", words: "<redacted>" }"#);
    assert!(!format!("{c:#?}").contains("purple"));
    assert!(!format!("{:?}", Some(&c)).contains("sausages"));
}

// ---- serde ------------------------------------------------------------------------------

#[test]
fn serde_round_trip() {
    let c = Code::parse("4-purple-sausages").unwrap();
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#""4-purple-sausages""#);
    assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), c);
    assert!(serde_json::from_str::<Code>(r#""abc-def""#).is_err());
    assert!(serde_json::from_str::<Code>(r#""4-""#).is_err());
    assert!(serde_json::from_str::<Code>("4").is_err());

    let n = np("12");
    let json = serde_json::to_string(&n).unwrap();
    assert_eq!(json, r#""12""#);
    assert_eq!(serde_json::from_str::<Nameplate>(&json).unwrap(), n);
    assert!(serde_json::from_str::<Nameplate>(r#""1x""#).is_err());
    assert!(serde_json::from_str::<Nameplate>(r#""""#).is_err());
    assert!(serde_json::from_str::<Nameplate>("12").is_err());
}

// ---- completion -------------------------------------------------------------------------

#[test]
fn word_completion_vectors() {
    assert_eq!(
        word_completions("ar", 2),
        strings(&["armistice-", "article-"])
    );
    assert_eq!(word_completions("armis", 2), strings(&["armistice-"]));

    let all = word_completions("armistice-", 2);
    assert_eq!(all.len(), 256);
    assert!(all.iter().all(|c| c.starts_with("armistice-")));
    assert!(all.iter().all(|c| !c.ends_with('-')));
    assert!(all.contains(&"armistice-aardvark".to_string()));
    assert!(all.contains(&"armistice-zulu".to_string()));

    let ba = [
        "armistice-baboon",
        "armistice-backfield",
        "armistice-backward",
        "armistice-banjo",
    ];
    assert_eq!(word_completions("armistice-ba", 2), strings(&ba));
    let ba3: Vec<String> = ba.iter().map(|w| format!("{w}-")).collect();
    assert_eq!(word_completions("armistice-ba", 3), ba3);

    assert_eq!(
        word_completions("armistice-baboon", 2),
        strings(&["armistice-baboon"])
    );
    assert_eq!(
        word_completions("armistice-baboon", 3),
        strings(&["armistice-baboon-"])
    );
    assert_eq!(
        word_completions("armistice-baboon", 4),
        strings(&["armistice-baboon-"])
    );
}

#[test]
fn word_completion_edges() {
    // Empty prefix: the whole odd list.
    let first = word_completions("", 2);
    assert_eq!(first.len(), 256);
    assert!(first.contains(&"adroitness-".to_string()));
    assert!(!first.contains(&"aardvark-".to_string()));
    // Word 2 is again from the odd list.
    assert_eq!(word_completions("a-b-alk", 3), strings(&["a-b-alkali"]));
    // Case-sensitive like Python; unknown prefixes give nothing.
    assert!(word_completions("AR", 2).is_empty());
    assert!(word_completions("qqq", 2).is_empty());
    // Beyond num_words: still completed, no trailing '-'.
    assert_eq!(word_completions("a-b-alkal", 2), strings(&["a-b-alkali"]));
    assert_eq!(word_completions("alkal", 0), strings(&["alkali"]));
}

#[test]
fn whole_code_completions() {
    let listed = strings(&["1", "12", "5"]);
    assert_eq!(completions("1", 2, &listed), strings(&["1-", "12-"]));
    assert_eq!(completions("", 2, &listed), strings(&["1-", "12-", "5-"]));
    assert_eq!(completions("12", 2, &listed), strings(&["12-"]));
    assert!(completions("3", 2, &listed).is_empty());
    assert_eq!(
        completions("12-arm", 2, &listed),
        strings(&["12-armistice-"])
    );
    assert_eq!(
        completions("12-arm", 1, &listed),
        strings(&["12-armistice"])
    );
    assert_eq!(
        completions("7-armistice-ba", 2, &listed),
        strings(&[
            "7-armistice-baboon",
            "7-armistice-backfield",
            "7-armistice-backward",
            "7-armistice-banjo"
        ])
    );
    assert_eq!(completions("5-", 2, &listed).len(), 256);
    // Invalid nameplates complete to nothing, and invalid listed ones are skipped.
    assert!(completions("x-arm", 2, &listed).is_empty());
    assert!(completions("-arm", 2, &listed).is_empty());
    let odd = strings(&["2", "2", "2x", "20"]);
    assert_eq!(completions("2", 2, &odd), strings(&["2-", "20-"]));
}

#[test]
fn completed_codes_parse() {
    let c = completions("12-armistice-bab", 2, &[]);
    assert_eq!(c, strings(&["12-armistice-baboon"]));
    let code = Code::parse(&c[0]).unwrap();
    assert_alternation(&code, 2);
}
