//! Serde forms for the serialized session state: durations as whole milliseconds, bytes as
//! hex, and the random generator as its seed and position. The state then reads as plain JSON
//! (`"timeout": 300000`, `"pake_secret": "88183638…"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn to_ms(d: &Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `Duration` as milliseconds.
pub(crate) mod millis {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(to_ms(d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `Option<Duration>` as milliseconds or null.
pub(crate) mod millis_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.as_ref().map(to_ms).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// `[u8; 32]` as a hex string.
pub(crate) mod hex32 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let h = String::deserialize(d)?;
        let mut out = [0u8; 32];
        ::hex::decode_to_slice(&h, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// `Vec<u8>` as a hex string.
pub(crate) mod hex {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        ::hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A queue of byte strings as a list of hex strings.
pub(crate) mod hex_deque {
    use std::collections::VecDeque;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(q: &VecDeque<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(q.iter().map(::hex::encode))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<VecDeque<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|h| ::hex::decode(h).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// A map from phase numbers to byte strings as `{"3": hex}`.
pub(crate) mod hex_map {
    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        m: &BTreeMap<u64, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k.to_string(), ::hex::encode(v))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<u64, Vec<u8>>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                let k = k.parse::<u64>().map_err(serde::de::Error::custom)?;
                let v = ::hex::decode(v).map_err(serde::de::Error::custom)?;
                Ok((k, v))
            })
            .collect()
    }
}

/// `ChaCha20Rng` as `{"seed": hex, "word_pos": n}`: the generator resumes where it was.
pub(crate) mod chacha {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct State {
        seed: String,
        word_pos: u64,
    }

    pub(crate) fn serialize<S: Serializer>(rng: &ChaCha20Rng, s: S) -> Result<S::Ok, S::Error> {
        State {
            seed: ::hex::encode(rng.get_seed()),
            word_pos: u64::try_from(rng.get_word_pos()).unwrap_or(u64::MAX),
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ChaCha20Rng, D::Error> {
        let state = State::deserialize(d)?;
        let mut seed = [0u8; 32];
        ::hex::decode_to_slice(&state.seed, &mut seed).map_err(serde::de::Error::custom)?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_word_pos(u128::from(state.word_pos));
        Ok(rng)
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Holder(#[serde(with = "super::chacha")] ChaCha20Rng);

    #[test]
    fn a_restored_generator_continues_the_same_stream() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let _ = rng.next_u64();
        let json = serde_json::to_string(&Holder(rng.clone())).unwrap();
        let Holder(mut restored) = serde_json::from_str(&json).unwrap();
        for _ in 0..10 {
            assert_eq!(rng.next_u64(), restored.next_u64());
        }
    }
}
