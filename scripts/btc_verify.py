#!/usr/bin/env python3
"""Verify a Bitcoin signed message with libsecp256k1 (Bitcoin Core's own curve library,
through the `coincurve` package), independently of bitwrk's Rust code.

usage: btc_verify.py ADDRESS SIGNATURE_BASE64 MESSAGE      -> prints "valid" or exits 1
       btc_verify.py --wif-address WIF                      -> prints the P2PKH address
"""
import base64
import hashlib
import sys

import coincurve

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def b58check_encode(payload: bytes) -> str:
    data = payload + sha256d(payload)[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58check_decode(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    raw = b"\0" * (len(s) - len(s.lstrip("1"))) + raw
    payload, check = raw[:-4], raw[-4:]
    assert sha256d(payload)[:4] == check, "bad checksum"
    return payload


def p2pkh(pubkey: bytes) -> str:
    h = hashlib.new("ripemd160", hashlib.sha256(pubkey).digest()).digest()
    return b58check_encode(b"\0" + h)


def compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def message_hash(msg: str) -> bytes:
    m = msg.encode()
    return sha256d(b"\x18Bitcoin Signed Message:\n" + compact_size(len(m)) + m)


def main() -> int:
    if sys.argv[1] == "--wif-address":
        payload = b58check_decode(sys.argv[2])
        assert payload[0] == 0x80 and len(payload) == 34 and payload[33] == 1, "not compressed mainnet WIF"
        key = coincurve.PrivateKey(payload[1:33])
        print(p2pkh(key.public_key.format(compressed=True)))
        return 0
    address, sig_b64, msg = sys.argv[1:4]
    sig = base64.b64decode(sig_b64)
    header = sig[0]
    if not 27 <= header <= 34:
        print("invalid: header")
        return 1
    compressed = header >= 31
    recid = (header - 27) & 3
    pub = coincurve.PublicKey.from_signature_and_message(sig[1:] + bytes([recid]), message_hash(msg), hasher=None)
    if p2pkh(pub.format(compressed=compressed)) != address:
        print("invalid: address mismatch")
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
