//! Data-driven: every entry of the Bitcoin test vectors (shared/test-vectors/bitcoin.json).

use bitwrk_protocol::identity::{
    self, Address, CompactSignature, IdentityError, PrivateKey, message_hash, sha256d,
};
use serde_json::Value;

fn vectors() -> Value {
    let here = env!("CARGO_MANIFEST_DIR");
    let copy = std::fs::read_to_string(format!("{here}/tests/data/bitcoin.json")).unwrap();
    // The contract's copy beside the checkout wins where it exists; ours must equal it.
    if let Ok(shared) =
        std::fs::read_to_string(format!("{here}/../../shared/test-vectors/bitcoin.json"))
    {
        assert_eq!(shared, copy, "protocol/tests/data/bitcoin.json is out of date with shared/");
    }
    serde_json::from_str(&copy).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn message_hashes() {
    for e in vectors()["message_hash"].as_array().unwrap() {
        assert_eq!(hex::encode(message_hash(s(e, "message"))), s(e, "message_hash_hex"), "{e}");
    }
}

#[test]
fn wif_to_address() {
    for e in vectors()["wif_to_address"].as_array().unwrap() {
        let k = PrivateKey::from_wif(s(e, "wif")).unwrap();
        assert_eq!(k.is_compressed(), e["compressed"].as_bool().unwrap());
        assert_eq!(hex::encode(k.pubkey_bytes()), s(e, "pubkey_hex"));
        if let Some(h) = e["hash160_hex"].as_str() {
            assert_eq!(hex::encode(identity::hash160(&k.pubkey_bytes())), h);
        }
        assert_eq!(k.address().as_str(), s(e, "address"));
        assert_eq!(k.to_wif(), s(e, "wif"), "WIF round trip");
        let secret = PrivateKey::from_secret_bytes(
            &hex::decode(s(e, "secret_hex")).unwrap(),
            k.is_compressed(),
        )
        .unwrap();
        assert_eq!(secret.address(), k.address());
    }
}

#[test]
fn core_compact_raw() {
    let h = sha256d(b"Very deterministic message");
    for e in vectors()["core_compact_raw"].as_array().unwrap() {
        let k = PrivateKey::from_wif(s(e, "wif")).unwrap();
        assert_eq!(hex::encode(k.sign_hash(&h)), s(e, "compact_sig_hex"), "{e}");
    }
}

#[test]
fn signed_messages_verify_and_reproduce() {
    for e in vectors()["signed_messages"].as_array().unwrap() {
        let (addr, sig, msg) = (s(e, "address"), s(e, "signature_base64"), s(e, "message"));
        identity::verify_message(addr, sig, msg).unwrap_or_else(|err| panic!("{e}: {err}"));
        let cs = CompactSignature::from_base64(sig).unwrap();
        assert_eq!(cs.compressed, e["compressed"].as_bool().unwrap());
        let recovered = cs.recover(&message_hash(msg)).unwrap();
        let pk = recovered.to_sec1_point(cs.compressed);
        assert_eq!(hex::encode(pk.as_bytes()), s(e, "recovered_pubkey_hex"));
        if let (Some(secret), Some(true)) =
            (e["secret_hex"].as_str(), e["k256_rfc6979_reproduces_exactly"].as_bool())
        {
            let k = PrivateKey::from_secret_bytes(&hex::decode(secret).unwrap(), cs.compressed)
                .unwrap();
            assert_eq!(k.sign_message(msg), sig, "RFC6979 signature reproduces");
        }
    }
}

#[test]
fn must_reject() {
    for e in vectors()["must_reject"].as_array().unwrap() {
        let err =
            identity::verify_message(s(e, "address"), s(e, "signature_base64"), s(e, "message"))
                .expect_err(&e.to_string());
        let expected = s(e, "expected");
        let ok = match expected {
            "ERR_NOT_SIGNED" => matches!(err, IdentityError::NotSigned(_)),
            "ERR_PUBKEY_NOT_RECOVERED" => matches!(err, IdentityError::PubkeyNotRecovered),
            "ERR_MALFORMED_SIGNATURE" => matches!(err, IdentityError::MalformedSignature(_)),
            x if x.starts_with("ERR_ADDRESS_NO_KEY") => matches!(err, IdentityError::Address(_)),
            x if x.starts_with("does not cross verify") => {
                matches!(err, IdentityError::NotSigned(_))
            }
            other => panic!("unknown expectation {other}"),
        };
        assert!(ok, "{expected}: got {err:?}");
    }
}

#[test]
fn high_s_is_refused() {
    for e in vectors()["policy_vectors"].as_array().unwrap() {
        let err =
            identity::verify_message(s(e, "address"), s(e, "signature_base64"), s(e, "message"))
                .unwrap_err();
        assert_eq!(err, IdentityError::HighS, "{e}");
    }
}

#[test]
fn long_message_uses_three_byte_length() {
    let e = &vectors()["long_message_vector"];
    let msg = s(e, "message");
    assert_eq!(msg.len() as u64, e["len"].as_u64().unwrap());
    assert_eq!(hex::encode(identity::compact_size(msg.len() as u64)), s(e, "len_prefix_hex"));
    assert_eq!(hex::encode(message_hash(msg)), s(e, "message_hash_hex"));
    identity::verify_message(s(e, "address"), s(e, "signature_base64"), msg).unwrap();
    let k = PrivateKey::from_secret_bytes(&hex::decode(s(e, "secret_hex")).unwrap(), true).unwrap();
    assert_eq!(k.address(), s(e, "address").parse::<Address>().unwrap());
    assert_eq!(k.sign_message(msg), s(e, "signature_base64"));
}
