//! Opaque ids the exchange hands out for bids and transactions.

use std::fmt;
use std::str::FromStr;

/// Longest id accepted anywhere.
pub const ID_CHARS_MAX: usize = 64;

/// A bid or transaction id: 1..=64 characters of `[A-Za-z0-9_-]` (safe in URLs and messages).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("not a valid id (1 to 64 of A-Z a-z 0-9 _ -): {0:?}")]
pub struct IdError(pub String);

impl Id {
    pub fn new(s: impl Into<String>) -> Result<Id, IdError> {
        let s = s.into();
        if s.is_empty()
            || s.len() > ID_CHARS_MAX
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(IdError(s.chars().take(80).collect()));
        }
        Ok(Id(s))
    }

    /// A fresh random id with a prefix (`b` for bids, `t` for transactions).
    pub fn random(prefix: &str) -> Id {
        let mut bytes = [0u8; 12];
        getrandom::fill(&mut bytes).expect("the operating system has no random source");
        Id::new(format!("{prefix}{}", hex::encode(bytes))).expect("valid by construction")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Id, IdError> {
        Id::new(s)
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;
    fn try_from(s: String) -> Result<Id, IdError> {
        Id::new(s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type BidId = Id;
pub type TxId = Id;
