//! Result encryption (PROTOCOL §5): ChaCha20-Poly1305 under a one-time 256-bit key. A wire
//! format: the seller seals, the buyer opens, and the exchange opens the evidence of a
//! disputed result with the key the seller committed.
//!
//! The nonce is all zeros: every key encrypts exactly one message (a fresh random key per
//! result), so a nonce is never reused under a key. The transaction id is the associated
//! data, so a ciphertext cannot be passed off as the result of another transaction.

use crate::{Hash32, Id};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The fixed nonce for one-time keys.
const NONCE: [u8; 12] = [0u8; 12];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the result does not decrypt with the key from the transaction (wrong key or altered bytes)"
)]
pub struct DecryptError;

/// A fresh random one-time key.
pub fn new_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("the operating system has no random source");
    k
}

/// Encrypt `plain` for transaction `tx`; returns ciphertext ‖ 16-byte tag and its SHA256
/// (the `enc_result_hash`).
pub fn seal(key: &[u8; 32], tx: &Id, plain: &[u8]) -> (Vec<u8>, Hash32) {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let enc = cipher
        .encrypt(Nonce::from_slice(&NONCE), Payload { msg: plain, aad: tx.as_str().as_bytes() })
        .expect("ChaCha20-Poly1305 encrypts any length below 256 GiB");
    let h = Hash32::of(&enc);
    (enc, h)
}

/// Decrypt in place what [`seal`] made for `tx` (no second buffer: evidence can be
/// up to a GiB). On success `enc` holds the plaintext.
pub fn open_in_place(key: &[u8; 32], tx: &Id, enc: &mut Vec<u8>) -> Result<(), DecryptError> {
    use chacha20poly1305::aead::AeadInPlace;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt_in_place(Nonce::from_slice(&NONCE), tx.as_str().as_bytes(), enc)
        .map_err(|_| DecryptError)
}

/// Decrypt what [`seal`] made for `tx`.
pub fn open(key: &[u8; 32], tx: &Id, enc: &[u8]) -> Result<Vec<u8>, DecryptError> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(&NONCE), Payload { msg: enc, aad: tx.as_str().as_bytes() })
        .map_err(|_| DecryptError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = new_key();
        let tx = Id::new("t1").unwrap();
        let (enc, h) = seal(&k, &tx, b"result");
        assert_eq!(h, Hash32::of(&enc));
        assert_eq!(open(&k, &tx, &enc).unwrap(), b"result");
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert_eq!(open(&k, &tx, &bad), Err(DecryptError));
        assert_eq!(open(&new_key(), &tx, &enc), Err(DecryptError));
        assert_eq!(open(&k, &Id::new("t2").unwrap(), &enc), Err(DecryptError));
        let mut buf = enc.clone();
        open_in_place(&k, &tx, &mut buf).unwrap();
        assert_eq!(buf, b"result");
        let mut buf = bad;
        assert_eq!(open_in_place(&k, &tx, &mut buf), Err(DecryptError));
    }
}
