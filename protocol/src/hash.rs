//! 32-byte SHA256 names (articles, modules, chunks, work, results) as lowercase hex on the wire.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A SHA256 digest. Serialises as 64 lowercase hex characters.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Hash32(pub [u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("not a SHA256 hash (64 lowercase hex chars): {0:?}")]
pub struct HashParseError(pub String);

impl Hash32 {
    /// SHA256 of `data`.
    pub fn of(data: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(data).into())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Hash32 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Hash32, HashParseError> {
        let shown = || s.chars().take(80).collect::<String>();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(HashParseError(shown()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| HashParseError(shown()))?;
        Ok(Hash32(out))
    }
}

impl TryFrom<String> for Hash32 {
    type Error = HashParseError;
    fn try_from(s: String) -> Result<Hash32, HashParseError> {
        s.parse()
    }
}

impl From<Hash32> for String {
    fn from(h: Hash32) -> String {
        h.to_hex()
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_is_strict() {
        let h = Hash32::of(b"abc");
        assert_eq!(h.to_hex().parse::<Hash32>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<Hash32>().is_err());
        assert!("ab".parse::<Hash32>().is_err());
    }
}
