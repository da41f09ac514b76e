//! Opaque ids the exchange hands out for bids and transactions.

use std::fmt;
use std::str::FromStr;

/// Random bytes from the operating system, fetched 4 KiB at a time per thread: the
/// exchange draws an id for every bid and transaction, and one `getrandom` call each was
/// a measurable share of its request path. Every byte is used once.
fn random_bytes(out: &mut [u8]) {
    use std::cell::RefCell;
    const POOL_BYTES: usize = 4096;
    thread_local! {
        static POOL: RefCell<([u8; POOL_BYTES], usize)> = const { RefCell::new(([0; POOL_BYTES], POOL_BYTES)) };
    }
    POOL.with_borrow_mut(|(pool, used)| {
        let mut filled = 0;
        while filled < out.len() {
            if *used == POOL_BYTES {
                getrandom::fill(pool).expect("the operating system has no random source");
                *used = 0;
            }
            let n = (out.len() - filled).min(POOL_BYTES - *used);
            out[filled..filled + n].copy_from_slice(&pool[*used..*used + n]);
            *used += n; // every byte is handed out once
            filled += n;
        }
    });
}

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
        random_bytes(&mut bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_distinct_across_pool_refills() {
        // 12 bytes per id: 10 000 ids use about 30 refills of the 4 KiB pool.
        let ids: std::collections::HashSet<Id> = (0..10_000).map(|_| Id::random("b")).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.as_str().len() == 25 && id.as_str().starts_with('b')));
    }

    #[test]
    fn random_bytes_fill_requests_larger_than_the_pool() {
        let mut big = vec![0u8; 10_000];
        random_bytes(&mut big);
        // 10 000 zero bytes from a random source would be a broken source or a bug.
        assert!(big.iter().filter(|&&b| b == 0).count() < 200);
        let mut small = [0u8; 12];
        random_bytes(&mut small);
        assert_ne!(small, [0u8; 12]);
    }
}
