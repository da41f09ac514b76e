#!/usr/bin/env python3
"""A client of the exchange written only from docs/PROTOCOL.md and
shared/PROTOCOL.md, with the Python standard library alone (secp256k1 in plain Python).

It publishes a native article, trades it between two fresh accounts through every phase
to `finished` (long polls to wait), and checks the money. Exit status 0 = it worked.

    python3 exchange/tests/doc_client.py http://127.0.0.1:8080
"""

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request

# ---- secp256k1, affine coordinates (slow and simple: a few signatures are all we need)
P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], -1, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return (x, (lam * (a[0] - x) - a[1]) % P)


def mul(k, pt):
    out = None
    while k:
        if k & 1:
            out = add(out, pt)
        pt = add(pt, pt)
        k >>= 1
    return out


def sha256(b):
    return hashlib.sha256(b).digest()


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(payload):
    data = payload + sha256(sha256(payload))[:4]
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + s


class Key:
    def __init__(self):
        self.d = secrets.randbelow(N - 1) + 1
        x, y = mul(self.d, G)
        pub = bytes([2 + (y & 1)]) + x.to_bytes(32, "big")  # compressed
        self.address = base58check(b"\0" + hashlib.new("ripemd160", sha256(pub)).digest())

    def sign(self, text):
        """Bitcoin signed message: compact, recoverable, low-S, header 31 + recid."""
        msg = text.encode()
        size = bytes([len(msg)]) if len(msg) < 253 else b"\xfd" + len(msg).to_bytes(2, "little")
        z = int.from_bytes(sha256(sha256(b"\x18Bitcoin Signed Message:\n" + size + msg)), "big")
        while True:
            k = secrets.randbelow(N - 1) + 1
            rx, ry = mul(k, G)
            r = rx % N
            s = pow(k, -1, N) * (z + r * self.d) % N
            if r and s:
                break
        recid = (ry & 1) | (2 if rx >= N else 0)
        if s > N // 2:
            s, recid = N - s, recid ^ 1
        raw = bytes([31 + recid]) + r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return base64.b64encode(raw).decode()


# ---- HTTP
BASE = sys.argv[1].rstrip("/")


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ok(method, path, body=None):
    status, answer = call(method, path, body)
    assert status == 200, (method, path, status, answer)
    return answer


UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def pct(v):
    return "".join(chr(b) if b in UNRESERVED else "%%%02X" % b for b in str(v).encode())


info = ok("GET", "/v1/info")
EXCHANGE = info["exchange_id"]
OFFSET_S = info["now_ms"] / 1000 - time.time()


def envelope(key, op, pairs):
    """The signed text: head, the op's keys in order, nonce and valid_until."""
    all_pairs = [("v", 1), ("exchange", EXCHANGE), ("op", op)] + pairs + [
        ("nonce", secrets.token_hex(16)), ("valid_until", int(time.time() + OFFSET_S) + 300)]
    text = "&".join(k + "=" + pct(v) for k, v in all_pairs)
    return {"address": key.address, "signature": key.sign(text), "message": text}


def tx_action(key, tx, action, pairs=()):
    return ok("POST", "/v1/tx/" + tx, envelope(key, "tx", [("tx", tx), ("action", action)] + list(pairs)))


def wait_tx(tx, after, phase):
    """Long poll until the transaction reaches `phase`."""
    while True:
        t = ok("GET", "/v1/tx/%s?after_version=%d&wait_ms=30000" % (tx, after))
        if t["phase"] == phase:
            return t
        after = t["version"]


# ---- publish a native article
publisher, seller, buyer = Key(), Key(), Key()
manifest = {
    "description": "written from the docs", "name": "doc-client-%s" % secrets.token_hex(4),
    "version": "1.0.0", "runtime": "native:blender-3.4",
    "inputs": [{"name": "scene", "media_type": "application/x-blender", "max_bytes": 1000}],
    "outputs": [{"name": "image", "media_type": "image/png", "max_bytes": 1000}],
    "limits": {"fuel": 1, "memory_bytes": 65536, "wall_ms": 1000},
}
article = hashlib.sha256(json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()).hexdigest()
entry = ok("POST", "/v1/articles", {
    "envelope": envelope(publisher, "publish", [
        ("article", article), ("module_sha256", hashlib.sha256(b"").hexdigest()), ("size", 0)]),
    "manifest": manifest, "module_base64": ""})
assert entry["id"] == article, entry

# ---- a sell rests; the seller waits for its match with a long poll
sell = ok("POST", "/v1/bids", envelope(seller, "bid", [("article", article), ("side", "sell"), ("price", 1000)]))
assert sell["state"] == "open", sell
matched = {}
waiter = threading.Thread(target=lambda: matched.update(
    ok("GET", "/v1/bids/%s?after_version=%d&wait_ms=30000" % (sell["id"], sell["version"]))))
waiter.start()
buy_env = envelope(buyer, "bid", [("article", article), ("side", "buy"), ("price", 1500)])
buy = ok("POST", "/v1/bids", buy_env)
assert ok("POST", "/v1/bids", buy_env) == buy, "the same envelope again gets the first answer"
waiter.join()
assert buy["state"] == "matched" and buy["blocked_sat"] == 1030, buy
assert matched["state"] == "matched" and matched["tx"] == buy["tx"], matched
tx = buy["tx"]

# ---- the phases
work_hash = sha256(b"the work")
secret = secrets.token_bytes(32)
t = tx_action(buyer, tx, "establish", [("work_hash", work_hash.hex()), ("secret_hash", sha256(work_hash + secret).hex())])
assert t["phase"] == "buyer_established", t
tx_action(seller, tx, "establish", [("worker_url", "http://127.0.0.1:9/work?x=1")])
t = wait_tx(tx, t["version"], "transmitting")
assert t["worker_url"] == "http://127.0.0.1:9/work?x=1", t
tx_action(seller, tx, "secret", [("secret", secret.hex())])
enc = sha256(b"encrypted result").hex()
result_key = secrets.token_hex(32)
tx_action(seller, tx, "result", [("enc_result_hash", enc), ("result_key", result_key)])
t = wait_tx(tx, 0, "committed")
assert "result_key" not in t, "the key is in no public view"
# The buyer's receipt for the committed hash: its answer is the only one with the key.
t = tx_action(buyer, tx, "receipt", [("enc_result_hash", enc)])
assert t["phase"] == "unverified" and t["result_key"] == result_key, t
k = ok("POST", "/v1/tx/%s/key" % tx, envelope(buyer, "key", [("tx", tx)]))
assert k["result_key"] == result_key, k
t = tx_action(buyer, tx, "accept")
assert t["phase"] == "finished" and t["settlement"] == "paid_seller", t

# ---- money
capital = info["starting_capital_sat"]
assert ok("GET", "/v1/accounts/" + seller.address)["available_sat"] == capital + 1000
b = ok("GET", "/v1/accounts/" + buyer.address)
assert (b["available_sat"], b["blocked_sat"]) == (capital - 1030, 0), b
led = ok("GET", "/v1/ledger")
assert led["available_sat"] + led["blocked_sat"] + led["fees_sat"] == led["created_sat"], led

# ---- a refusal is JSON with a code
status, err = call("POST", "/v1/bids", envelope(buyer, "bid", [("article", article), ("side", "buy"), ("price", 0)]))
assert (status, err["error"]) == (400, "bad_price"), (status, err)
print("doc client: traded %s through finished" % tx)
