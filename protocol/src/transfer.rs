//! The buyer ↔ seller transfer (PROTOCOL §5) as wire types: the work offer and its
//! bitmap answer, chunk upload framing and the result container.
//! Pure functions, no IO; the HTTP side lives in `bitwrk-host` (docs/PROTOCOL.md).

use crate::hash::Hash32;
use crate::work::{WorkManifest, bitmap_decode, bitmap_encode};

/// Limits both sides enforce on the transfer. One place, each with its reason.
pub mod limits {
    /// Largest work offer body: a manifest naming ~30 000 chunk hashes (≈ 2 GB of input at
    /// the 64 KiB average chunk) plus the secret; far more than any article accepts.
    pub const OFFER_BYTES_MAX: usize = 4 * 1024 * 1024;
    /// Most chunk hashes in one work manifest (see `OFFER_BYTES_MAX`).
    pub const CHUNKS_PER_WORK_MAX: usize = 30_000;
    /// Largest body of one chunk upload: a batch of whole chunks. 16 MiB keeps the
    /// seller's per-request memory small while a batch still amortises the round trip.
    pub const CHUNK_BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
    /// Bytes of framing before each chunk in an upload (big-endian u32 length).
    pub const FRAME_HEADER_BYTES: usize = 4;
    /// Largest result container (plaintext): 32 outputs at the 1 GiB cap would be absurd;
    /// a seller refuses results above this, a buyer refuses to download more.
    pub const RESULT_BYTES_MAX: u64 = 1 << 30;
    /// Longest output name in a result container.
    pub const NAME_BYTES_MAX: usize = 64;
    /// Most outputs in a result container (the manifest cap).
    pub const OUTPUTS_MAX: usize = crate::manifest::caps::IO_COUNT_MAX;
    /// Longest result long poll the seller honours per request.
    pub const RESULT_WAIT_MS_MAX: u64 = 30_000;
}

/// Path prefix of the transfer endpoints on the seller's external port.
pub const WORK_PATH: &str = "/v1/work";

/// Header that authenticates the buyer on every transfer request after the offer
/// (chunks, result), and either party on an evidence upload to the exchange: 64 hex of
/// [`transfer_auth`] of the tx's secret. Only the buyer and the seller know the secret
/// (the buyer sends it in the offer, which the seller checks against the committed
/// `secret_hash`; the exchange never shows it), so a stranger who knows every public id
/// cannot read a result, feed chunks into a trade, or hold up a dispute.
pub const TRANSFER_AUTH_HEADER: &str = "x-bitwrk-transfer-auth";

/// Domain tag of [`transfer_auth`], so the credential is never the hash of anything else.
pub const TRANSFER_AUTH_DOMAIN: &[u8] = b"bitwrk transfer auth v1";

/// The buyer's transfer credential: SHA256("bitwrk transfer auth v1" ‖ secret). A hash
/// and not the secret itself, so a leaked header does not also prove the secret to the
/// exchange.
pub fn transfer_auth(secret: &Hash32) -> Hash32 {
    let mut buf = Vec::with_capacity(TRANSFER_AUTH_DOMAIN.len() + 32);
    buf.extend_from_slice(TRANSFER_AUTH_DOMAIN);
    buf.extend_from_slice(&secret.0);
    Hash32::of(&buf)
}

/// Whether a [`TRANSFER_AUTH_HEADER`] value is the credential `expected`, compared in
/// constant time (a byte-wise early exit would let a prober learn it byte by byte).
pub fn transfer_auth_matches(expected: &Hash32, header: &[u8]) -> bool {
    let mut given = [0u8; 32];
    if header.len() != 64 || hex::decode_to_slice(header, &mut given).is_err() {
        return false;
    }
    given.iter().zip(expected.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// `POST /v1/work/{tx}`: the work manifest and the buyer's secret (64 hex).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOffer {
    pub manifest: WorkManifest,
    /// The 32-byte secret whose SHA256(work_hash ‖ secret) the buyer committed to.
    pub secret: Hash32,
}

/// Answer to a [`WorkOffer`]: which of the manifest's distinct chunks (in
/// [`WorkManifest::distinct_chunks`] order) the seller lacks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkOfferAnswer {
    /// Hex of the bitmap over the distinct chunks, most significant bit first; a set bit
    /// means "send this chunk".
    pub missing_bitmap: String,
    /// How many bits are set (a cross-check for the bitmap).
    pub missing_count: u64,
}

impl WorkOfferAnswer {
    pub fn new(missing: &[bool]) -> WorkOfferAnswer {
        WorkOfferAnswer {
            missing_bitmap: hex::encode(bitmap_encode(missing)),
            missing_count: missing.iter().filter(|b| **b).count() as u64,
        }
    }

    /// The bitmap over `n` distinct chunks, checked against `missing_count`.
    pub fn missing(&self, n: usize) -> Result<Vec<bool>, TransferError> {
        let bytes = hex::decode(&self.missing_bitmap).map_err(|_| TransferError::BadBitmap)?;
        let bits = bitmap_decode(&bytes, n).ok_or(TransferError::BadBitmap)?;
        if bits.iter().filter(|b| **b).count() as u64 != self.missing_count {
            return Err(TransferError::BadBitmap);
        }
        Ok(bits)
    }
}

/// Answer to a chunk upload: how many chunks the seller still lacks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunksAnswer {
    pub still_missing: u64,
}

/// Answer to a result poll that timed out before the result was ready (HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotReady {
    /// `receiving` (chunks still missing) or `running`.
    pub stage: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TransferError {
    #[error("missing-chunk bitmap is malformed or does not match its count")]
    BadBitmap,
    #[error("chunk upload is truncated or a frame is larger than a chunk may be")]
    BadFrame,
    #[error("result container is malformed: {0}")]
    BadResult(String),
}

/// Frame chunks for an upload: each as big-endian u32 length, then the bytes.
pub fn frame_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// Split an upload body back into chunks (borrowed). Each frame must be non-empty and at
/// most [`crate::work::CHUNK_MAX_BYTES`] long.
pub fn unframe_chunks(body: &[u8]) -> Result<Vec<&[u8]>, TransferError> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (head, tail) =
            rest.split_at_checked(limits::FRAME_HEADER_BYTES).ok_or(TransferError::BadFrame)?;
        let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > crate::work::CHUNK_MAX_BYTES as usize {
            return Err(TransferError::BadFrame);
        }
        let (chunk, tail) = tail.split_at_checked(len).ok_or(TransferError::BadFrame)?;
        out.push(chunk);
        rest = tail;
    }
    Ok(out)
}

/// Magic at the start of a result container, with its version.
pub const RESULT_MAGIC: &[u8; 4] = b"BWR1";

/// The plaintext the seller encrypts: `BWR1`, u32 count, then per output u16 name length,
/// name (UTF-8), u64 data length, data. All integers big-endian. Outputs in the order given.
pub fn encode_result(outputs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let total: usize = outputs.iter().map(|(n, d)| 2 + n.len() + 8 + d.len()).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(RESULT_MAGIC);
    out.extend_from_slice(&(outputs.len() as u32).to_be_bytes());
    for (name, data) in outputs {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(data.len() as u64).to_be_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// Parse a result container. Checks framing, name rules and that no name repeats; the
/// caller checks names and sizes against the article's manifest.
pub fn decode_result(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, TransferError> {
    let bad = |s: &str| TransferError::BadResult(s.to_string());
    let rest = bytes.strip_prefix(RESULT_MAGIC.as_slice()).ok_or_else(|| bad("wrong magic"))?;
    let (count, mut rest) = rest.split_at_checked(4).ok_or_else(|| bad("truncated count"))?;
    let count = u32::from_be_bytes(count.try_into().expect("4 bytes")) as usize;
    if count > limits::OUTPUTS_MAX {
        return Err(bad("too many outputs"));
    }
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(count);
    for _ in 0..count {
        let (nl, r) = rest.split_at_checked(2).ok_or_else(|| bad("truncated name length"))?;
        let nl = u16::from_be_bytes(nl.try_into().expect("2 bytes")) as usize;
        if nl == 0 || nl > limits::NAME_BYTES_MAX {
            return Err(bad("output name empty or too long"));
        }
        let (name, r) = r.split_at_checked(nl).ok_or_else(|| bad("truncated name"))?;
        let name =
            std::str::from_utf8(name).map_err(|_| bad("output name is not UTF-8"))?.to_string();
        let (dl, r) = r.split_at_checked(8).ok_or_else(|| bad("truncated data length"))?;
        let dl = u64::from_be_bytes(dl.try_into().expect("8 bytes"));
        let dl = usize::try_from(dl).map_err(|_| bad("data length out of range"))?;
        let (data, r) = r.split_at_checked(dl).ok_or_else(|| bad("truncated data"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(bad("an output name repeats"));
        }
        out.push((name, data.to_vec()));
        rest = r;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn result_container_layout() {
        let enc = encode_result(&[("a".into(), vec![1, 2])]);
        assert_eq!(enc, b"BWR1\0\0\0\x01\0\x01a\0\0\0\0\0\0\0\x02\x01\x02".to_vec());
    }

    fn check_bad_result(bytes: &[u8]) {
        assert!(decode_result(bytes).is_err(), "{bytes:?} was accepted");
    }

    #[test]
    fn malformed_results_are_refused() {
        check_bad_result(b"");
        check_bad_result(b"BWR2\0\0\0\0");
        check_bad_result(b"BWR1\0\0\0\x01");
        check_bad_result(b"BWR1\0\0\0\x01\0\0");
        check_bad_result(b"BWR1\0\0\0\x01\0\x01a\0\0\0\0\0\0\0\x03\x01\x02");
        check_bad_result(b"BWR1\0\0\0\0x");
        check_bad_result(&encode_result(&[("a".into(), vec![]), ("a".into(), vec![])]));
        check_bad_result(&encode_result(&[("\u{ff}".repeat(40), vec![])]));
    }

    #[test]
    fn frames_are_checked() {
        assert!(unframe_chunks(&[0, 0, 0, 0]).is_err());
        assert!(unframe_chunks(&[0, 0, 0, 2, 1]).is_err());
        assert!(unframe_chunks(&[0, 0]).is_err());
        assert!(unframe_chunks(&[0, 4, 0, 1]).is_err());
        assert_eq!(unframe_chunks(&[]).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn transfer_auth_is_domain_separated_and_checked() {
        let secret = Hash32([7; 32]);
        let auth = transfer_auth(&secret);
        assert_ne!(
            auth,
            Hash32::of(&secret.0),
            "the credential is not the plain hash of the secret"
        );
        assert!(transfer_auth_matches(&auth, auth.to_hex().as_bytes()));
        assert!(!transfer_auth_matches(&auth, transfer_auth(&Hash32([8; 32])).to_hex().as_bytes()));
        assert!(
            !transfer_auth_matches(&auth, secret.to_hex().as_bytes()),
            "the secret itself is not the credential"
        );
        assert!(!transfer_auth_matches(&auth, b""));
        assert!(!transfer_auth_matches(&auth, &auth.to_hex().as_bytes()[..63]));
        assert!(!transfer_auth_matches(&auth, "zz".repeat(32).as_bytes()));
    }

    #[test]
    fn bitmap_answer_checks_count() {
        let a = WorkOfferAnswer::new(&[true, false, true]);
        assert_eq!(a.missing(3).unwrap(), vec![true, false, true]);
        assert!(a.missing(9).is_err());
        let lie = WorkOfferAnswer { missing_count: 1, ..a };
        assert!(lie.missing(3).is_err());
    }

    proptest! {
        #[test]
        fn result_round_trip(outs in proptest::collection::btree_map("[a-z]{1,10}", proptest::collection::vec(any::<u8>(), 0..300), 0..6)) {
            let outs: Vec<(String, Vec<u8>)> = outs.into_iter().collect();
            prop_assert_eq!(decode_result(&encode_result(&outs)).unwrap(), outs);
        }

        #[test]
        fn frames_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..500), 0..8)) {
            let body = frame_chunks(chunks.iter().map(|c| c.as_slice()));
            let back: Vec<Vec<u8>> = unframe_chunks(&body).unwrap().into_iter().map(|c| c.to_vec()).collect();
            prop_assert_eq!(back, chunks);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_result(&bytes);
            let _ = unframe_chunks(&bytes);
        }
    }
}
