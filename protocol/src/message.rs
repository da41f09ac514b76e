//! Signed messages (PROTOCOL §2): the envelope, the canonical `key=value&…` text and its
//! strict parser. The exchange parses the signed text itself, never a second copy of fields.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::hash::Hash32;
use crate::id::Id;
use crate::identity::{self, Address, IdentityError, PrivateKey};
use crate::money::Sat;
use crate::tx::{ReasonCode, Side, TxAction};

/// Protocol version carried in every message (`v=1`).
pub const PROTOCOL_VERSION: u32 = 1;
/// How far in the future `valid_until` may lie.
pub const VALID_AHEAD_S_MAX: u64 = 600;
/// Longest signed text accepted (a worker URL is the only long value).
pub const MESSAGE_BYTES_MAX: usize = 4096;
/// Longest worker URL.
pub const URL_BYTES_MAX: usize = 1024;
/// Longest exchange id.
pub const EXCHANGE_ID_CHARS_MAX: usize = 64;
/// Most sellers a buy bid may exclude (`exclude=`): a buyer re-bids at most a few times
/// per request (the host's `BUY_ATTEMPTS_MAX` is 3), leaving out each seller that cheated
/// it; 8 leaves room and keeps the text far below [`MESSAGE_BYTES_MAX`] (8 × 34 chars).
pub const BID_EXCLUDE_MAX: usize = 8;

/// What is sent over HTTP: the signer's address, the signature and the exact signed text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub address: String,
    pub signature: String,
    pub message: String,
}

/// The operation a message asks for, with its keys in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `exclude`: sellers this buy bid must not match (sorted, distinct, at most
    /// [`BID_EXCLUDE_MAX`]; empty for sell bids). Absent from the text when empty.
    Bid {
        article: Hash32,
        side: Side,
        price: Sat,
        exclude: Vec<Address>,
    },
    Cancel {
        bid: Id,
    },
    Tx {
        tx: Id,
        action: TxAction,
    },
    Publish {
        article: Hash32,
        module_sha256: Hash32,
        size: u64,
    },
    /// The buyer's signed read of a transaction's result key (`POST /v1/tx/{id}/key`).
    Key {
        tx: Id,
    },
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Bid { .. } => "bid",
            Operation::Cancel { .. } => "cancel",
            Operation::Tx { .. } => "tx",
            Operation::Publish { .. } => "publish",
            Operation::Key { .. } => "key",
        }
    }
}

/// A parsed message: the common head and tail around an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub exchange: String,
    pub op: Operation,
    pub nonce: [u8; 16],
    pub valid_until: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum MessageError {
    #[error("message is {0} bytes; at most {MESSAGE_BYTES_MAX} are accepted")]
    TooLong(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("expected key {expected:?} at position {pos}, found {found:?}")]
    UnexpectedKey { pos: usize, expected: String, found: String },
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    #[error("unsupported protocol version {0:?}; this is v=1")]
    Version(String),
    #[error("bad value for {key}: {why}")]
    BadValue { key: &'static str, why: String },
    #[error("message is not in canonical form (percent-encoding or number format)")]
    NotCanonical,
    #[error(transparent)]
    Signature(#[from] IdentityError),
}

type Result<T> = std::result::Result<T, MessageError>;

/// RFC 3986 unreserved characters stay; every other byte becomes `%XX` (upper-case hex).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Strict percent-decoding: `%XX` with two hex digits, result must be UTF-8.
pub fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "bad %-escape")?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after decoding".to_string())
}

impl Message {
    /// A message with a fresh random nonce, valid for `valid_s` seconds after `now_s`.
    pub fn new(exchange: &str, op: Operation, now_s: u64, valid_s: u64) -> Message {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the operating system has no random source");
        Message {
            exchange: exchange.to_string(),
            op,
            nonce,
            valid_until: now_s + valid_s.min(VALID_AHEAD_S_MAX),
        }
    }

    /// The pairs in wire order.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = vec![
            ("v", PROTOCOL_VERSION.to_string()),
            ("exchange", self.exchange.clone()),
            ("op", self.op.name().to_string()),
        ];
        match &self.op {
            Operation::Bid { article, side, price, exclude } => {
                p.push(("article", article.to_hex()));
                p.push(("side", side.as_str().into()));
                p.push(("price", price.0.to_string()));
                if !exclude.is_empty() {
                    let list: Vec<String> = exclude.iter().map(|a| a.to_string()).collect();
                    p.push(("exclude", list.join(",")));
                }
            }
            Operation::Key { tx } => p.push(("tx", tx.to_string())),
            Operation::Cancel { bid } => p.push(("bid", bid.to_string())),
            Operation::Tx { tx, action } => {
                p.push(("tx", tx.to_string()));
                p.push(("action", action.name().into()));
                match action {
                    TxAction::EstablishBuyer { work_hash, secret_hash } => {
                        p.push(("work_hash", work_hash.to_hex()));
                        p.push(("secret_hash", secret_hash.to_hex()));
                    }
                    TxAction::EstablishSeller { worker_url } => {
                        p.push(("worker_url", worker_url.clone()))
                    }
                    TxAction::Secret { secret } => p.push(("secret", hex::encode(secret))),
                    TxAction::Result { enc_result_hash, result_key } => {
                        p.push(("enc_result_hash", enc_result_hash.to_hex()));
                        p.push(("result_key", hex::encode(result_key)));
                    }
                    TxAction::Receipt { enc_result_hash } => {
                        p.push(("enc_result_hash", enc_result_hash.to_hex()))
                    }
                    TxAction::Accept | TxAction::RejectResult => {}
                    TxAction::RejectWork { reason } => p.push(("reason", reason.as_str().into())),
                }
            }
            Operation::Publish { article, module_sha256, size } => {
                p.push(("article", article.to_hex()));
                p.push(("module_sha256", module_sha256.to_hex()));
                p.push(("size", size.to_string()));
            }
        }
        p.push(("nonce", hex::encode(self.nonce)));
        p.push(("valid_until", self.valid_until.to_string()));
        p
    }

    /// The canonical signed text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.pairs().into_iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&percent_encode(&v));
        }
        out
    }

    /// Strict parse: exact key order, no duplicates or unknown keys, canonical encoding.
    pub fn parse(text: &str) -> Result<Message> {
        if text.len() > MESSAGE_BYTES_MAX {
            return Err(MessageError::TooLong(text.len()));
        }
        let mut pairs = Vec::new();
        for part in text.split('&') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| MessageError::Malformed(format!("{part:?} is not key=value")))?;
            // Most values have no escapes: borrow them instead of allocating a copy.
            let v = if v.contains('%') {
                Cow::Owned(
                    percent_decode(v).map_err(|e| MessageError::Malformed(format!("{k}: {e}")))?,
                )
            } else {
                Cow::Borrowed(v)
            };
            pairs.push((k, v));
        }
        let mut r = Reader { pairs: &pairs, pos: 0 };
        let v = r.take("v")?;
        if v != "1" {
            return Err(MessageError::Version(v.to_string()));
        }
        let exchange = r.take("exchange")?.to_string();
        if exchange.is_empty() || exchange.len() > EXCHANGE_ID_CHARS_MAX {
            return Err(MessageError::BadValue {
                key: "exchange",
                why: "empty or too long".into(),
            });
        }
        let op_name = r.take("op")?;
        let op = match op_name {
            "bid" => {
                let article = r.hash("article")?;
                let side: Side = r
                    .take("side")?
                    .parse()
                    .map_err(|why| MessageError::BadValue { key: "side", why })?;
                let price = Sat(r.number("price")?);
                let exclude = match r.peek_key() {
                    Some("exclude") => parse_exclude(side, r.take("exclude")?)?,
                    _ => Vec::new(),
                };
                Operation::Bid { article, side, price, exclude }
            }
            "key" => Operation::Key { tx: r.id("tx")? },
            "cancel" => Operation::Cancel { bid: r.id("bid")? },
            "tx" => {
                let tx = r.id("tx")?;
                let action = match r.take("action")? {
                    "establish" => match r.peek_key() {
                        Some("worker_url") => {
                            let worker_url = r.take("worker_url")?.to_string();
                            check_url(&worker_url)?;
                            TxAction::EstablishSeller { worker_url }
                        }
                        _ => TxAction::EstablishBuyer {
                            work_hash: r.hash("work_hash")?,
                            secret_hash: r.hash("secret_hash")?,
                        },
                    },
                    "secret" => TxAction::Secret { secret: r.bytes32("secret")? },
                    "result" => TxAction::Result {
                        enc_result_hash: r.hash("enc_result_hash")?,
                        result_key: r.bytes32("result_key")?,
                    },
                    "receipt" => TxAction::Receipt { enc_result_hash: r.hash("enc_result_hash")? },
                    "accept" => TxAction::Accept,
                    "reject_result" => TxAction::RejectResult,
                    "reject_work" => TxAction::RejectWork {
                        reason: r
                            .take("reason")?
                            .parse::<ReasonCode>()
                            .map_err(|why| MessageError::BadValue { key: "reason", why })?,
                    },
                    other => {
                        return Err(MessageError::BadValue {
                            key: "action",
                            why: format!("unknown action {other:?}"),
                        });
                    }
                };
                Operation::Tx { tx, action }
            }
            "publish" => Operation::Publish {
                article: r.hash("article")?,
                module_sha256: r.hash("module_sha256")?,
                size: r.number("size")?,
            },
            other => return Err(MessageError::UnknownOp(other.to_string())),
        };
        let nonce_hex = r.take("nonce")?;
        let mut nonce = [0u8; 16];
        if nonce_hex.len() != 32 || !is_lower_hex(nonce_hex) {
            return Err(MessageError::BadValue {
                key: "nonce",
                why: "must be 32 lowercase hex chars".into(),
            });
        }
        hex::decode_to_slice(nonce_hex, &mut nonce)
            .map_err(|e| MessageError::BadValue { key: "nonce", why: e.to_string() })?;
        let valid_until = r.number("valid_until")?;
        if r.pos != pairs.len() {
            return Err(MessageError::Malformed(format!(
                "unexpected key {:?} after valid_until",
                pairs[r.pos].0
            )));
        }
        let msg = Message { exchange, op, nonce, valid_until };
        // Canonical form: exactly one text per message (no alternative escapes or "007").
        if msg.encode() != text {
            return Err(MessageError::NotCanonical);
        }
        Ok(msg)
    }

    /// Sign with `key` and wrap in an envelope.
    pub fn sign(&self, key: &PrivateKey) -> Envelope {
        let message = self.encode();
        Envelope {
            address: key.address().to_string(),
            signature: key.sign_message(&message),
            message,
        }
    }
}

/// `exclude=`: comma-separated P2PKH addresses in ascending order, no repeats (one text per
/// set), 1..=[`BID_EXCLUDE_MAX`] of them, buy bids only.
fn parse_exclude(side: Side, list: &str) -> Result<Vec<Address>> {
    let bad = |why: String| MessageError::BadValue { key: "exclude", why };
    if side != Side::Buy {
        return Err(bad("only a buy bid may exclude sellers".into()));
    }
    let mut out: Vec<Address> = Vec::new();
    for part in list.split(',') {
        if out.len() == BID_EXCLUDE_MAX {
            return Err(bad(format!("at most {BID_EXCLUDE_MAX} addresses")));
        }
        let a: Address = part.parse().map_err(|e: IdentityError| bad(e.to_string()))?;
        if out.last().is_some_and(|l| l.as_str() >= a.as_str()) {
            return Err(bad("addresses must be in ascending order without repeats".into()));
        }
        out.push(a);
    }
    Ok(out)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_url(url: &str) -> Result<()> {
    if url.len() > URL_BYTES_MAX || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(MessageError::BadValue {
            key: "worker_url",
            why: "must be an http:// or https:// URL of at most 1024 bytes".into(),
        });
    }
    Ok(())
}

struct Reader<'a> {
    pairs: &'a [(&'a str, Cow<'a, str>)],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek_key(&self) -> Option<&'a str> {
        self.pairs.get(self.pos).map(|(k, _)| *k)
    }

    fn take(&mut self, key: &'static str) -> Result<&'a str> {
        match self.pairs.get(self.pos) {
            Some((k, v)) if *k == key => {
                self.pos += 1;
                Ok(v.as_ref())
            }
            Some((k, _)) => Err(MessageError::UnexpectedKey {
                pos: self.pos,
                expected: key.into(),
                found: k.chars().take(40).collect(),
            }),
            None => Err(MessageError::UnexpectedKey {
                pos: self.pos,
                expected: key.into(),
                found: "end of message".into(),
            }),
        }
    }

    fn hash(&mut self, key: &'static str) -> Result<Hash32> {
        self.take(key)?.parse().map_err(|e: crate::hash::HashParseError| MessageError::BadValue {
            key,
            why: e.to_string(),
        })
    }

    fn bytes32(&mut self, key: &'static str) -> Result<[u8; 32]> {
        Ok(self.hash(key)?.0)
    }

    fn id(&mut self, key: &'static str) -> Result<Id> {
        Id::new(self.take(key)?).map_err(|e| MessageError::BadValue { key, why: e.to_string() })
    }

    fn number(&mut self, key: &'static str) -> Result<u64> {
        let s = self.take(key)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MessageError::BadValue {
                key,
                why: format!("{s:?} is not a decimal number"),
            });
        }
        s.parse().map_err(|_| MessageError::BadValue { key, why: format!("{s:?} is out of range") })
    }
}

/// A checked envelope: who signed which message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub signer: Address,
    pub message: Message,
}

impl Envelope {
    /// Parse the text and verify the signature by key recovery. Does not check the
    /// exchange id, time or nonce: that is the exchange's business.
    pub fn verify(&self) -> Result<Verified> {
        let message = Message::parse(&self.message)?;
        identity::verify_message(&self.address, &self.signature, &self.message)?;
        Ok(Verified { signer: self.address.parse()?, message })
    }

    /// Parse the signed text without checking the signature (for callers that verify
    /// with a cached key, see [`identity::verify_with_key`]).
    pub fn parse_unverified(&self) -> Result<Message> {
        Message::parse(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_hash() -> impl Strategy<Value = Hash32> {
        any::<[u8; 32]>().prop_map(Hash32)
    }

    fn arb_id() -> impl Strategy<Value = Id> {
        "[A-Za-z0-9_-]{1,64}".prop_map(|s| Id::new(s).unwrap())
    }

    fn arb_action() -> impl Strategy<Value = TxAction> {
        prop_oneof![
            (arb_hash(), arb_hash())
                .prop_map(|(w, s)| TxAction::EstablishBuyer { work_hash: w, secret_hash: s }),
            "http://[a-z0-9.]{1,20}:[0-9]{1,5}/[ -~]{0,40}"
                .prop_map(|u| TxAction::EstablishSeller { worker_url: u }),
            any::<[u8; 32]>().prop_map(|s| TxAction::Secret { secret: s }),
            (arb_hash(), any::<[u8; 32]>())
                .prop_map(|(h, k)| TxAction::Result { enc_result_hash: h, result_key: k }),
            arb_hash().prop_map(|h| TxAction::Receipt { enc_result_hash: h }),
            Just(TxAction::Accept),
            Just(TxAction::RejectResult),
            proptest::sample::select(ReasonCode::ALL.to_vec())
                .prop_map(|r| TxAction::RejectWork { reason: r }),
        ]
    }

    fn arb_op() -> impl Strategy<Value = Operation> {
        prop_oneof![
            (arb_hash(), any::<bool>(), any::<u64>(), 0..=BID_EXCLUDE_MAX).prop_map(
                |(a, b, p, n)| {
                    let side = if b { Side::Buy } else { Side::Sell };
                    let mut exclude: Vec<Address> = if side == Side::Buy {
                        (0..n).map(|i| key(i as u8 + 1).address()).collect()
                    } else {
                        Vec::new()
                    };
                    exclude.sort_by(|x, y| x.as_str().cmp(y.as_str()));
                    Operation::Bid { article: a, side, price: Sat(p), exclude }
                }
            ),
            arb_id().prop_map(|tx| Operation::Key { tx }),
            arb_id().prop_map(|bid| Operation::Cancel { bid }),
            (arb_id(), arb_action()).prop_map(|(tx, action)| Operation::Tx { tx, action }),
            (arb_hash(), arb_hash(), any::<u64>()).prop_map(|(a, m, s)| Operation::Publish {
                article: a,
                module_sha256: m,
                size: s
            }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        ("[ -~]{1,64}", arb_op(), any::<[u8; 16]>(), any::<u64>()).prop_map(
            |(exchange, op, nonce, valid_until)| Message { exchange, op, nonce, valid_until },
        )
    }

    proptest! {
        #[test]
        fn parse_encode_round_trip(m in arb_message()) {
            let text = m.encode();
            prop_assert_eq!(Message::parse(&text).unwrap(), m);
        }

        #[test]
        fn signature_verifies_and_any_flip_fails(m in arb_message(), secret in any::<[u8; 32]>(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            prop_assume!(PrivateKey::from_secret_bytes(&secret, true).is_ok());
            let key = PrivateKey::from_secret_bytes(&secret, true).unwrap();
            let env = m.sign(&key);
            let v = env.verify().unwrap();
            prop_assert_eq!(v.signer, key.address());

            // flip one bit of the message text
            let mut msg = env.message.clone().into_bytes();
            let i = pos.index(msg.len());
            msg[i] ^= 1 << bit;
            if let Ok(text) = String::from_utf8(msg) {
                let forged = Envelope { message: text, ..env.clone() };
                prop_assert!(forged.verify().is_err());
            }

            // flip one bit of the raw signature
            use base64::Engine as _;
            let mut raw = base64::engine::general_purpose::STANDARD.decode(&env.signature).unwrap();
            let j = pos.index(raw.len());
            raw[j] ^= 1 << bit;
            let forged = Envelope { signature: base64::engine::general_purpose::STANDARD.encode(&raw), ..env.clone() };
            prop_assert!(forged.verify().is_err());
        }
    }

    fn key(i: u8) -> PrivateKey {
        PrivateKey::from_secret_bytes(&[i; 32], true).unwrap()
    }

    #[test]
    fn exclude_is_canonical_and_bounded() {
        let mut a: Vec<Address> = (1..=9).map(|i| key(i).address()).collect();
        a.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        let with = |list: &[Address], side: &str| {
            let l: Vec<&str> = list.iter().map(|a| a.as_str()).collect();
            ok_text()
                .replace("side=buy", &format!("side={side}"))
                .replace("price=100", &format!("price=100&exclude={}", l.join("%2C")))
        };
        let m = Message::parse(&with(&a[..2], "buy")).unwrap();
        assert!(matches!(&m.op, Operation::Bid { exclude, .. } if exclude[..] == a[..2]));
        assert_eq!(m.encode(), with(&a[..2], "buy"));
        Message::parse(&with(&a[..BID_EXCLUDE_MAX], "buy")).unwrap();
        let bad = |t: String| {
            assert!(
                matches!(Message::parse(&t), Err(MessageError::BadValue { key: "exclude", .. })),
                "{t}"
            )
        };
        bad(with(&a[..BID_EXCLUDE_MAX + 1], "buy"));
        bad(with(&[a[1].clone(), a[0].clone()], "buy"));
        bad(with(&[a[0].clone(), a[0].clone()], "buy"));
        bad(with(&a[..1], "sell"));
        bad(ok_text().replace("price=100", "price=100&exclude="));
        // an unescaped comma is not canonical
        let raw = with(&a[..2], "buy").replace("%2C", ",");
        assert_eq!(Message::parse(&raw).unwrap_err(), MessageError::NotCanonical);
    }

    fn ok_text() -> String {
        format!(
            "v=1&exchange=ex1&op=bid&article={}&side=buy&price=100&nonce={}&valid_until=1700000000",
            "ab".repeat(32),
            "0f".repeat(16)
        )
    }

    #[test]
    fn strict_parser_refusals() {
        assert!(Message::parse(&ok_text()).is_ok());
        let bad = |t: String| Message::parse(&t).unwrap_err();
        // key order
        assert!(matches!(
            bad(ok_text().replace("side=buy&price=100", "price=100&side=buy")),
            MessageError::UnexpectedKey { .. }
        ));
        // duplicate key
        assert!(matches!(
            bad(ok_text().replace("&price=100", "&price=100&price=100")),
            MessageError::UnexpectedKey { .. }
        ));
        // unknown key at the end
        assert!(matches!(bad(ok_text() + "&extra=1"), MessageError::Malformed(_)));
        // version
        assert!(matches!(bad(ok_text().replace("v=1", "v=2")), MessageError::Version(_)));
        // leading zero is not canonical
        assert_eq!(bad(ok_text().replace("price=100", "price=0100")), MessageError::NotCanonical);
        // needless escape is not canonical
        assert_eq!(
            bad(ok_text().replace("exchange=ex1", "exchange=ex%31")),
            MessageError::NotCanonical
        );
        // upper-case hex article
        assert!(matches!(
            bad(ok_text().replace(&"ab".repeat(32), &"AB".repeat(32))),
            MessageError::BadValue { .. }
        ));
        // nonce length
        assert!(matches!(
            bad(ok_text().replace(&"0f".repeat(16), "0f0f")),
            MessageError::BadValue { .. }
        ));
        // unknown op
        assert!(matches!(bad(ok_text().replace("op=bid", "op=steal")), MessageError::UnknownOp(_)));
        // negative/non-number price
        assert!(matches!(
            bad(ok_text().replace("price=100", "price=-1")),
            MessageError::BadValue { .. }
        ));
        // too long
        assert!(matches!(bad("a".repeat(MESSAGE_BYTES_MAX + 1)), MessageError::TooLong(_)));
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(percent_encode("http://x/y?z=1&w"), "http%3A%2F%2Fx%2Fy%3Fz%3D1%26w");
        assert_eq!(percent_decode("%e2%82%ac").unwrap(), "€");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
    }
}
