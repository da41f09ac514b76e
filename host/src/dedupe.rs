//! Which chunks each buyer has sent this seller. The seller's have-list (the offer's
//! missing bitmap) counts a chunk as held for buyer B only if B itself uploaded it before:
//! the answer then says nothing about other buyers' data (no chunk oracle, PROTOCOL §5),
//! while a buyer's own re-send still costs only its new chunks.
//!
//! In memory only, never persisted: after a restart every buyer sends each chunk once
//! again. Bounded by [`DEDUPE_BUYERS_MAX`] buyers and [`DEDUPE_ENTRIES_MAX`] entries in
//! all; past either, the least recently seen buyers are forgotten first.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bitwrk_protocol::Hash32;
use bitwrk_protocol::identity::Address;

use crate::limits::{DEDUPE_BUYERS_MAX, DEDUPE_CHUNKS_PER_BUYER_MAX, DEDUPE_ENTRIES_MAX};

/// Per-buyer chunk lists with the bounds of `limits`.
pub struct BuyerChunks {
    inner: Mutex<Inner>,
    buyers_max: usize,
    per_buyer_max: usize,
    entries_max: usize,
}

#[derive(Default)]
struct Inner {
    buyers: HashMap<Address, Seen>,
    /// Entries over all buyers (both generations).
    entries: usize,
    /// Logical clock for least-recently-seen eviction.
    tick: u64,
}

/// One buyer's chunks in two generations: when `current` reaches half the per-buyer bound
/// it becomes `previous` and the old `previous` is dropped, so the bound holds without
/// forgetting everything at once.
#[derive(Default)]
struct Seen {
    current: HashSet<Hash32>,
    previous: HashSet<Hash32>,
    used: u64,
}

impl Seen {
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
    fn contains(&self, h: &Hash32) -> bool {
        self.current.contains(h) || self.previous.contains(h)
    }
}

impl Default for BuyerChunks {
    fn default() -> Self {
        BuyerChunks::new(DEDUPE_BUYERS_MAX, DEDUPE_CHUNKS_PER_BUYER_MAX, DEDUPE_ENTRIES_MAX)
    }
}

impl BuyerChunks {
    pub fn new(buyers_max: usize, per_buyer_max: usize, entries_max: usize) -> BuyerChunks {
        BuyerChunks {
            inner: Mutex::new(Inner::default()),
            buyers_max: buyers_max.max(1),
            per_buyer_max: per_buyer_max.max(2),
            entries_max: entries_max.max(2),
        }
    }

    /// For each hash: whether `buyer` sent that chunk before (and it is still listed).
    pub fn sent_before(&self, buyer: &Address, hashes: &[Hash32]) -> Vec<bool> {
        let mut inner = self.inner.lock().expect("dedupe lock");
        inner.tick += 1;
        let tick = inner.tick;
        match inner.buyers.get_mut(buyer) {
            Some(seen) => {
                seen.used = tick;
                hashes.iter().map(|h| seen.contains(h)).collect()
            }
            None => vec![false; hashes.len()],
        }
    }

    /// Note that `buyer` uploaded these chunks.
    pub fn record(&self, buyer: &Address, hashes: impl IntoIterator<Item = Hash32>) {
        let mut guard = self.inner.lock().expect("dedupe lock");
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        let half = self.per_buyer_max / 2;
        let seen = inner.buyers.entry(buyer.clone()).or_default();
        seen.used = tick;
        for h in hashes {
            if seen.contains(&h) {
                continue;
            }
            if seen.current.len() >= half {
                inner.entries -= seen.previous.len();
                seen.previous = std::mem::take(&mut seen.current);
            }
            seen.current.insert(h);
            inner.entries += 1;
        }
        self.evict(inner, buyer);
    }

    /// Forget least recently seen buyers (never `keep`, the one just recorded, unless it
    /// alone is over the bound) until both bounds hold.
    fn evict(&self, inner: &mut Inner, keep: &Address) {
        while inner.buyers.len() > self.buyers_max || inner.entries > self.entries_max {
            let oldest = inner
                .buyers
                .iter()
                .filter(|(a, _)| *a != keep)
                .min_by_key(|(_, s)| s.used)
                .map(|(a, _)| a.clone());
            let Some(oldest) = oldest else {
                // Only `keep` is left and it is over the total bound: drop its older half.
                let seen = inner.buyers.get_mut(keep).expect("keep is listed");
                inner.entries -= seen.previous.len();
                seen.previous.clear();
                if inner.entries > self.entries_max {
                    inner.entries -= seen.current.len();
                    seen.current.clear();
                }
                return;
            };
            let gone = inner.buyers.remove(&oldest).expect("listed");
            inner.entries -= gone.len();
        }
    }

    /// Entries held over all buyers (for tests and metrics).
    pub fn entries(&self) -> usize {
        self.inner.lock().expect("dedupe lock").entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitwrk_protocol::identity::PrivateKey;

    fn addr(i: u8) -> Address {
        PrivateKey::from_secret_bytes(&[i; 32], true).unwrap().address()
    }

    fn h(i: u32) -> Hash32 {
        Hash32::of(&i.to_be_bytes())
    }

    #[test]
    fn a_chunk_counts_only_for_the_buyer_who_sent_it() {
        let d = BuyerChunks::default();
        let (a, b) = (addr(1), addr(2));
        d.record(&a, [h(1), h(2)]);
        assert_eq!(d.sent_before(&a, &[h(1), h(2), h(3)]), vec![true, true, false]);
        assert_eq!(d.sent_before(&b, &[h(1), h(2), h(3)]), vec![false, false, false]);
        d.record(&b, [h(2)]);
        assert_eq!(d.sent_before(&b, &[h(1), h(2)]), vec![false, true]);
        assert_eq!(d.entries(), 3);
    }

    #[test]
    fn per_buyer_bound_keeps_the_newer_generation() {
        let d = BuyerChunks::new(8, 4, 100);
        let a = addr(1);
        d.record(&a, (0..6).map(h));
        assert!(d.entries() <= 4, "{} entries", d.entries());
        assert_eq!(d.sent_before(&a, &[h(5), h(4), h(0)]), vec![true, true, false]);
    }

    #[test]
    fn least_recently_seen_buyer_goes_first() {
        let d = BuyerChunks::new(2, 100, 100);
        d.record(&addr(1), [h(1)]);
        d.record(&addr(2), [h(2)]);
        assert_eq!(d.sent_before(&addr(1), &[h(1)]), vec![true]);
        d.record(&addr(3), [h(3)]);
        assert_eq!(
            d.sent_before(&addr(2), &[h(2)]),
            vec![false],
            "buyer 2 was seen least recently"
        );
        assert_eq!(d.sent_before(&addr(1), &[h(1)]), vec![true]);
        assert_eq!(d.sent_before(&addr(3), &[h(3)]), vec![true]);
    }

    #[test]
    fn total_bound_holds() {
        let d = BuyerChunks::new(100, 1000, 10);
        for i in 0..20u8 {
            d.record(&addr(i + 1), (0..3).map(|j| h(u32::from(i) * 10 + j)));
            assert!(d.entries() <= 10, "{} entries", d.entries());
        }
        let one = BuyerChunks::new(100, 1000, 10);
        one.record(&addr(1), (0..30).map(h));
        assert!(one.entries() <= 10, "{} entries", one.entries());
    }
}
