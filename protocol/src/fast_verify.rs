//! ECDSA verification for a public key that is used again and again (the exchange's key
//! cache), with precomputed tables of multiples so that no point doublings are needed.
//!
//! The check is plain ECDSA: `u1 = z/s`, `u2 = r/s`, `R = u1·G + u2·Q`, accept iff `R` is
//! not the identity and `R.x mod n == r`; high-S signatures are refused, as everywhere in
//! the protocol (`r` and `s` are non-zero by construction of [`Signature`]). Only the
//! multiplications are done differently from k256's `verify_prehash`:
//!
//! - `u1·G` uses one table for the whole process: signed base-2^[`G_WINDOW`] digits,
//!   each window's multiples `j·2^(w·i)·G` stored in affine form, so the product is one
//!   mixed addition per non-zero digit.
//! - `u2·Q` uses a per-key [`KeyTable`] (about 31 KiB): the same scheme with
//!   [`Q_WINDOW`]-bit digits, but only every [`Q_COMBS`]-th window is stored and the
//!   others are reached by `Q_WINDOW` doublings each, shared by all windows (a comb).
//!
//! All tables are built with k256's public point arithmetic and normalised to affine
//! with one batched inversion. Verification uses public data only, so variable time
//! (skipping zero digits) is fine.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::BatchNormalize;
use k256::elliptic_curve::ops::{Invert, Reduce};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};

use crate::identity::{Address, CompactSignature, IdentityError, verify_prehash};

/// Digit width of the generator's table: 37 windows of 64 affine points (≈ 204 KiB,
/// built once per process).
pub const G_WINDOW: u32 = 7;
/// Digit width of a key's table.
pub const Q_WINDOW: u32 = 6;
/// A key's table stores every `Q_COMBS`-th window only.
pub const Q_COMBS: usize = 4;

/// Multiples `j·2^(w·s·i)·P` for `j = 1..=2^(w-1)`, for every stored window `i`, affine.
struct Table {
    /// Digit width.
    w: u32,
    /// Windows reached by doublings between stored ones (1: every window stored).
    combs: usize,
    /// Stored windows.
    stored: usize,
    points: Vec<AffinePoint>,
}

/// Signed digits of a 256-bit scalar in base 2^w need this many windows (one more bit
/// than 256 for the final carry).
const fn windows(w: u32) -> usize {
    257_usize.div_ceil(w as usize)
}

/// Enough room for the digits of the narrowest window the tests use (4 bits).
const MAX_WINDOWS: usize = windows(4);

impl Table {
    fn new(p: ProjectivePoint, w: u32, combs: usize) -> Table {
        assert!((4..=8).contains(&w) && combs >= 1, "table shape out of range");
        let half = 1usize << (w - 1);
        let stored = windows(w).div_ceil(combs);
        let mut proj = Vec::with_capacity(stored * half);
        let mut base = p;
        for _ in 0..stored {
            let mut m = base;
            proj.push(m);
            for _ in 1..half {
                m += &base;
                proj.push(m);
            }
            // The next stored window's base: base·2^(w·combs).
            for _ in 0..w as usize * combs {
                base = base.double();
            }
        }
        let points =
            <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize_vartime(&proj);
        Table { w, combs, stored, points }
    }

    /// `acc += d·2^(w·s·i)·P` for a signed digit `d` of stored window `i`.
    #[inline]
    fn add_digit(&self, acc: &mut ProjectivePoint, i: usize, d: i32) {
        if d == 0 {
            return;
        }
        let half = 1usize << (self.w - 1);
        let entry = &self.points[i * half + d.unsigned_abs() as usize - 1];
        if d > 0 {
            *acc += entry;
        } else {
            *acc -= entry;
        }
    }

    /// `acc += k·P`; `acc` must be the identity if `combs > 1` (it is doubled).
    fn mul_add(&self, acc: &mut ProjectivePoint, k: &Scalar) {
        let mut digits = [0i32; MAX_WINDOWS];
        let n = windows(self.w);
        signed_digits(k, self.w, &mut digits[..n]);
        for t in (0..self.combs).rev() {
            if t != self.combs - 1 {
                for _ in 0..self.w {
                    *acc = acc.double();
                }
            }
            for i in 0..self.stored {
                let j = i * self.combs + t;
                if j < n {
                    self.add_digit(acc, i, digits[j]);
                }
            }
        }
    }
}

/// Signed base-2^w digits of `k` (least significant first), each in `-2^(w-1)..=2^(w-1)`.
fn signed_digits(k: &Scalar, w: u32, out: &mut [i32]) {
    let bytes = k.to_bytes();
    let mut limbs = [0u64; 4];
    for (i, limb) in limbs.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[32 - 8 * (i + 1)..32 - 8 * i]);
        *limb = u64::from_be_bytes(b);
    }
    let bits = |at: usize| -> u64 {
        // w bits starting at bit `at` (zero beyond bit 255).
        let (l, o) = (at / 64, at % 64);
        let mut v = if l < 4 { limbs[l] >> o } else { 0 };
        if o != 0 && l + 1 < 4 {
            v |= limbs[l + 1] << (64 - o);
        }
        v & ((1u64 << w) - 1)
    };
    let full = 1i32 << w;
    let half = 1i32 << (w - 1);
    let mut carry = 0i32;
    for (i, d) in out.iter_mut().enumerate() {
        let raw = bits(i * w as usize) as i32 + carry;
        if raw > half {
            *d = raw - full;
            carry = 1;
        } else {
            *d = raw;
            carry = 0;
        }
    }
    debug_assert_eq!(carry, 0, "the top window absorbs the carry");
}

static G_TABLE: LazyLock<Table> =
    LazyLock::new(|| Table::new(ProjectivePoint::GENERATOR, G_WINDOW, 1));

/// Build the generator's table now rather than on the first verification.
pub fn warm_up() {
    LazyLock::force(&G_TABLE);
}

/// A public key with its table of multiples, for fast repeated verification.
pub struct KeyTable {
    key: VerifyingKey,
    table: Table,
}

impl KeyTable {
    /// Precompute the table (costs about six to eight table verifications).
    pub fn new(key: &VerifyingKey) -> KeyTable {
        KeyTable {
            key: *key,
            table: Table::new(ProjectivePoint::from(*key.as_affine()), Q_WINDOW, Q_COMBS),
        }
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Bytes the table holds (for sizing caches).
    pub fn table_bytes(&self) -> usize {
        self.table.points.len() * std::mem::size_of::<AffinePoint>()
    }

    /// ECDSA verification of `signature` over the 32-byte `prehash`, with the same
    /// answer as k256's `VerifyingKey::verify_prehash` (which also refuses high S).
    pub fn verify_prehash(&self, prehash: &[u8; 32], signature: &Signature) -> bool {
        let (r, s) = signature.split_scalars();
        if bool::from(s.is_high()) {
            return false;
        }
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*prehash));
        let s_inv: Scalar = *s.invert_vartime();
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let mut acc = ProjectivePoint::IDENTITY;
        self.table.mul_add(&mut acc, &u2);
        G_TABLE.mul_add(&mut acc, &u1);
        let x = acc.to_affine().x();
        // The identity's affine x is zero, which never equals a non-zero r.
        *r == <Scalar as Reduce<FieldBytes>>::reduce(&x)
    }
}

/// How [`KeyCache::verify`] checked a signature (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// With the key's table of multiples.
    Table,
    /// With the cached key, plainly.
    Key,
    /// By recovering the key (first signature of the address, or an uncompressed key).
    Recovered,
}

/// A cached key and how often it verified a signature without a table.
struct CachedKey {
    key: VerifyingKey,
    plain_uses: AtomicU32,
}

/// Tables of multiples for the hot keys, in two generations: a hit in the old one moves
/// the table to the new one; when the new one is full it becomes the old one (and the
/// old one is dropped). Keys used all the time stay, at most `2 × tables_max` tables.
#[derive(Default)]
struct HotTables {
    new: foldhash::HashMap<Address, Arc<KeyTable>>,
    old: foldhash::HashMap<Address, Arc<KeyTable>>,
}

impl HotTables {
    fn get(&mut self, address: &Address, max: usize) -> Option<Arc<KeyTable>> {
        if let Some(t) = self.new.get(address) {
            return Some(t.clone());
        }
        let t = self.old.remove(address)?;
        self.insert(address.clone(), t.clone(), max);
        Some(t)
    }

    fn insert(&mut self, address: Address, table: Arc<KeyTable>, max: usize) {
        if self.new.len() >= max {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(address, table);
    }
}

/// Address → public key, learnt from the first recovered signature of each address, so
/// later signatures need one ECDSA verification instead of a key recovery; keys that
/// keep signing get a [`KeyTable`], which makes the verification cheaper still. Used by
/// the exchange for every envelope and by sellers for buyers' receipts.
pub struct KeyCache {
    keys_max: usize,
    tables_max: usize,
    table_after_uses: u32,
    keys: RwLock<foldhash::HashMap<Address, Arc<CachedKey>>>,
    tables: Mutex<HotTables>,
}

impl KeyCache {
    /// At most `keys_max` keys (the cache starts over when full) and `2 × tables_max`
    /// tables; a key gets its table after `table_after_uses` plain verifications.
    pub fn new(keys_max: usize, tables_max: usize, table_after_uses: u32) -> KeyCache {
        KeyCache {
            keys_max,
            tables_max,
            table_after_uses: table_after_uses.max(1),
            keys: RwLock::default(),
            tables: Mutex::default(),
        }
    }

    /// Check that `sig` over the message hash `hash` was made by `address`'s key.
    pub fn verify(
        &self,
        address: &Address,
        hash: &[u8; 32],
        sig: &CompactSignature,
    ) -> Result<Checked, IdentityError> {
        let not_signed = || IdentityError::NotSigned(address.to_string());
        if !sig.compressed {
            // Accounts are compressed keys; an uncompressed one is checked, never cached.
            return if sig.recover_address(hash)? == *address {
                Ok(Checked::Recovered)
            } else {
                Err(not_signed())
            };
        }
        let table = self.tables.lock().expect("key table lock").get(address, self.tables_max);
        if let Some(table) = table {
            return if table.verify_prehash(hash, &sig.signature) {
                Ok(Checked::Table)
            } else {
                Err(not_signed())
            };
        }
        let known = self.keys.read().expect("key cache lock").get(address).cloned();
        if let Some(cached) = known {
            verify_prehash(&cached.key, hash, sig)?;
            let uses = cached.plain_uses.fetch_add(1, Ordering::Relaxed) + 1;
            if uses.is_multiple_of(self.table_after_uses) {
                // Built once the key has proven busy (again, if its table was dropped),
                // so a table never costs more than a few of the verifications it replaces.
                let table = Arc::new(KeyTable::new(&cached.key));
                self.tables.lock().expect("key table lock").insert(
                    address.clone(),
                    table,
                    self.tables_max,
                );
            }
            return Ok(Checked::Key);
        }
        let key = sig.recover(hash)?;
        if Address::from_verifying_key(&key) != *address {
            return Err(not_signed());
        }
        let mut keys = self.keys.write().expect("key cache lock");
        if keys.len() >= self.keys_max {
            keys.clear();
        }
        keys.insert(address.clone(), Arc::new(CachedKey { key, plain_uses: AtomicU32::new(0) }));
        Ok(Checked::Recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_cache_recovers_then_verifies_with_the_key_then_with_a_table() {
        use crate::identity::{PrivateKey, message_hash};
        let cache = KeyCache::new(16, 4, 2);
        let k = PrivateKey::generate();
        let other = PrivateKey::generate();
        let check = |signer: &PrivateKey, msg: &str| {
            let sig = CompactSignature::from_base64(&signer.sign_message(msg)).unwrap();
            cache.verify(&k.address(), &message_hash(msg), &sig)
        };
        // Another key's signature is refused at every stage.
        let refused = |c: &dyn Fn(&PrivateKey, &str) -> Result<Checked, IdentityError>| {
            assert!(matches!(c(&other, "x"), Err(IdentityError::NotSigned(_))));
        };
        refused(&check);
        assert_eq!(check(&k, "a").unwrap(), Checked::Recovered);
        refused(&check);
        assert_eq!(check(&k, "b").unwrap(), Checked::Key);
        assert_eq!(check(&k, "c").unwrap(), Checked::Key);
        // Two plain uses: the table is built and used from now on.
        assert_eq!(check(&k, "d").unwrap(), Checked::Table);
        refused(&check);
        // An uncompressed key of the same secret is another address: checked, not cached.
        let u = PrivateKey::from_secret_bytes(&[7u8; 32], false).unwrap();
        let sig = CompactSignature::from_base64(&u.sign_message("e")).unwrap();
        assert_eq!(
            cache.verify(&u.address(), &message_hash("e"), &sig).unwrap(),
            Checked::Recovered
        );
        assert_eq!(
            cache.verify(&u.address(), &message_hash("e"), &sig).unwrap(),
            Checked::Recovered
        );
    }
    use k256::ecdsa::SigningKey;
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use proptest::prelude::*;

    fn key(seed: [u8; 32]) -> Option<SigningKey> {
        SigningKey::from_slice(&seed).ok()
    }

    fn k256_ok(vk: &VerifyingKey, h: &[u8; 32], sig: &Signature) -> bool {
        vk.verify_prehash(h, sig).is_ok()
    }

    #[test]
    fn digits_recompose() {
        for w in [4, 5, 6, 7, 8] {
            for k in [
                Scalar::ZERO,
                Scalar::ONE,
                -Scalar::ONE,
                Scalar::from(0x7fu64),
                -Scalar::from(3u64),
            ] {
                let mut d = [0i32; MAX_WINDOWS];
                let n = windows(w);
                signed_digits(&k, w, &mut d[..n]);
                let mut acc = Scalar::ZERO;
                for &di in d[..n].iter().rev() {
                    acc *= Scalar::from(1u64 << w);
                    let m = Scalar::from(di.unsigned_abs() as u64);
                    acc += if di < 0 { -m } else { m };
                }
                assert_eq!(acc, k, "w={w}");
            }
        }
    }

    #[test]
    fn tables_multiply_like_k256() {
        let q = ProjectivePoint::GENERATOR * Scalar::from(12345u64);
        for (w, combs) in [(4, 1), (5, 2), (6, 4), (7, 1), (6, 3)] {
            let t = Table::new(q, w, combs);
            for k in [Scalar::ONE, -Scalar::ONE, Scalar::from(u64::MAX), -Scalar::from(977u64)] {
                let mut acc = ProjectivePoint::IDENTITY;
                t.mul_add(&mut acc, &k);
                assert_eq!(acc, q * k, "w={w} combs={combs}");
            }
        }
    }

    #[test]
    fn rejects_high_s_that_k256_refuses_too() {
        let sk = key([7u8; 32]).unwrap();
        let vk = *sk.verifying_key();
        let h = [9u8; 32];
        let (sig, _) = sk.sign_prehash_recoverable(&h);
        let t = KeyTable::new(&vk);
        assert!(t.verify_prehash(&h, &sig));
        let high = Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        assert!(bool::from(high.s().is_high()));
        assert!(!k256_ok(&vk, &h, &high));
        assert!(!t.verify_prehash(&h, &high));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn agrees_with_k256(
            seed in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            h in any::<[u8; 32]>(),
            flip in 0usize..64,
            bit in 0u8..8,
        ) {
            let Some(sk) = key(seed) else { return Ok(()) };
            let vk = *sk.verifying_key();
            let t = KeyTable::new(&vk);
            let (sig, _) = sk.sign_prehash_recoverable(&h);
            let sig = sig.normalize_s();
            // valid
            prop_assert!(k256_ok(&vk, &h, &sig));
            prop_assert!(t.verify_prehash(&h, &sig));
            // tampered message
            let mut h2 = h;
            h2[flip % 32] ^= 1 << bit;
            prop_assert_eq!(t.verify_prehash(&h2, &sig), k256_ok(&vk, &h2, &sig));
            prop_assert!(!t.verify_prehash(&h2, &sig));
            // tampered signature (if it still decodes)
            let mut raw: [u8; 64] = sig.to_bytes().into();
            raw[flip] ^= 1 << bit;
            if let Ok(bad) = Signature::from_slice(&raw) {
                prop_assert_eq!(t.verify_prehash(&h, &bad), k256_ok(&vk, &h, &bad));
                prop_assert!(!t.verify_prehash(&h, &bad));
            }
            // wrong key
            if let Some(sk2) = key(other) {
                let vk2 = *sk2.verifying_key();
                let t2 = KeyTable::new(&vk2);
                prop_assert_eq!(t2.verify_prehash(&h, &sig), k256_ok(&vk2, &h, &sig));
                prop_assert_eq!(t2.verify_prehash(&h, &sig), vk2 == vk);
            }
        }

        #[test]
        fn agrees_with_k256_on_arbitrary_signatures(
            seed in any::<[u8; 32]>(),
            h in any::<[u8; 32]>(),
            raw in any::<[u8; 64]>(),
        ) {
            let Some(sk) = key(seed) else { return Ok(()) };
            let vk = *sk.verifying_key();
            if let Ok(sig) = Signature::from_slice(&raw) {
                let t = KeyTable::new(&vk);
                prop_assert_eq!(t.verify_prehash(&h, &sig), k256_ok(&vk, &h, &sig));
            }
        }
    }
}
