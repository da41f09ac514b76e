//! The exchange through its real HTTP API: an in-process server on 127.0.0.1:0 driven by
//! the client, raw HTTP for malformed input, and the real binary killed with SIGKILL.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use bitwrk_exchange::Config;
use bitwrk_exchange::client::{ClientError, ExchangeClient};
use bitwrk_protocol::api::{BidState, ErrorBody};
use bitwrk_protocol::message::{Message, Operation};
use bitwrk_protocol::{
    Envelope, Hash32, Manifest, Phase, PrivateKey, ReasonCode, Sat, Settlement, Side, TxAction, tx,
};
use tokio::sync::oneshot;

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    async fn start(config: Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bitwrk_exchange::serve(listener, config, async {
            let _ = rx.await;
        }));
        Server { url, stop: Some(stop), task: Some(task) }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

fn config(dir: &Path) -> Config {
    Config { db_path: dir.join("exchange.sqlite"), ..Config::default() }
}

fn native_manifest(name: &str) -> Manifest {
    Manifest::from_toml(&format!(
        r#"
name = "{name}"
version = "1.0.0"
runtime = "native:blender-3.4"
[[inputs]]
name = "scene"
media_type = "application/x-blender"
max_bytes = 1000000
[[outputs]]
name = "image"
media_type = "image/png"
max_bytes = 1000000
[limits]
fuel = 1
memory_bytes = 65536
wall_ms = 1000
"#
    ))
    .unwrap()
}

fn wasm_manifest(module: &[u8]) -> Manifest {
    let mut m = native_manifest("wasm-article");
    m.runtime = "wasm".parse().unwrap();
    m.module_sha256 = Some(Hash32::of(module));
    m
}

fn api_code(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, code, .. } => (status, code),
        other => panic!("expected an API error, got {other}"),
    }
}

/// POST raw bytes; returns (status, error body or None).
async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> (u16, Option<ErrorBody>) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).ok())
}

#[tokio::test]
async fn full_trade_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (buyer, seller, publisher) =
        (PrivateKey::generate(), PrivateKey::generate(), PrivateKey::generate());

    let m = native_manifest("render");
    let article = m.id();
    // Bids for an unpublished article are refused.
    let e = c.place_bid(&seller, article, Side::Sell, Sat(1000)).await.unwrap_err();
    assert_eq!(api_code(e), (404, "unknown_article".into()));
    let entry = c.publish(&publisher, &m, &[]).await.unwrap();
    assert_eq!(entry.id, article);
    assert_eq!(
        c.publish(&publisher, &m, &[]).await.unwrap(),
        entry,
        "publishing twice is idempotent"
    );
    assert_eq!(c.articles().await.unwrap(), vec![entry.clone()]);
    assert!(matches!(c.module(&article).await.unwrap_err(), ClientError::NoModule(_)));

    // A resting sell; the seller long-polls for its match.
    let sell = c.place_bid(&seller, article, Side::Sell, Sat(1000)).await.unwrap();
    assert_eq!(sell.state, BidState::Open);
    let waiter = {
        let (c, id, v) = (c.clone(), sell.id.clone(), sell.version);
        tokio::spawn(async move { c.wait_bid(&id, v, Duration::from_secs(30)).await })
    };
    // The same as a server-sent event stream: the match is pushed, then the stream ends.
    let mut events = reqwest::get(format!(
        "{}/v1/bids/{}/events?after_version={}",
        server.url, sell.id, sell.version
    ))
    .await
    .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let book = c.book(&article).await.unwrap();
    assert_eq!(book.resting[0].reason, "no buyer at or above 1000 sat; no buy bids");
    let buy = c.place_bid(&buyer, article, Side::Buy, Sat(1500)).await.unwrap();
    assert_eq!(buy.state, BidState::Matched);
    assert_eq!(buy.blocked_sat, Sat(1030), "older bid's price; difference refunded");
    let woken = waiter.await.unwrap().unwrap();
    let mut text = String::new();
    while let Some(chunk) = events.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: bid") && text.contains("\"state\":\"matched\""), "{text}");
    assert_eq!(woken.state, BidState::Matched);
    let txid = woken.tx.clone().unwrap();
    assert_eq!(buy.tx.as_ref(), Some(&txid));
    let acct = c.account(&buyer.address()).await.unwrap();
    assert_eq!((acct.available_sat, acct.blocked_sat), (Sat(100_000_000 - 1030), Sat(1030)));

    // The phases, each waited for with a long poll by the other side.
    let work = Hash32::of(b"the work manifest");
    let secret = [42u8; 32];
    let t = c.tx(&txid).await.unwrap();
    assert_eq!(t.phase, Phase::Establishing);
    let e = c.tx_action(&seller, &txid, TxAction::Accept).await.unwrap_err();
    assert_eq!(api_code(e), (403, "not_party".into()));
    let t = c
        .tx_action(
            &buyer,
            &txid,
            TxAction::EstablishBuyer {
                work_hash: work,
                secret_hash: tx::secret_hash(&work, &secret),
            },
        )
        .await
        .unwrap();
    assert_eq!(t.phase, Phase::BuyerEstablished);
    let buyer_wait = {
        let (c, id, v) = (c.clone(), txid.clone(), t.version);
        tokio::spawn(async move { c.wait_tx(&id, v, Duration::from_secs(30)).await })
    };
    c.tx_action(
        &seller,
        &txid,
        TxAction::EstablishSeller { worker_url: "http://127.0.0.1:9/work".into() },
    )
    .await
    .unwrap();
    let t = buyer_wait.await.unwrap().unwrap();
    assert_eq!(t.phase, Phase::Transmitting);
    assert_eq!(t.worker_url.as_deref(), Some("http://127.0.0.1:9/work"));
    let e = c.tx_action(&seller, &txid, TxAction::Secret { secret: [1; 32] }).await.unwrap_err();
    assert_eq!(api_code(e), (400, "bad_secret".into()));
    c.tx_action(&seller, &txid, TxAction::Secret { secret }).await.unwrap();
    let enc = Hash32::of(b"encrypted result");
    let t = c
        .tx_action(&seller, &txid, TxAction::Result { enc_result_hash: enc, result_key: [7; 32] })
        .await
        .unwrap();
    assert_eq!(t.phase, Phase::Committed);
    // The key is in no public view; only the buyer's receipt (and later its signed key
    // read) gets it.
    let key_hex = hex::encode([7u8; 32]);
    let public = reqwest::get(format!("{}/v1/tx/{txid}", server.url)).await.unwrap();
    assert!(!public.text().await.unwrap().contains(&key_hex));
    let e = c.result_key(&buyer, &txid).await.unwrap_err();
    assert_eq!(api_code(e), (409, "wrong_phase".into()));
    let e = c.receipt(&seller, &txid, enc).await.unwrap_err();
    assert_eq!(api_code(e), (403, "not_party".into()));
    let e = c.receipt(&buyer, &txid, Hash32::of(b"another result")).await.unwrap_err();
    assert_eq!(api_code(e), (400, "bad_receipt".into()));
    let r = c.receipt(&buyer, &txid, enc).await.unwrap();
    assert_eq!((r.tx.phase, r.result_key), (Phase::Unverified, Hash32([7; 32])));
    assert_eq!(c.result_key(&buyer, &txid).await.unwrap().result_key, Hash32([7; 32]));
    let e = c.result_key(&seller, &txid).await.unwrap_err();
    assert_eq!(api_code(e), (403, "not_party".into()));
    let public = reqwest::get(format!("{}/v1/tx/{txid}", server.url)).await.unwrap();
    assert!(!public.text().await.unwrap().contains(&key_hex));
    let t = c.tx_action(&buyer, &txid, TxAction::Accept).await.unwrap();
    assert_eq!((t.phase, t.settlement), (Phase::Finished, Some(Settlement::PaidSeller)));
    assert_eq!(c.account(&seller.address()).await.unwrap().available_sat, Sat(100_001_000));
    let l = c.ledger().await.unwrap();
    assert_eq!(l.fees_sat, Sat(30));
    assert_eq!(l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0, l.created_sat.0);
    let book = c.book(&article).await.unwrap();
    assert_eq!(book.last_price_sat, Some(Sat(1000)));

    // A second trade ends in work_disputed and refunds the buyer.
    c.place_bid(&seller, article, Side::Sell, Sat(200)).await.unwrap();
    let b = c.place_bid(&buyer, article, Side::Buy, Sat(200)).await.unwrap();
    let t2 = b.tx.unwrap();
    c.tx_action(
        &buyer,
        &t2,
        TxAction::EstablishBuyer { work_hash: work, secret_hash: tx::secret_hash(&work, &secret) },
    )
    .await
    .unwrap();
    c.tx_action(
        &seller,
        &t2,
        TxAction::EstablishSeller { worker_url: "https://s.example/".into() },
    )
    .await
    .unwrap();
    let t = c
        .tx_action(&seller, &t2, TxAction::RejectWork { reason: ReasonCode::BadInput })
        .await
        .unwrap();
    assert_eq!(
        (t.phase, t.settlement, t.reason),
        (Phase::WorkDisputed, Some(Settlement::RefundedBuyer), Some(ReasonCode::BadInput))
    );
    assert_eq!(c.account(&buyer.address()).await.unwrap().blocked_sat, Sat(0));

    // Cancel: only the owner, only once.
    let open = c.place_bid(&buyer, article, Side::Buy, Sat(10)).await.unwrap();
    assert_eq!(
        api_code(c.cancel_bid(&seller, &open.id).await.unwrap_err()),
        (403, "not_owner".into())
    );
    assert_eq!(c.cancel_bid(&buyer, &open.id).await.unwrap().state, BidState::Cancelled);
    assert_eq!(
        api_code(c.cancel_bid(&buyer, &open.id).await.unwrap_err()),
        (409, "bid_not_open".into())
    );
    server.stop().await;
}

/// Drive a fresh trade of `article` at 1000 sat to `committed`: the seller commits
/// `enc` (its hash) with `key`. Returns the transaction id.
async fn trade_to_committed(
    c: &ExchangeClient,
    buyer: &PrivateKey,
    seller: &PrivateKey,
    article: Hash32,
    enc: &[u8],
    key: [u8; 32],
) -> bitwrk_protocol::Id {
    c.place_bid(seller, article, Side::Sell, Sat(1000)).await.unwrap();
    let txid = c.place_bid(buyer, article, Side::Buy, Sat(1000)).await.unwrap().tx.unwrap();
    let (work, secret) = (Hash32::of(b"w"), [5u8; 32]);
    let secret_hash = tx::secret_hash(&work, &secret);
    c.tx_action(buyer, &txid, TxAction::EstablishBuyer { work_hash: work, secret_hash })
        .await
        .unwrap();
    let worker_url = "http://127.0.0.1:9/".to_string();
    c.tx_action(seller, &txid, TxAction::EstablishSeller { worker_url }).await.unwrap();
    c.tx_action(seller, &txid, TxAction::Secret { secret }).await.unwrap();
    let result = TxAction::Result { enc_result_hash: Hash32::of(enc), result_key: key };
    assert_eq!(c.tx_action(seller, &txid, result).await.unwrap().phase, Phase::Committed);
    txid
}

/// Disputes are decided by the evidence the exchange decrypts with the committed key,
/// never by a timer: a good result goes against the buyer (dispute fee), a wrong key, a
/// result that breaks the manifest, and garbage go against the seller.
#[tokio::test]
async fn evidence_decides_disputes() {
    use bitwrk_protocol::{crypto, transfer};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (buyer, seller) = (PrivateKey::generate(), PrivateKey::generate());
    let m = native_manifest("disputed");
    c.publish(&seller, &m, &[]).await.unwrap();
    let key = [3u8; 32];
    let outputs = |name: &str| transfer::encode_result(&[(name.to_string(), vec![1, 2, 3])]);
    // Every trade below uses the secret [5; 32]: its transfer credential.
    let auth = transfer::transfer_auth(&Hash32([5; 32]));
    let evidence_as = |id: &bitwrk_protocol::Id, auth: Option<Hash32>, body: Vec<u8>| {
        let url = format!("{}/v1/tx/{id}/evidence", server.url);
        async move {
            let mut req = reqwest::Client::new().put(url).body(body);
            if let Some(a) = auth {
                req = req.header(transfer::TRANSFER_AUTH_HEADER, a.to_hex());
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let evidence = |id: &bitwrk_protocol::Id, body: Vec<u8>| evidence_as(id, Some(auth), body);
    // (plaintext, key the seller commits, receipt first?) → settlement.
    let cases: Vec<(Vec<u8>, [u8; 32], bool, Settlement)> = vec![
        (outputs("image"), key, true, Settlement::DisputeBuyerFault),
        (outputs("image"), [4; 32], true, Settlement::DisputeSellerFault),
        (outputs("not-declared"), key, true, Settlement::DisputeSellerFault),
        (b"garbage, no container".to_vec(), key, false, Settlement::DisputeSellerFault),
        (outputs("image"), key, false, Settlement::DisputeBuyerFault),
    ];
    for (i, (plain, committed_key, receipted, expect)) in cases.into_iter().enumerate() {
        let id_probe = bitwrk_protocol::Id::new(format!("probe{i}")).unwrap();
        let (status, _) = evidence(&id_probe, vec![1]).await;
        assert_eq!(status, 404);
        // The id is known only after the match; seal for the id the exchange gives.
        c.place_bid(&seller, m.id(), Side::Sell, Sat(1000)).await.unwrap();
        let txid = c.place_bid(&buyer, m.id(), Side::Buy, Sat(1000)).await.unwrap().tx.unwrap();
        let (enc, _) = crypto::seal(&key, &txid, &plain);
        let (status, body) = evidence(&txid, enc.clone()).await;
        assert_eq!((status, body["error"].as_str()), (409, Some("wrong_phase")));
        let (work, secret) = (Hash32::of(b"w"), [5u8; 32]);
        let secret_hash = tx::secret_hash(&work, &secret);
        c.tx_action(&buyer, &txid, TxAction::EstablishBuyer { work_hash: work, secret_hash })
            .await
            .unwrap();
        let worker_url = "http://127.0.0.1:9/".to_string();
        c.tx_action(&seller, &txid, TxAction::EstablishSeller { worker_url }).await.unwrap();
        c.tx_action(&seller, &txid, TxAction::Secret { secret }).await.unwrap();
        let result =
            TxAction::Result { enc_result_hash: Hash32::of(&enc), result_key: committed_key };
        c.tx_action(&seller, &txid, result).await.unwrap();
        if receipted {
            c.receipt(&buyer, &txid, Hash32::of(&enc)).await.unwrap();
        }
        let before = c.account(&buyer.address()).await.unwrap();
        let t = c.tx_action(&buyer, &txid, TxAction::RejectResult).await.unwrap();
        assert_eq!((t.phase, t.dispute_deposit_sat), (Phase::ResultDisputed, Sat(100)));
        // A stranger (no credential, or a guessed one) may not upload.
        for stranger in [None, Some(Hash32::of(b"guess"))] {
            let (status, body) = evidence_as(&txid, stranger, enc.clone()).await;
            assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
        }
        let (status, body) = evidence(&txid, b"other bytes".to_vec()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("wrong_evidence")), "{body}");
        let t = c.upload_evidence(&txid, &auth, enc).await.unwrap();
        assert_eq!(t.settlement, Some(expect), "case {i}");
        let after = c.account(&buyer.address()).await.unwrap();
        let paid = if expect == Settlement::DisputeBuyerFault { 1030 + 100 } else { 0 };
        assert_eq!(after.available_sat.0, before.available_sat.0 + 1030 - paid, "case {i}");
        let (status, body) = evidence(&txid, vec![]).await;
        assert_eq!((status, body["error"].as_str()), (409, Some("tx_closed")));
    }
    let b = c.account(&buyer.address()).await.unwrap().record;
    let s = c.account(&seller.address()).await.unwrap().record;
    assert_eq!((b.disputes_won, b.disputes_lost, s.seller_faults), (3, 2, 3));
    let raw = reqwest::get(format!("{}/v1/accounts/{}", server.url, seller.address()))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(raw["seller_faults"], 3, "{raw}");
    let l = c.ledger().await.unwrap();
    assert_eq!(l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0, l.created_sat.0);
    server.stop().await;
}

/// Free work has a price: a buyer that never signs a receipt for a committed result
/// lapses at the deadline, pays the seller half, and it is on its record.
#[tokio::test]
async fn a_buyer_who_never_signs_pays_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Config {
        // Deadlines count from the previous one: the lapse comes 7 s after the match.
        establishing_s: 2,
        transmitting_s: 2,
        working_s: 2,
        committed_s: 1,
        ..config(dir.path())
    })
    .await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (buyer, seller) = (PrivateKey::generate(), PrivateKey::generate());
    let m = native_manifest("lapsing");
    c.publish(&seller, &m, &[]).await.unwrap();
    let txid = trade_to_committed(&c, &buyer, &seller, m.id(), b"enc", [1; 32]).await;
    let t = c.tx(&txid).await.unwrap();
    let t = c.wait_tx(&txid, t.version, Duration::from_secs(20)).await.unwrap();
    assert_eq!(t.settlement, Some(Settlement::Lapsed));
    assert_eq!(c.account(&seller.address()).await.unwrap().available_sat, Sat(100_000_500));
    let b = c.account(&buyer.address()).await.unwrap();
    assert_eq!(b.available_sat, Sat(100_000_000 - 500 - 15));
    assert_eq!((b.record.lapsed, b.record.trades_bought), (1, 1));
    server.stop().await;
}

/// n − s for secp256k1's group order n (makes a high-S twin of a low-S signature).
fn negate_s(s: &[u8]) -> [u8; 32] {
    const N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36,
        0x41, 0x41,
    ];
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = N[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 { 1 } else { 0 };
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

#[tokio::test]
async fn refusals_are_json_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let key = PrivateKey::generate();
    let m = native_manifest("refusals");
    c.publish(&key, &m, &[]).await.unwrap();
    let bids = format!("{}/v1/bids", server.url);
    let op =
        || Operation::Bid { article: m.id(), side: Side::Sell, price: Sat(5), exclude: Vec::new() };
    let now_s = c.exchange_now_ms() / 1000;

    // The same envelope twice: the first answer; another message under its nonce: 409.
    let env = c.sign(&key, op());
    let first: bitwrk_protocol::api::BidView = c.post_envelope("/v1/bids", &env).await.unwrap();
    let again: bitwrk_protocol::api::BidView = c.post_envelope("/v1/bids", &env).await.unwrap();
    assert_eq!(first, again);
    let mut msg = Message::parse(&env.message).unwrap();
    msg.op = Operation::Bid { article: m.id(), side: Side::Sell, price: Sat(6), exclude: vec![] };
    let e = c.post_envelope::<serde_json::Value>("/v1/bids", &msg.sign(&key)).await.unwrap_err();
    assert_eq!(api_code(e), (409, "nonce_reused".into()));

    let check = |env: Envelope, status: u16, code: &'static str| {
        let c = c.clone();
        async move {
            let e = c.post_envelope::<serde_json::Value>("/v1/bids", &env).await.unwrap_err();
            assert_eq!(api_code(e), (status, code.to_string()), "{}", env.message);
        }
    };
    // Signed by another key than the address claims.
    let other = PrivateKey::generate();
    let mut forged = c.sign(&other, op());
    forged.address = key.address().to_string();
    check(forged, 401, "bad_signature").await;
    // The same but for an address whose key is cached already.
    let mut forged = c.sign(&other, op());
    forged.address = key.address().to_string();
    check(forged, 401, "bad_signature").await;
    // The key's own valid signature with the recovery id flipped, for a cached key
    // (the key signed the bids above), and for an address seen for the first time.
    for signer in [&key, &PrivateKey::generate()] {
        let mut env = c.sign(signer, op());
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&env.signature).unwrap();
        raw[0] ^= 1;
        env.signature = base64::engine::general_purpose::STANDARD.encode(&raw);
        check(env, 401, "bad_signature").await;
    }
    // An accepted envelope sent to another endpoint, or for another id, is refused: nonce
    // memory answers only where and for what it was made.
    let cancel = c.sign(&key, Operation::Cancel { bid: first.id.clone() });
    let _: serde_json::Value =
        c.post_envelope(&format!("/v1/bids/{}/cancel", first.id), &cancel).await.unwrap();
    for path in ["/v1/bids/b1other/cancel".to_string(), format!("/v1/tx/{}", first.id)] {
        let e = c.post_envelope::<serde_json::Value>(&path, &cancel).await.unwrap_err();
        let (status, _) = api_code(e);
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    // High S.
    let mut env = c.sign(&key, op());
    let mut raw = base64::engine::general_purpose::STANDARD.decode(&env.signature).unwrap();
    let high = negate_s(&raw[33..65]);
    raw[33..65].copy_from_slice(&high);
    raw[0] ^= 1;
    env.signature = base64::engine::general_purpose::STANDARD.encode(&raw);
    check(env, 401, "bad_signature").await;
    // Another exchange, expired, too far ahead.
    let msg = |exchange: &str, valid_until: u64| Message {
        exchange: exchange.into(),
        op: op(),
        nonce: rand_nonce(),
        valid_until,
    };
    check(msg("elsewhere", now_s + 60).sign(&key), 400, "wrong_exchange").await;
    check(msg(c.exchange_id(), now_s - 5).sign(&key), 400, "expired").await;
    check(msg(c.exchange_id(), now_s + 700).sign(&key), 400, "too_far_ahead").await;
    // A message with an unknown key, keys out of order.
    let good = c.sign(&key, op());
    let mut bad = good.clone();
    bad.message = good.message.replace("&nonce=", "&extra=1&nonce=");
    bad.signature = key.sign_message(&bad.message);
    check(bad, 400, "bad_message").await;
    // Wrong op for the endpoint.
    let cancel = c.sign(&key, Operation::Cancel { bid: first.id.clone() });
    check(cancel, 400, "wrong_op").await;

    // Malformed bodies: never a 5xx, always JSON.
    let env_json = serde_json::to_string(&good).unwrap();
    let cases: Vec<(String, u16, &str)> = vec![
        ("not json".into(), 400, "bad_json"),
        (env_json.replace("{\"address\"", "{\"extra\":1,\"address\""), 400, "bad_json"),
        (env_json.replace("{\"address\"", "{\"message\":\"x\",\"address\""), 400, "bad_json"),
        ("{}".into(), 400, "bad_json"),
        ("x".repeat(20_000), 413, "too_large"),
    ];
    for (body, status, code) in cases {
        let (s, e) = post_raw(&bids, body).await;
        assert_eq!((s, e.map(|e| e.error)), (status, Some(code.to_string())));
    }
    // The publish endpoint has its own, larger limit: 100 KB of junk is read and refused
    // as bad JSON, not as too large.
    let (s, e) = post_raw(&format!("{}/v1/articles", server.url), "x".repeat(100_000)).await;
    assert_eq!((s, e.unwrap().error), (400, "bad_json".into()));
    let (s, e) = post_raw(&format!("{}/v1/nothing", server.url), "{}").await;
    assert_eq!((s, e.unwrap().error), (404, "not_found".into()));
    let r = reqwest::Client::new().delete(&bids).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "method_not_allowed");
    let r = reqwest::get(format!("{}/v1/bids/not%20an%20id", server.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r =
        reqwest::get(format!("{}/v1/bids/{}?after_version=x", server.url, first.id)).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.json::<ErrorBody>().await.unwrap().error),
        (400, "bad_query".into())
    );
    let r = reqwest::get(format!("{}/v1/accounts/1notanaddress", server.url)).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Modules: hash mismatch, not a component, a forbidden import; a good one stored once.
    let good_module = wat::parse_str("(component)").unwrap();
    let wm = wasm_manifest(&good_module);
    let e = c.publish(&key, &wm, b"other bytes").await.unwrap_err();
    assert_eq!(api_code(e).1, "bad_manifest");
    let not_component = wasm_manifest(b"\0asm\x01\0\0\0");
    let e = c.publish(&key, &not_component, b"\0asm\x01\0\0\0").await.unwrap_err();
    assert_eq!(api_code(e), (422, "module_refused".into()));
    let fs =
        wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)))"#).unwrap();
    let e = c.publish(&key, &wasm_manifest(&fs), &fs).await.unwrap_err();
    assert_eq!(api_code(e), (422, "module_refused".into()));
    let entry = c.publish(&key, &wm, &good_module).await.unwrap();
    assert_eq!(c.module(&entry.id).await.unwrap(), good_module);

    // The rate limit answers 429 in JSON (a separate server with a tiny limit).
    let dir2 = tempfile::tempdir().unwrap();
    let limited = Server::start(Config { rate_limit_per_s: 1, ..config(dir2.path()) }).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = reqwest::get(format!("{}/healthz", limited.url)).await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 429 {
            assert_eq!(r.json::<ErrorBody>().await.unwrap().error, "rate_limited");
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    limited.stop().await;

    // openapi.json names every route; metrics and healthz answer.
    let doc: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for p in [
        "/v1/info",
        "/v1/bids",
        "/v1/bids/{id}",
        "/v1/bids/{id}/cancel",
        "/v1/tx/{id}",
        "/v1/accounts/{address}",
        "/v1/ledger",
        "/v1/articles",
        "/v1/articles/{id}",
        "/v1/articles/{id}/module",
        "/v1/articles/{id}/book",
        "/openapi.json",
        "/metrics",
        "/healthz",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from openapi.json");
    }
    let metrics =
        reqwest::get(format!("{}/metrics", server.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("bitwrk_ledger_created_sat "), "{metrics}");
    server.stop().await;
}

fn rand_nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    n.copy_from_slice(&Hash32::of(format!("{:?}", std::time::Instant::now()).as_bytes()).0[..16]);
    n
}

#[tokio::test]
async fn timer_fires_deadlines_and_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config { establishing_s: 1, ..config(dir.path()) };
    let server = Server::start(cfg.clone()).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (buyer, seller) = (PrivateKey::generate(), PrivateKey::generate());
    let m = native_manifest("deadline");
    c.publish(&seller, &m, &[]).await.unwrap();
    c.place_bid(&seller, m.id(), Side::Sell, Sat(100)).await.unwrap();
    let b = c.place_bid(&buyer, m.id(), Side::Buy, Sat(100)).await.unwrap();
    let txid = b.tx.unwrap();
    let t = c.tx(&txid).await.unwrap();
    // Nobody establishes: the timer refunds the buyer at the deadline; we wait for it.
    let t = c.wait_tx(&txid, t.version, Duration::from_secs(20)).await.unwrap();
    assert_eq!(t.settlement, Some(Settlement::RefundedBuyer));
    assert_eq!(
        t.history.last().unwrap().note.as_deref(),
        Some("deadline passed; price and fee refunded to the buyer")
    );
    assert_eq!(c.account(&buyer.address()).await.unwrap().available_sat, Sat(100_000_000));
    let open = c.place_bid(&buyer, m.id(), Side::Buy, Sat(50)).await.unwrap();
    let ledger = c.ledger().await.unwrap();
    server.stop().await;

    // Restart on the same database: the same state, the same exchange id.
    let server = Server::start(cfg).await;
    let c2 = ExchangeClient::connect(&server.url).await.unwrap();
    assert_eq!(c2.exchange_id(), c.exchange_id());
    assert_eq!(c2.ledger().await.unwrap(), ledger);
    assert_eq!(c2.bid(&open.id).await.unwrap().state, BidState::Open);
    assert_eq!(c2.tx(&txid).await.unwrap(), t);
    server.stop().await;
}

// ---------- the real binary, killed with SIGKILL mid-stream ----------

struct Proc {
    child: Child,
    url: String,
}

fn spawn_exchange(db: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitwrk-exchange"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(["--rate-limit-per-s", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Proc { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_bid_and_no_satoshi() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite");
    let keys: Vec<PrivateKey> = (0..8).map(|_| PrivateKey::generate()).collect();
    let m = native_manifest("crash");
    let mut acked = Vec::new();
    let mut exchange_id = None;
    for round in 0..4 {
        let mut p = spawn_exchange(&db);
        let c = ExchangeClient::connect(&p.url).await.unwrap();
        assert_eq!(*exchange_id.get_or_insert(c.exchange_id().to_string()), c.exchange_id());
        // Everything acknowledged before is there.
        for id in &acked {
            c.bid(id)
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged bid {id} is lost: {e}"));
        }
        let l = c.ledger().await.unwrap();
        assert_eq!(
            l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0,
            l.created_sat.0,
            "round {round}: {l:?}"
        );
        c.publish(&keys[0], &m, &[]).await.unwrap();
        // A stream of trades from 8 concurrent clients; kill -9 once 60 bids are acknowledged.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let mut tasks = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let (c, key, tx, article) = (c.clone(), key.clone(), tx.clone(), m.id());
            tasks.push(tokio::spawn(async move {
                for j in 0u64.. {
                    let side =
                        if (i + j as usize).is_multiple_of(2) { Side::Buy } else { Side::Sell };
                    match c.place_bid(&key, article, side, Sat(100 + (j * 7 + i as u64) % 50)).await
                    {
                        Ok(b) => {
                            if tx.send(b.id).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        drop(tx);
        let mut this_round = 0;
        while let Some(id) = rx.recv().await {
            acked.push(id);
            this_round += 1;
            if this_round == 60 {
                p.child.kill().unwrap(); // SIGKILL
                p.child.wait().unwrap();
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(this_round >= 60);
    }
    // Final restart: every acknowledged bid is there, money is conserved.
    let mut p = spawn_exchange(&db);
    let c = ExchangeClient::connect(&p.url).await.unwrap();
    for id in &acked {
        c.bid(id).await.unwrap_or_else(|e| panic!("acknowledged bid {id} is lost: {e}"));
    }
    let l = c.ledger().await.unwrap();
    assert_eq!(l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0, l.created_sat.0);
    assert!(l.bids_total as usize >= acked.len());
    assert!(l.txs_total > 0, "the stream made trades");
    p.child.kill().unwrap();
    p.child.wait().unwrap();
}

/// A client written from the docs alone (Python standard library, secp256k1 in plain
/// Python) trades against the real binary.
#[test]
fn a_client_written_from_the_docs_trades() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = spawn_exchange(&dir.path().join("doc.sqlite"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/doc_client.py");
    let out = Command::new("python3").arg(script).arg(&p.url).output();
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let out = out.expect("python3 runs (it is needed for this test)");
    assert!(
        out.status.success(),
        "doc client failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Garbage and mangled requests: always a 4xx with a JSON error body, never a 5xx.
#[tokio::test]
async fn malformed_input_never_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Config { rate_limit_per_s: 0, ..config(dir.path()) }).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let key = PrivateKey::generate();
    let m = native_manifest("fuzz");
    c.publish(&key, &m, &[]).await.unwrap();
    let good = serde_json::to_vec(&c.sign(
        &key,
        Operation::Bid { article: m.id(), side: Side::Buy, price: Sat(5), exclude: vec![] },
    ))
    .unwrap();
    let publish = serde_json::to_vec(&bitwrk_protocol::api::PublishRequest {
        envelope: c.sign(
            &key,
            Operation::Publish { article: m.id(), module_sha256: Hash32::of(b""), size: 0 },
        ),
        manifest: m.clone(),
        module_base64: String::new(),
    })
    .unwrap();
    let http = reqwest::Client::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let paths = ["/v1/bids", "/v1/bids/b1/cancel", "/v1/tx/t1", "/v1/articles"];
    for round in 0..200 {
        let base = if round % 2 == 0 { &good } else { &publish };
        let mut body = base.clone();
        match next() % 4 {
            0 => body.truncate((next() as usize) % body.len()),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % body.len();
                    body[i] = next() as u8;
                }
            }
            2 => body = (0..next() % 300).map(|_| next() as u8).collect(),
            _ => {
                let i = (next() as usize) % body.len();
                body.insert(i, b"\"{}[],:\\"[(next() % 8) as usize]);
            }
        }
        let path = paths[(next() as usize) % paths.len()];
        let r = http.post(format!("{}{path}", server.url)).body(body.clone()).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status == 200 {
            continue; // a mutation that happens to be valid (e.g. an idempotent repeat)
        }
        assert!(
            (400..500).contains(&status),
            "{path} {status} {text} for {:?}",
            String::from_utf8_lossy(&body)
        );
        let e: ErrorBody =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not a JSON error: {text}"));
        assert!(!e.error.is_empty());
    }
    for path in [
        "/v1/bids/%FF",
        "/v1/tx/..%2F..",
        "/v1/articles/zz/book",
        "/v1/accounts/%00",
        "/v1/bids/b1?wait_ms=-1",
    ] {
        let r = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "{path}: {status}");
        r.json::<ErrorBody>().await.unwrap();
    }
    server.stop().await;
}

/// Issue 13 item 7: twenty fresh keys from one IP cannot hand one account 20× the
/// starting capital: only `FUNDED_ACCOUNTS_PER_IP_PER_HOUR_DEFAULT` of them are funded,
/// the rest open with nothing, and the money created says so.
#[tokio::test]
async fn fresh_keys_from_one_ip_are_funded_within_the_quota() {
    use bitwrk_exchange::limits::FUNDED_ACCOUNTS_PER_IP_PER_HOUR_DEFAULT as QUOTA;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let capital = c.info().starting_capital_sat;
    let m = native_manifest("funding");
    let collector = PrivateKey::generate();
    c.publish(&collector, &m, &[]).await.unwrap();
    // The collector offers twenty units of work at (almost) a whole starting capital:
    // every fresh key that buys one hands its capital to the collector.
    let price = Sat(capital.0 / 2);
    for _ in 0..20 {
        c.place_bid(&collector, m.id(), Side::Sell, price).await.unwrap();
    }
    let mut funded = 0;
    for i in 0..20 {
        let fresh = PrivateKey::generate();
        match c.place_bid(&fresh, m.id(), Side::Buy, price).await {
            Ok(b) => {
                assert_eq!(b.state, BidState::Matched, "key {i}");
                funded += 1;
            }
            Err(e) => assert_eq!(api_code(e), (402, "insufficient_funds".into()), "key {i}"),
        }
    }
    // The collector was fresh too: its first bid took one of the IP's slots.
    assert_eq!(funded, QUOTA as usize - 1, "funded fresh keys from one IP");
    let l = c.ledger().await.unwrap();
    assert_eq!(l.created_sat.0, QUOTA as u64 * capital.0, "{l:?}");
    server.stop().await;

    // 0 switches the quota off (a private test market): all twenty are funded.
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(Config { funded_accounts_per_ip_per_hour: 0, ..config(dir.path()) }).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    c.publish(&collector, &m, &[]).await.unwrap();
    for _ in 0..20 {
        let fresh = PrivateKey::generate();
        c.place_bid(&fresh, m.id(), Side::Buy, price).await.unwrap();
    }
    assert_eq!(c.ledger().await.unwrap().created_sat.0, 20 * capital.0);
    server.stop().await;
}

/// Issue 13 item 11: one key cannot keep more than `OPEN_BIDS_PER_ACCOUNT_MAX` bids open
/// (sell bids cost nothing, so without a cap they were free memory for good).
#[tokio::test]
async fn open_bids_per_account_are_capped() {
    use bitwrk_exchange::limits::OPEN_BIDS_PER_ACCOUNT_MAX;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (seller, other) = (PrivateKey::generate(), PrivateKey::generate());
    let m = native_manifest("capped");
    c.publish(&seller, &m, &[]).await.unwrap();
    let mut first = None;
    for _ in 0..OPEN_BIDS_PER_ACCOUNT_MAX {
        let b = c.place_bid(&seller, m.id(), Side::Sell, Sat(1000)).await.unwrap();
        first.get_or_insert(b.id);
    }
    let e = c.place_bid(&seller, m.id(), Side::Sell, Sat(1000)).await.unwrap_err();
    assert_eq!(api_code(e), (409, "too_many_bids".into()));
    // Other accounts are not affected.
    c.place_bid(&other, m.id(), Side::Sell, Sat(1000)).await.unwrap();
    // A cancel frees a place.
    c.cancel_bid(&seller, &first.unwrap()).await.unwrap();
    c.place_bid(&seller, m.id(), Side::Sell, Sat(1000)).await.unwrap();
    let e = c.place_bid(&seller, m.id(), Side::Sell, Sat(1000)).await.unwrap_err();
    assert_eq!(api_code(e), (409, "too_many_bids".into()));
    server.stop().await;
}

/// GET with the status and the body as JSON.
async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Issue 13 item 6: one key cannot fill the registry (a per-publisher quota, 409
/// `quota_exceeded`), manifests over 64 KiB are refused whatever field makes them large,
/// and the listing comes in bounded pages (`?after=<id>&limit=N`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_has_quotas_and_pages() {
    use bitwrk_exchange::limits::{ARTICLES_PAGE_MAX, ARTICLES_PER_PUBLISHER_MAX};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Config { rate_limit_per_s: 0, ..config(dir.path()) }).await;
    let c = ExchangeClient::connect(&server.url).await.unwrap();
    let (squatter, other) = (PrivateKey::generate(), PrivateKey::generate());
    let versioned = |i: usize| {
        let mut m = native_manifest("flood");
        m.version = format!("1.0.{i}");
        m
    };
    // The quota's worth of publishes from one key, four at a time.
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let (c, key) = (c.clone(), squatter.clone());
        tasks.push(tokio::spawn(async move {
            for i in (lane..ARTICLES_PER_PUBLISHER_MAX).step_by(4) {
                c.publish(&key, &versioned(i), &[]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = c.publish(&squatter, &versioned(ARTICLES_PER_PUBLISHER_MAX), &[]).await.unwrap_err();
    assert_eq!(api_code(e), (409, "quota_exceeded".into()));
    // Another publisher is not affected.
    c.publish(&other, &native_manifest("honest"), &[]).await.unwrap();

    // 64 KiB: a long version string is refused, nothing is stored.
    let mut long = native_manifest("long");
    long.version = "1".repeat(bitwrk_protocol::manifest::caps::MANIFEST_BYTES_MAX);
    let e = c.publish(&other, &long, &[]).await.unwrap_err();
    assert_eq!(api_code(e), (422, "bad_manifest".into()));

    // Pages: bounded, in id order, `after` exclusive; the client walks them all.
    let all = c.articles().await.unwrap();
    assert_eq!(all.len(), ARTICLES_PER_PUBLISHER_MAX + 1);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "id order");
    let url = format!("{}/v1/articles", server.url);
    let (status, first) = get_json(&url).await;
    assert_eq!((status, first.as_array().unwrap().len()), (200, ARTICLES_PAGE_MAX));
    let (_, page) = get_json(&format!("{url}?after={}&limit=3", all[9].id)).await;
    let ids: Vec<String> =
        page.as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, all[10..13].iter().map(|a| a.id.to_string()).collect::<Vec<_>>());
    for bad in ["?limit=0", &format!("?limit={}", ARTICLES_PAGE_MAX + 1), "?after=xyz", "?x=1"] {
        let (status, body) = get_json(&format!("{url}{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    server.stop().await;
}
