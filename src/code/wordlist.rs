//! The PGP word lists used for wormhole codes, and word completion.
//!
//! Both lists hold 256 words, indexed by one byte. Word `i` of a code (counting from 0) comes
//! from the **odd** list when `i` is even and from the **even** list when `i` is odd, exactly as
//! Python magic-wormhole's `_wordlist.py` does. All words are returned lower-cased.

use super::wordlist_table::{EVEN, ODD};

/// The word for `byte` in the **odd** list (lower-case). Used for words 0, 2, 4, … of a code.
///
/// ```
/// assert_eq!(wormhole::code::wordlist::odd_word(0x04), "alkali");
/// ```
pub fn odd_word(byte: u8) -> &'static str {
    ODD[usize::from(byte)]
}

/// The word for `byte` in the **even** list (lower-case). Used for words 1, 3, 5, … of a code.
///
/// ```
/// assert_eq!(wormhole::code::wordlist::even_word(0x10), "assume");
/// ```
pub fn even_word(byte: u8) -> &'static str {
    EVEN[usize::from(byte)]
}

/// The byte of `word` in the **odd** list, compared case-insensitively; `None` if it is not there.
///
/// ```
/// assert_eq!(wormhole::code::wordlist::odd_index("Alkali"), Some(0x04));
/// assert_eq!(wormhole::code::wordlist::odd_index("assume"), None); // an even-list word
/// ```
pub fn odd_index(word: &str) -> Option<u8> {
    index_in(&ODD, word)
}

/// The byte of `word` in the **even** list, compared case-insensitively; `None` if it is not
/// there.
///
/// ```
/// assert_eq!(wormhole::code::wordlist::even_index("ASSUME"), Some(0x10));
/// ```
pub fn even_index(word: &str) -> Option<u8> {
    index_in(&EVEN, word)
}

fn index_in(list: &[&str; 256], word: &str) -> Option<u8> {
    list.iter()
        .position(|w| w.eq_ignore_ascii_case(word))
        .and_then(|i| u8::try_from(i).ok())
}

/// The list word `index` (0-based) of a code is drawn from: the odd list for even indexes, the
/// even list for odd indexes.
pub(super) fn list_for_index(index: usize) -> &'static [&'static str; 256] {
    if index.is_multiple_of(2) {
        &ODD
    } else {
        &EVEN
    }
}

/// Completions of the words part of a code (the text after the nameplate and its `-`), exactly
/// like Python magic-wormhole's `get_completions(prefix, num_words)`.
///
/// The word being typed is the text after the last `-`. Its index is the number of `-` in
/// `prefix`; it is completed from the odd list when that index is even and from the even list
/// when it is odd, by prefix match on the lower-case words (case-sensitive, like Python: an
/// upper-case prefix completes to nothing). Each completion is the whole `prefix` with its last
/// partial word replaced by the full word, plus a trailing `-` when more words are expected
/// (index + 1 < `num_words`). The result is sorted and has no duplicates.
///
/// ```
/// use wormhole::code::wordlist::word_completions;
/// assert_eq!(word_completions("ar", 2), ["armistice-", "article-"]);
/// assert_eq!(word_completions("armistice-baboon", 2), ["armistice-baboon"]);
/// ```
pub fn word_completions(prefix: &str, num_words: usize) -> Vec<String> {
    let index = prefix.matches('-').count();
    let (head, partial) = match prefix.rsplit_once('-') {
        Some((before, partial)) => (Some(before), partial),
        None => (None, prefix),
    };
    let more = index.saturating_add(1) < num_words;
    let mut out: Vec<String> = list_for_index(index)
        .iter()
        .filter(|word| word.starts_with(partial))
        .map(|word| {
            let mut s = match head {
                Some(before) => format!("{before}-{word}"),
                None => (*word).to_string(),
            };
            if more {
                s.push('-');
            }
            s
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The constant tables are exactly the embedded `wordlist.json`, lower-cased.
    #[test]
    fn tables_match_embedded_json() {
        #[derive(serde::Deserialize)]
        struct Lists {
            even: Vec<String>,
            odd: Vec<String>,
        }
        let lists: Lists = serde_json::from_str(include_str!("wordlist.json"))
            .expect("src/code/wordlist.json must parse");
        assert_eq!(lists.even.len(), 256);
        assert_eq!(lists.odd.len(), 256);
        for (i, (json, table)) in lists.even.iter().zip(EVEN.iter()).enumerate() {
            assert_eq!(&json.to_lowercase(), table, "even[{i}]");
        }
        for (i, (json, table)) in lists.odd.iter().zip(ODD.iter()).enumerate() {
            assert_eq!(&json.to_lowercase(), table, "odd[{i}]");
        }
    }

    #[test]
    fn words_are_lowercase_ascii_and_unique() {
        let mut all: Vec<&str> = EVEN.iter().chain(ODD.iter()).copied().collect();
        assert!(all
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 512);
    }

    #[test]
    fn index_round_trips() {
        for b in 0..=255u8 {
            assert_eq!(odd_index(odd_word(b)), Some(b));
            assert_eq!(even_index(even_word(b)), Some(b));
            assert_eq!(odd_index(&odd_word(b).to_uppercase()), Some(b));
        }
        assert_eq!(odd_index(""), None);
        assert_eq!(even_index("adroitness"), None);
    }
}
