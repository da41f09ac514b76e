//! Accounts: secp256k1 keys, WIF, P2PKH addresses and Bitcoin signed messages (PROTOCOL §1).
//!
//! Signing always emits low-S compact signatures with header 31 + recid (compressed key).
//! Verification recovers the public key, derives the address and compares; high-S
//! signatures are refused, as are headers for segwit addresses (BIP137 35..42).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
/// A public key (re-exported, so verifiers need no k256 dependency of their own).
pub use k256::ecdsa::VerifyingKey;
use k256::ecdsa::{RecoveryId, Signature, SigningKey};
use ripemd::Ripemd160;
use sha2::{Digest, Sha256};

/// Errors of key handling and signature checking. The variant names say what a user must fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IdentityError {
    #[error("not valid base58check: {0}")]
    Base58(String),
    #[error("not a WIF private key: {0}")]
    Wif(String),
    #[error("not a mainnet P2PKH address: {0}")]
    Address(String),
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    #[error("signature has a high S value; only low-S signatures are accepted")]
    HighS,
    #[error("no public key can be recovered from this signature")]
    PubkeyNotRecovered,
    #[error("signature does not match address {0}")]
    NotSigned(String),
}

type Result<T> = std::result::Result<T, IdentityError>;

/// SHA256(SHA256(data)).
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// RIPEMD160(SHA256(data)).
pub fn hash160(data: &[u8]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(data)).into()
}

/// base58check encoding: payload ‖ first 4 bytes of sha256d(payload).
pub fn base58check_encode(payload: &[u8]) -> String {
    let mut v = payload.to_vec();
    v.extend_from_slice(&sha256d(payload)[..4]);
    bs58::encode(v).into_string()
}

/// base58check decoding with checksum verification.
pub fn base58check_decode(s: &str) -> Result<Vec<u8>> {
    let raw = bs58::decode(s).into_vec().map_err(|e| IdentityError::Base58(e.to_string()))?;
    if raw.len() < 5 {
        return Err(IdentityError::Base58("too short".into()));
    }
    let (payload, check) = raw.split_at(raw.len() - 4);
    if sha256d(payload)[..4] != *check {
        return Err(IdentityError::Base58("checksum mismatch".into()));
    }
    Ok(payload.to_vec())
}

/// A mainnet P2PKH address, the id of an account. Always valid once constructed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

/// Longest base58 text a P2PKH address can have (25 bytes).
const ADDRESS_CHARS_MAX: usize = 35;

impl Address {
    /// The address of a serialized public key (33 or 65 bytes).
    pub fn from_pubkey_bytes(pubkey: &[u8]) -> Address {
        let mut payload = Vec::with_capacity(21);
        payload.push(0x00);
        payload.extend_from_slice(&hash160(pubkey));
        Address(base58check_encode(&payload))
    }

    /// The compressed-key address of a verifying key: the account id.
    pub fn from_verifying_key(key: &VerifyingKey) -> Address {
        Address::from_pubkey_bytes(&key.to_sec1_bytes_compressed())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

trait CompressedSec1 {
    fn to_sec1_bytes_compressed(&self) -> Vec<u8>;
    fn to_sec1_bytes_uncompressed(&self) -> Vec<u8>;
}

impl CompressedSec1 for VerifyingKey {
    fn to_sec1_bytes_compressed(&self) -> Vec<u8> {
        self.to_sec1_point(true).as_bytes().to_vec()
    }
    fn to_sec1_bytes_uncompressed(&self) -> Vec<u8> {
        self.to_sec1_point(false).as_bytes().to_vec()
    }
}

impl FromStr for Address {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Address> {
        if s.len() > ADDRESS_CHARS_MAX {
            return Err(IdentityError::Address(format!("{s:?} is too long")));
        }
        let payload =
            base58check_decode(s).map_err(|e| IdentityError::Address(format!("{s:?}: {e}")))?;
        if payload.len() != 21 {
            return Err(IdentityError::Address(format!("{s:?} has the wrong length")));
        }
        if payload[0] != 0x00 {
            return Err(IdentityError::Address(format!(
                "{s:?} has version byte 0x{:02x}; only mainnet P2PKH (0x00) names an account",
                payload[0]
            )));
        }
        Ok(Address(s.to_string()))
    }
}

impl TryFrom<String> for Address {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Address> {
        s.parse()
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.0)
    }
}

/// A private key with the WIF compression flag it was loaded with.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
    compressed: bool,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.address())
    }
}

impl PrivateKey {
    /// A fresh random key (compressed) from the operating system's random source.
    pub fn generate() -> PrivateKey {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("the operating system has no random source");
            if let Ok(k) = PrivateKey::from_secret_bytes(&bytes, true) {
                return k;
            }
        }
    }

    /// A key from its 32 secret bytes.
    pub fn from_secret_bytes(bytes: &[u8], compressed: bool) -> Result<PrivateKey> {
        let key = SigningKey::from_slice(bytes).map_err(|_| {
            IdentityError::Wif("secret is zero or not below the curve order".into())
        })?;
        Ok(PrivateKey { key, compressed })
    }

    /// Parse mainnet WIF, compressed (`K`/`L`) or uncompressed (`5`).
    pub fn from_wif(wif: &str) -> Result<PrivateKey> {
        let wif = wif.trim();
        let payload = base58check_decode(wif).map_err(|e| IdentityError::Wif(e.to_string()))?;
        let compressed = match payload.len() {
            33 => false,
            34 if payload[33] == 0x01 => true,
            34 => return Err(IdentityError::Wif("compression flag is not 0x01".into())),
            n => return Err(IdentityError::Wif(format!("payload of {n} bytes"))),
        };
        match payload[0] {
            0x80 => {}
            0xef => return Err(IdentityError::Wif("testnet key; bitwrk uses mainnet WIF".into())),
            b => return Err(IdentityError::Wif(format!("version byte 0x{b:02x} is not 0x80"))),
        }
        PrivateKey::from_secret_bytes(&payload[1..33], compressed)
    }

    /// Mainnet WIF (compressed form if the key is compressed).
    pub fn to_wif(&self) -> String {
        let mut payload = vec![0x80];
        payload.extend_from_slice(&self.key.to_bytes());
        if self.compressed {
            payload.push(0x01);
        }
        base58check_encode(&payload)
    }

    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// Serialized public key in the form the WIF flag asks for.
    pub fn pubkey_bytes(&self) -> Vec<u8> {
        let vk = self.verifying_key();
        if self.compressed {
            vk.to_sec1_bytes_compressed()
        } else {
            vk.to_sec1_bytes_uncompressed()
        }
    }

    /// The P2PKH address of this key (its account id when compressed).
    pub fn address(&self) -> Address {
        Address::from_pubkey_bytes(&self.pubkey_bytes())
    }

    /// Compact recoverable signature over a 32-byte hash: header ‖ r ‖ s, low-S.
    pub fn sign_hash(&self, hash: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self.key.sign_prehash_recoverable(hash);
        // k256 emits low-S already; normalise anyway and keep recid consistent.
        let (sig, recid) = if sig.normalize_s() != sig {
            (sig.normalize_s(), RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()))
        } else {
            (sig, recid)
        };
        let mut out = [0u8; 65];
        out[0] = 27 + recid.to_byte() + if self.compressed { 4 } else { 0 };
        out[1..].copy_from_slice(&sig.to_bytes());
        out
    }

    /// A Bitcoin signed message signature, base64 (what `signmessage` prints).
    pub fn sign_message(&self, message: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign_hash(&message_hash(message)))
    }
}

/// Bitcoin's compact size prefix.
pub fn compact_size(n: u64) -> Vec<u8> {
    match n {
        0..0xfd => vec![n as u8],
        0xfd..=0xffff => {
            let mut v = vec![0xfd];
            v.extend_from_slice(&(n as u16).to_le_bytes());
            v
        }
        0x1_0000..=0xffff_ffff => {
            let mut v = vec![0xfe];
            v.extend_from_slice(&(n as u32).to_le_bytes());
            v
        }
        _ => {
            let mut v = vec![0xff];
            v.extend_from_slice(&n.to_le_bytes());
            v
        }
    }
}

/// The hash a Bitcoin signed message signs.
pub fn message_hash(message: &str) -> [u8; 32] {
    const MAGIC: &[u8] = b"\x18Bitcoin Signed Message:\n";
    let mut data = Vec::with_capacity(MAGIC.len() + 9 + message.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&compact_size(message.len() as u64));
    data.extend_from_slice(message.as_bytes());
    sha256d(&data)
}

/// A decoded compact signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactSignature {
    pub signature: Signature,
    pub recovery_id: RecoveryId,
    pub compressed: bool,
}

impl CompactSignature {
    /// Decode base64 header ‖ r ‖ s. Refuses high S and headers outside 27..=34.
    pub fn from_base64(sig_b64: &str) -> Result<CompactSignature> {
        if sig_b64.len() > 100 {
            return Err(IdentityError::MalformedSignature("too long".into()));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .map_err(|e| IdentityError::MalformedSignature(format!("not base64: {e}")))?;
        CompactSignature::from_bytes(&raw)
    }

    pub fn from_bytes(raw: &[u8]) -> Result<CompactSignature> {
        if raw.len() != 65 {
            return Err(IdentityError::MalformedSignature(format!(
                "{} bytes, expected 65",
                raw.len()
            )));
        }
        let header = raw[0];
        if !(27..=34).contains(&header) {
            // As Bitcoin Core: a header outside P2PKH's range recovers no key.
            return Err(IdentityError::PubkeyNotRecovered);
        }
        let compressed = header >= 31;
        let recovery_id = RecoveryId::from_byte((header - 27) & 3)
            .ok_or_else(|| IdentityError::MalformedSignature("bad recovery id".into()))?;
        let signature =
            Signature::from_slice(&raw[1..]).map_err(|_| IdentityError::PubkeyNotRecovered)?;
        if signature.normalize_s() != signature {
            return Err(IdentityError::HighS);
        }
        Ok(CompactSignature { signature, recovery_id, compressed })
    }

    /// Recover the signer's key from a message hash.
    pub fn recover(&self, hash: &[u8; 32]) -> Result<VerifyingKey> {
        VerifyingKey::recover_from_prehash(hash, &self.signature, self.recovery_id)
            .map_err(|_| IdentityError::PubkeyNotRecovered)
    }

    /// The address of the key recovered from `hash`, in the form the header names.
    pub fn recover_address(&self, hash: &[u8; 32]) -> Result<Address> {
        let vk = self.recover(hash)?;
        let bytes = if self.compressed {
            vk.to_sec1_bytes_compressed()
        } else {
            vk.to_sec1_bytes_uncompressed()
        };
        Ok(Address::from_pubkey_bytes(&bytes))
    }
}

/// Verify a Bitcoin signed message: recover, derive the address, compare.
pub fn verify_message(address: &str, signature_b64: &str, message: &str) -> Result<()> {
    let addr: Address = address.parse()?;
    let sig = CompactSignature::from_base64(signature_b64)?;
    let recovered = sig.recover_address(&message_hash(message))?;
    if recovered != addr {
        return Err(IdentityError::NotSigned(addr.to_string()));
    }
    Ok(())
}

/// Verify against a public key already known for the address (the verifier's cache).
/// Strict like [`verify_message`]: the signature's recovery id must recover this very
/// key (Bitcoin Core refuses a valid signature with a flipped recovery id, and so must a
/// verifier that happens to know the key already). Refuses high S.
pub fn verify_with_key(key: &VerifyingKey, signature_b64: &str, message: &str) -> Result<()> {
    let sig = CompactSignature::from_base64(signature_b64)?;
    verify_prehash(key, &message_hash(message), &sig)
}

/// [`verify_with_key`] for a signature already decoded and a message already hashed.
pub fn verify_prehash(key: &VerifyingKey, hash: &[u8; 32], sig: &CompactSignature) -> Result<()> {
    match sig.recover(hash) {
        Ok(k) if k == *key => Ok(()),
        _ => Err(IdentityError::NotSigned(Address::from_verifying_key(key).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_wif_and_sign() {
        let k = PrivateKey::generate();
        assert!(k.to_wif().starts_with(['K', 'L']));
        let k2 = PrivateKey::from_wif(&k.to_wif()).unwrap();
        assert_eq!(k.address(), k2.address());
        let sig = k.sign_message("hello");
        verify_message(k.address().as_str(), &sig, "hello").unwrap();
        verify_with_key(&k.verifying_key(), &sig, "hello").unwrap();
        assert!(verify_message(k.address().as_str(), &sig, "hellp").is_err());
    }

    #[test]
    fn compact_size_boundaries() {
        assert_eq!(compact_size(252), vec![252]);
        assert_eq!(compact_size(253), vec![0xfd, 253, 0]);
        assert_eq!(compact_size(0x1_0000), vec![0xfe, 0, 0, 1, 0]);
    }
}
