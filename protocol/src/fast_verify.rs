//! ECDSA verification for a public key that is used again and again (the exchange's key
//! cache), with precomputed tables of multiples so that few point doublings are needed.
//!
//! The check is plain ECDSA: `u1 = z/s`, `u2 = r/s`, `R = u1·G + u2·Q`, accept iff `R` is
//! not the identity and `R.x mod n == r`; high-S signatures are refused, as everywhere in
//! the protocol (`r` and `s` are non-zero by construction of [`Signature`]). Only the
//! multiplications are done differently from k256's `verify_prehash`:
//!
//! - `u1·G` uses one table for the whole process: signed base-2^[`G_WINDOW`] digits,
//!   each window's multiples `j·2^(w·i)·G` stored in affine form, so the product is one
//!   mixed addition per non-zero digit.
//! - `u2·Q` uses a per-key [`KeyTable`] (about 28 KiB): the same scheme with
//!   [`Q_WINDOW`]-bit digits, but only every [`Q_COMBS`]-th window is stored and the
//!   others are reached by `Q_WINDOW` doublings each, shared by all windows (a comb).
//!
//! All tables are built with k256's public point arithmetic and normalised to affine
//! with one batched inversion; verification then adds them up in its own Jacobian
//! arithmetic ([`Jacobian`]) and compares x without an inversion. Verification uses public data only, so variable time
//! (skipping zero digits) is fine.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use k256::ecdsa::{Signature, VerifyingKey};
use k256::elliptic_curve::BatchNormalize;
use k256::elliptic_curve::hazmat::FieldArithmetic;
use k256::elliptic_curve::ops::{Invert, Reduce};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar, Secp256k1};

use crate::identity::{Address, CompactSignature, IdentityError, verify_prehash};

/// Digit width of the generator's table: 37 windows of 64 affine points (≈ 185 KiB,
/// built once per process).
pub const G_WINDOW: u32 = 7;
/// Digit width of a key's table.
pub const Q_WINDOW: u32 = 6;
/// A key's table stores every `Q_COMBS`-th window only.
pub const Q_COMBS: usize = 4;

/// k256's field element: 5×52-bit limbs with lazy reduction. Every value carries a
/// *magnitude* (how many multiples of p it may exceed its value by); `mul` and `square`
/// take inputs of magnitude ≤ 8 and give magnitude 1, `a + b` adds magnitudes,
/// `negate(m)` needs an input of magnitude ≤ m and gives m + 1, `normalize_weak` gives 1.
/// The magnitude of every value below is noted as `mN`.
type Fe = <Secp256k1 as FieldArithmetic>::FieldElement;

/// A point in affine coordinates (both m1); never the identity.
#[derive(Clone, Copy)]
struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    fn from_k256(p: &AffinePoint) -> Affine {
        let fe = |b: FieldBytes| Option::<Fe>::from(Fe::from_bytes(&b)).expect("a coordinate");
        Affine { x: fe(p.x()), y: fe(p.y()) }
    }
}

/// A point in Jacobian coordinates, `(X/Z², Y/Z³)`, each coordinate m1.
///
/// k256's own points use complete (branch-free) formulas, which cost about a third more
/// field multiplications; verification handles public data only, so the classic
/// variable-time formulas for `y² = x³ + 7` are used here (as in libsecp256k1's
/// `gej_double_var` / `gej_add_ge_var`).
#[derive(Clone, Copy)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
    infinity: bool,
}

impl Jacobian {
    const IDENTITY: Jacobian = Jacobian { x: Fe::ZERO, y: Fe::ONE, z: Fe::ZERO, infinity: true };

    /// `self = 2·self` (3 multiplications, 4 squarings). secp256k1 has no point of
    /// order 2, so only the identity doubles to the identity.
    fn double(&mut self) {
        if self.infinity {
            return;
        }
        let yy = self.y.square(); // m1
        let s = (self.x * yy).mul_single(4).normalize_weak(); // S = 4·X·Y², m1
        let m = self.x.square().mul_single(3); // M = 3·X², m3
        let x3 = (m.square() + s.double().negate(2)).normalize_weak(); // M² − 2S
        let y3 = (m * (s + x3.negate(1))) + yy.square().mul_single(8).normalize_weak().negate(1);
        self.z = (self.y * self.z).double().normalize_weak(); // 2·Y·Z
        self.x = x3;
        self.y = y3.normalize_weak(); // M·(S − X3) − 8·Y⁴
    }

    /// `self += ±p` (8 multiplications, 3 squarings).
    fn add(&mut self, p: &Affine, negate: bool) {
        let py = if negate { p.y.negate(1) } else { p.y }; // m2 or m1
        if self.infinity {
            *self = Jacobian { x: p.x, y: py.normalize_weak(), z: Fe::ONE, infinity: false };
            return;
        }
        let zz = self.z.square(); // m1
        let u2 = p.x * zz; // m1
        let s2 = (py * zz) * self.z; // m1
        let h = u2 + self.x.negate(1); // U2 − X1, m3
        let r = s2 + self.y.negate(1); // S2 − Y1, m3
        if bool::from(h.normalizes_to_zero()) {
            // Same x: the same point (double it) or its negation (the sum is the identity).
            if bool::from(r.normalizes_to_zero()) {
                self.double();
            } else {
                *self = Jacobian::IDENTITY;
            }
            return;
        }
        let hh = h.square(); // m1
        let hhh = h * hh; // m1
        let t = self.x * hh; // X1·H², m1
        let x3 = (r.square() + hhh.negate(1) + t.double().negate(2)).normalize_weak();
        let y3 = (r * (t + x3.negate(1))) + (self.y * hhh).negate(1);
        self.z *= h;
        self.x = x3; // R² − H³ − 2·X1·H²
        self.y = y3.normalize_weak(); // R·(X1·H² − X3) − Y1·H³
    }

    /// Whether the affine x of this point, reduced mod n, equals the scalar `r`
    /// (`r` in 1..n), without an inversion: `X == x·Z²` for `x = r` or `x = r + n < p`.
    fn x_mod_n_is(&self, r: &Scalar) -> bool {
        if self.infinity {
            return false;
        }
        let zz = self.z.square();
        let r_bytes = r.to_bytes();
        let r_fe = Option::<Fe>::from(Fe::from_bytes(&r_bytes)).expect("r < n < p");
        let matches = |x: Fe| bool::from((x * zz + self.x.negate(1)).normalizes_to_zero());
        if matches(r_fe) {
            return true;
        }
        // x in n..p reduces to x − n; such an x is r + n with r < p − n.
        if r_bytes.as_slice() < P_MINUS_N.as_slice() {
            let n_fe =
                Option::<Fe>::from(Fe::from_bytes(&FieldBytes::from(N_BYTES))).expect("n < p");
            return matches((r_fe + n_fe).normalize_weak());
        }
        false
    }
}

impl Jacobian {
    /// Whether this point is exactly the `R` a recovery id names for `r`: affine x is
    /// `r` (or `r + n` when `x_reduced`), and affine y is odd iff `y_odd`.
    fn is_r_of(&self, r: &Scalar, x_reduced: bool, y_odd: bool) -> bool {
        if self.infinity {
            return false;
        }
        let r_bytes = r.to_bytes();
        let mut x = Option::<Fe>::from(Fe::from_bytes(&r_bytes)).expect("r < n < p");
        if x_reduced {
            if r_bytes.as_slice() >= P_MINUS_N.as_slice() {
                return false; // r + n would not be a field element
            }
            let n_fe =
                Option::<Fe>::from(Fe::from_bytes(&FieldBytes::from(N_BYTES))).expect("n < p");
            x = (x + n_fe).normalize_weak();
        }
        let zz = self.z.square();
        if !bool::from((x * zz + self.x.negate(1)).normalizes_to_zero()) {
            return false;
        }
        let Some(z_inv) = Option::<Fe>::from(self.z.invert()) else { return false };
        let y = (self.y * (z_inv.square() * z_inv)).normalize();
        bool::from(y.is_odd()) == y_odd
    }
}

/// The group order n, big-endian.
const N_BYTES: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// p − n, big-endian: the field elements at or above n (which reduce mod n to x − n).
const P_MINUS_N: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x45, 0x51, 0x23, 0x19, 0x50, 0xb7, 0x5f,
    0xc4, 0x40, 0x2d, 0xa1, 0x72, 0x2f, 0xc9, 0xba, 0xee,
];

/// Multiples `j·2^(w·s·i)·P` for `j = 1..=2^(w-1)`, for every stored window `i`, affine.
struct Table {
    /// Digit width.
    w: u32,
    /// Windows reached by doublings between stored ones (1: every window stored).
    combs: usize,
    /// Stored windows.
    stored: usize,
    points: Vec<Affine>,
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
        let points = points.iter().map(Affine::from_k256).collect();
        Table { w, combs, stored, points }
    }

    /// `acc += d·2^(w·s·i)·P` for a signed digit `d` of stored window `i`.
    #[inline]
    fn add_digit(&self, acc: &mut Jacobian, i: usize, d: i32) {
        if d == 0 {
            return;
        }
        let half = 1usize << (self.w - 1);
        acc.add(&self.points[i * half + d.unsigned_abs() as usize - 1], d < 0);
    }

    /// `acc += k·P`; `acc` must be the identity if `combs > 1` (it is doubled).
    fn mul_add(&self, acc: &mut Jacobian, k: &Scalar) {
        let mut digits = [0i32; MAX_WINDOWS];
        let n = windows(self.w);
        signed_digits(k, self.w, &mut digits[..n]);
        for t in (0..self.combs).rev() {
            if t != self.combs - 1 {
                for _ in 0..self.w {
                    acc.double();
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
    /// Precompute the table (costs about ten table verifications).
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
        self.table.points.len() * std::mem::size_of::<Affine>()
    }

    /// ECDSA verification of `signature` over the 32-byte `prehash`, with the same
    /// answer as k256's `VerifyingKey::verify_prehash` (which also refuses high S).
    pub fn verify_prehash(&self, prehash: &[u8; 32], signature: &Signature) -> bool {
        self.r_point(prehash, signature).is_some_and(|(acc, r)| acc.x_mod_n_is(&r))
    }

    /// Strict verification of a Bitcoin compact signature: as [`KeyTable::verify_prehash`],
    /// and the recovery id must name the point `R` the check computed (y parity, and
    /// whether x overflowed n), so that the signature recovers exactly this key, as
    /// recovery (and Bitcoin Core) would have it. One field inversion more.
    pub fn verify_compact(&self, prehash: &[u8; 32], sig: &CompactSignature) -> bool {
        self.r_point(prehash, &sig.signature).is_some_and(|(acc, r)| {
            acc.is_r_of(&r, sig.recovery_id.is_x_reduced(), sig.recovery_id.is_y_odd())
        })
    }

    /// `R = u1·G + u2·Q` with `r`, or `None` for high S.
    fn r_point(&self, prehash: &[u8; 32], signature: &Signature) -> Option<(Jacobian, Scalar)> {
        let (r, s) = signature.split_scalars();
        if bool::from(s.is_high()) {
            return None;
        }
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*prehash));
        let s_inv: Scalar = *s.invert_vartime();
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let mut acc = Jacobian::IDENTITY;
        self.table.mul_add(&mut acc, &u2);
        G_TABLE.mul_add(&mut acc, &u1);
        Some((acc, *r))
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
/// the exchange for every envelope.
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
            return if table.verify_compact(hash, sig) {
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
        // The key's own valid signature with its recovery id flipped (y parity), which
        // recovers another key: what Bitcoin Core refuses.
        let flipped = |msg: &str| {
            let mut sig = CompactSignature::from_base64(&k.sign_message(msg)).unwrap();
            let b = sig.recovery_id.to_byte() ^ 1;
            sig.recovery_id = k256::ecdsa::RecoveryId::from_byte(b).unwrap();
            cache.verify(&k.address(), &message_hash(msg), &sig)
        };
        // Another key's signature, and a flipped recovery id, are refused at every stage.
        let refused = |c: &dyn Fn(&PrivateKey, &str) -> Result<Checked, IdentityError>| {
            assert!(matches!(c(&other, "x"), Err(IdentityError::NotSigned(_))));
            assert!(flipped("y").is_err());
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

    /// Affine coordinates of a Jacobian point (None for the identity), with an inversion.
    use k256::elliptic_curve::group::Group as _;

    fn affine_of(p: &Jacobian) -> Option<(FieldBytes, FieldBytes)> {
        if p.infinity {
            return None;
        }
        let zi = Option::<Fe>::from(p.z.invert()).expect("z of a finite point is not zero");
        let zi2 = zi.square();
        let x = (p.x * zi2).normalize();
        let y = (p.y * (zi2 * zi)).normalize();
        Some((x.to_bytes(), y.to_bytes()))
    }

    fn affine_of_k256(p: &ProjectivePoint) -> Option<(FieldBytes, FieldBytes)> {
        if bool::from(p.is_identity()) {
            return None;
        }
        let a = p.to_affine();
        Some((a.x(), a.y()))
    }

    fn jacobian_of(p: &ProjectivePoint) -> Jacobian {
        let mut j = Jacobian::IDENTITY;
        if !bool::from(p.is_identity()) {
            j.add(&Affine::from_k256(&p.to_affine()), false);
        }
        j
    }

    #[test]
    fn tables_multiply_like_k256() {
        let q = ProjectivePoint::GENERATOR * Scalar::from(12345u64);
        for (w, combs) in [(4, 1), (5, 2), (6, 4), (7, 1), (6, 3), (8, 1), (8, 2)] {
            let t = Table::new(q, w, combs);
            for k in [
                Scalar::ZERO,
                Scalar::ONE,
                -Scalar::ONE,
                Scalar::from(u64::MAX),
                -Scalar::from(977u64),
            ] {
                let mut acc = Jacobian::IDENTITY;
                t.mul_add(&mut acc, &k);
                assert_eq!(affine_of(&acc), affine_of_k256(&(q * k)), "w={w} combs={combs}");
            }
        }
    }

    #[test]
    fn jacobian_edge_cases_agree_with_k256() {
        let g = ProjectivePoint::GENERATOR;
        let p = g * Scalar::from(99u64);
        let pa = Affine::from_k256(&p.to_affine());
        // P + P goes through the doubling branch of the addition.
        let mut a = jacobian_of(&p);
        a.add(&pa, false);
        assert_eq!(affine_of(&a), affine_of_k256(&p.double()));
        // P + (−P) is the identity, and the identity plus P is P again.
        let mut b = jacobian_of(&p);
        b.add(&pa, true);
        assert!(b.infinity);
        b.add(&pa, false);
        assert_eq!(affine_of(&b), affine_of_k256(&p));
        // Doubling the identity keeps it; −P from the identity.
        let mut c = Jacobian::IDENTITY;
        c.double();
        assert!(c.infinity);
        c.add(&pa, true);
        assert_eq!(affine_of(&c), affine_of_k256(&-p));
        // A long chain of doublings and additions against k256's complete formulas.
        let (mut j, mut k) = (jacobian_of(&g), g);
        for i in 0..300u64 {
            j.double();
            k = k.double();
            let e = g * Scalar::from(i * 7 + 1);
            j.add(&Affine::from_k256(&e.to_affine()), i % 3 == 0);
            k += if i % 3 == 0 { -e } else { e };
        }
        assert_eq!(affine_of(&j), affine_of_k256(&k));
    }

    #[test]
    fn x_comparison_covers_x_at_or_above_n() {
        // x_mod_n_is reads only X and Z, so it can be tried on x values no point has.
        let fe = |b: [u8; 32]| Option::<Fe>::from(Fe::from_bytes(&FieldBytes::from(b))).unwrap();
        let small = |v: u64| {
            let mut b = [0u8; 32];
            b[24..].copy_from_slice(&v.to_be_bytes());
            b
        };
        let z = fe(small(3));
        let zz = z.square();
        let at = |x: Fe| Jacobian { x: (x * zz).normalize_weak(), y: Fe::ONE, z, infinity: false };
        let n_plus_5 = (fe(N_BYTES) + fe(small(5))).normalize_weak();
        assert!(at(n_plus_5).x_mod_n_is(&Scalar::from(5u64)));
        assert!(!at(n_plus_5).x_mod_n_is(&Scalar::from(6u64)));
        assert!(at(fe(small(5))).x_mod_n_is(&Scalar::from(5u64)));
        assert!(!at(fe(small(5))).x_mod_n_is(&Scalar::from(4u64)));
        // r at or above p − n: r + n would exceed p, so only x = r matches.
        let r = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(P_MINUS_N));
        assert!(at(fe(P_MINUS_N)).x_mod_n_is(&r));
        assert!(!at((fe(P_MINUS_N) + fe(N_BYTES)).normalize_weak()).x_mod_n_is(&r));
        assert!(!Jacobian::IDENTITY.x_mod_n_is(&Scalar::ONE));
    }

    #[test]
    fn a_key_table_is_352_affine_points() {
        let t = KeyTable::new(key([3u8; 32]).unwrap().verifying_key());
        // 43 windows of base 2^6, every 4th stored (11), 32 multiples each.
        // 80 bytes a point in release builds (≈ 28 KiB); k256's field elements carry
        // magnitude bookkeeping with debug assertions on, so the bytes are not fixed here.
        assert_eq!(t.table_bytes(), 352 * std::mem::size_of::<Affine>());
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
