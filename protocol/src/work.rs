//! The work a buyer sends (PROTOCOL §5): content-defined chunks (FastCDC 2020) and the
//! canonical work manifest whose SHA256 is the `work_hash`. Pure functions, no IO.

use crate::hash::Hash32;

/// FastCDC 2020 parameters fixed by the protocol: every host must cut the same chunks.
pub const CHUNK_MIN_BYTES: u32 = 16 * 1024;
pub const CHUNK_AVG_BYTES: u32 = 64 * 1024;
pub const CHUNK_MAX_BYTES: u32 = 256 * 1024;

/// One chunk of an input: where it lies and its SHA256 name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub offset: usize,
    pub len: usize,
    pub hash: Hash32,
}

/// Cut `data` into content-defined chunks and name each by SHA256.
pub fn chunk(data: &[u8]) -> Vec<ChunkRef> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, CHUNK_MIN_BYTES, CHUNK_AVG_BYTES, CHUNK_MAX_BYTES)
        .map(|c| ChunkRef {
            offset: c.offset,
            len: c.length,
            hash: Hash32::of(&data[c.offset..c.offset + c.length]),
        })
        .collect()
}

/// One named input of the work. Fields in lexicographic order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkInput {
    pub chunks: Vec<Hash32>,
    pub name: String,
    pub size: u64,
}

/// The canonical work manifest: inputs sorted by name. `work_hash` = SHA256 of its JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkManifest {
    pub inputs: Vec<WorkInput>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum WorkError {
    #[error("work manifest does not parse: {0}")]
    Json(String),
    #[error("work manifest inputs must be sorted by name without duplicates")]
    NotCanonical,
    #[error("input {0:?}: chunk sizes do not add up to its size")]
    SizeMismatch(String),
}

impl WorkManifest {
    /// Build the manifest from named inputs (any order), returning the chunk list too.
    pub fn build<'a>(
        inputs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (WorkManifest, Vec<(String, Vec<ChunkRef>)>) {
        let mut all: Vec<(String, &[u8])> =
            inputs.into_iter().map(|(n, d)| (n.to_string(), d)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        let mut chunks = Vec::new();
        for (name, data) in all {
            let c = chunk(data);
            out.push(WorkInput {
                chunks: c.iter().map(|r| r.hash).collect(),
                name: name.clone(),
                size: data.len() as u64,
            });
            chunks.push((name, c));
        }
        (WorkManifest { inputs: out }, chunks)
    }

    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialises")
    }

    /// SHA256 of the canonical JSON.
    pub fn work_hash(&self) -> Hash32 {
        Hash32::of(&self.canonical_json())
    }

    /// Parse and check canonical order. Sizes are checked against chunks on reassembly.
    pub fn from_json(bytes: &[u8]) -> Result<WorkManifest, WorkError> {
        let m: WorkManifest =
            serde_json::from_slice(bytes).map_err(|e| WorkError::Json(e.to_string()))?;
        if !m.inputs.windows(2).all(|w| w[0].name < w[1].name) {
            return Err(WorkError::NotCanonical);
        }
        Ok(m)
    }

    /// Every distinct chunk hash, in first-seen order.
    pub fn distinct_chunks(&self) -> Vec<Hash32> {
        let mut seen = std::collections::HashSet::new();
        self.inputs
            .iter()
            .flat_map(|i| i.chunks.iter().copied())
            .filter(|h| seen.insert(*h))
            .collect()
    }
}

/// Why a result breaks the contract. One type for every place that judges a result: the
/// buyer before it accepts, the seller before it commits, the exchange in a dispute.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ResultFault {
    #[error("the result does not decrypt with the committed key (wrong key or altered bytes)")]
    Decrypt,
    #[error("the decrypted result is not a valid result container: {0}")]
    Container(String),
    #[error("output {0:?} is not declared by the article")]
    Undeclared(String),
    #[error("output {0:?} appears twice")]
    Repeated(String),
    #[error("output {0:?} is declared but missing")]
    Missing(String),
    #[error("output {name:?} has {bytes} bytes, more than its max_bytes {max}")]
    TooLarge { name: String, bytes: u64, max: u64 },
}

/// Outputs must be exactly the article's declared ones, each once, each within its
/// `max_bytes` (PROTOCOL §5). The one check of outputs against a manifest.
pub fn check_outputs(
    manifest: &crate::Manifest,
    outputs: &[(String, Vec<u8>)],
) -> Result<(), ResultFault> {
    for (i, (name, data)) in outputs.iter().enumerate() {
        let Some(decl) = manifest.output(name) else {
            return Err(ResultFault::Undeclared(name.chars().take(64).collect()));
        };
        if outputs[..i].iter().any(|(n, _)| n == name) {
            return Err(ResultFault::Repeated(name.clone()));
        }
        if data.len() as u64 > decl.max_bytes {
            return Err(ResultFault::TooLarge {
                name: name.clone(),
                bytes: data.len() as u64,
                max: decl.max_bytes,
            });
        }
    }
    if let Some(d) = manifest.outputs.iter().find(|d| !outputs.iter().any(|(n, _)| *n == d.name)) {
        return Err(ResultFault::Missing(d.name.clone()));
    }
    Ok(())
}

/// Judge an encrypted result: decrypt it for `tx` with `key` (in place), decode the
/// container and check the outputs against `manifest`. `Ok` means the seller delivered.
pub fn check_result(
    manifest: &crate::Manifest,
    key: &[u8; 32],
    tx: &crate::Id,
    mut enc: Vec<u8>,
) -> Result<Vec<(String, Vec<u8>)>, ResultFault> {
    crate::crypto::open_in_place(key, tx, &mut enc).map_err(|_| ResultFault::Decrypt)?;
    let outputs =
        crate::transfer::decode_result(&enc).map_err(|e| ResultFault::Container(e.to_string()))?;
    check_outputs(manifest, &outputs)?;
    Ok(outputs)
}

/// A bitmap over a list, most significant bit first (bit i set = item i wanted).
pub fn bitmap_encode(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        if *b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// Read `n` bits back; `None` if the bitmap is too short or has bits set past `n`.
pub fn bitmap_decode(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    if bytes.len() != n.div_ceil(8) {
        return None;
    }
    let bits: Vec<bool> = (0..n).map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0).collect();
    let tail_clear = (n..bytes.len() * 8).all(|i| bytes[i / 8] & (0x80 >> (i % 8)) == 0);
    tail_clear.then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_input_within_bounds() {
        let d = data(3_000_000, 1);
        let c = chunk(&d);
        assert_eq!(c.iter().map(|c| c.len).sum::<usize>(), d.len());
        for w in c.windows(2) {
            assert_eq!(w[0].offset + w[0].len, w[1].offset);
        }
        for x in &c[..c.len() - 1] {
            assert!(x.len >= CHUNK_MIN_BYTES as usize && x.len <= CHUNK_MAX_BYTES as usize);
        }
    }

    #[test]
    fn a_local_edit_changes_few_chunks() {
        let d = data(4_000_000, 2);
        let mut e = d.clone();
        e[2_000_000] ^= 0xff;
        let a: std::collections::HashSet<_> = chunk(&d).into_iter().map(|c| c.hash).collect();
        let b = chunk(&e);
        let new = b.iter().filter(|c| !a.contains(&c.hash)).count();
        assert!(new <= 2, "{new} new chunks");
    }

    #[test]
    fn work_hash_ignores_input_order() {
        let (a, _) = WorkManifest::build([("x", &b"1"[..]), ("y", &b"2"[..])]);
        let (b, _) = WorkManifest::build([("y", &b"2"[..]), ("x", &b"1"[..])]);
        assert_eq!(a.work_hash(), b.work_hash());
        assert_eq!(WorkManifest::from_json(&a.canonical_json()).unwrap(), a);
    }

    proptest! {
        #[test]
        fn bitmap_round_trip(bits in proptest::collection::vec(any::<bool>(), 0..200)) {
            let enc = bitmap_encode(&bits);
            prop_assert_eq!(bitmap_decode(&enc, bits.len()).unwrap(), bits);
        }
    }

    fn manifest() -> crate::Manifest {
        crate::Manifest::from_toml(
            "name = \"m\"\nversion = \"1.0.0\"\nruntime = \"wasm\"\ndescription = \"\"\n\
             module_sha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\"\n\
             [limits]\nfuel = 1000\nmemory_bytes = 65536\nwall_ms = 100\n\
             [[inputs]]\nname = \"a\"\nmedia_type = \"text/plain\"\nmax_bytes = 4\n\
             [[outputs]]\nname = \"x\"\nmedia_type = \"text/plain\"\nmax_bytes = 4\n\
             [[outputs]]\nname = \"y\"\nmedia_type = \"text/plain\"\nmax_bytes = 4\n",
        )
        .unwrap()
    }

    fn check_fault(outputs: &[(&str, &[u8])], fault: Option<ResultFault>) {
        let o: Vec<(String, Vec<u8>)> =
            outputs.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
        assert_eq!(check_outputs(&manifest(), &o).err(), fault, "{outputs:?}");
    }

    #[test]
    fn outputs_against_the_manifest() {
        check_fault(&[("x", b"1234"), ("y", b"")], None);
        check_fault(&[("y", b""), ("x", b"1")], None);
        check_fault(&[("x", b"1")], Some(ResultFault::Missing("y".into())));
        check_fault(&[("x", b"1"), ("z", b"")], Some(ResultFault::Undeclared("z".into())));
        check_fault(&[("x", b"1"), ("x", b"1")], Some(ResultFault::Repeated("x".into())));
        check_fault(
            &[("x", b"12345"), ("y", b"")],
            Some(ResultFault::TooLarge { name: "x".into(), bytes: 5, max: 4 }),
        );
    }

    #[test]
    fn results_are_judged_whole() {
        let tx = crate::Id::new("t1").unwrap();
        let key = [9u8; 32];
        let good = crate::transfer::encode_result(&[("x".into(), vec![1]), ("y".into(), vec![])]);
        let (enc, _) = crate::crypto::seal(&key, &tx, &good);
        assert_eq!(check_result(&manifest(), &key, &tx, enc.clone()).unwrap().len(), 2);
        let wrong = check_result(&manifest(), &[8u8; 32], &tx, enc);
        assert_eq!(wrong.unwrap_err(), ResultFault::Decrypt);
        let (garbage, _) = crate::crypto::seal(&key, &tx, b"not a container");
        let e = check_result(&manifest(), &key, &tx, garbage).unwrap_err();
        assert!(matches!(e, ResultFault::Container(_)));
        let big = crate::transfer::encode_result(&[("x".into(), vec![0; 9]), ("y".into(), vec![])]);
        let (enc, _) = crate::crypto::seal(&key, &tx, &big);
        let e = check_result(&manifest(), &key, &tx, enc).unwrap_err();
        assert!(matches!(e, ResultFault::TooLarge { .. }));
    }

    #[test]
    fn bitmap_is_msb_first() {
        assert_eq!(
            bitmap_encode(&[true, false, false, false, false, false, false, true, true]),
            vec![0x81, 0x80]
        );
        assert!(bitmap_decode(&[0x81, 0x81], 9).is_none());
    }
}
