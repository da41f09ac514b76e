//! Trading end to end: every example article, re-sent inputs, a seller killed mid-trade,
//! forged and replayed messages, and money conserved throughout.

use std::time::Duration;

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::api::TxView;
use bitwrk_protocol::message::{Message, Operation};
use bitwrk_protocol::transfer::{
    TRANSFER_AUTH_HEADER, WorkOffer, WorkOfferAnswer, frame_chunks, transfer_auth,
};
use bitwrk_protocol::work::WorkManifest;
use bitwrk_protocol::{Hash32, Id, Phase, PrivateKey, Sat, Settlement, Side, TxAction};

use crate::harness::{self, assert_conserved, buy};

/// A small version of the demo scene (fast to render in a debug build).
fn scene(width: u32, height: u32, samples: u32) -> Vec<u8> {
    let path =
        bitwrk_host::local_articles::workspace_root().join("articles/raytrace/scenes/demo.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["width"] = width.into();
    v["height"] = height.into();
    v["samples"] = samples.into();
    serde_json::to_vec(&v).unwrap()
}

fn tile(x: u32, y: u32, w: u32, h: u32) -> Vec<u8> {
    serde_json::json!({"x": x, "y": y, "width": w, "height": h}).to_string().into_bytes()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let info = reader.info();
    (info.width, info.height)
}

/// Deterministic pseudo-text of `n` bytes (words from a small vocabulary).
fn text(n: usize, seed: u64) -> Vec<u8> {
    let words =
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 10) as usize].as_bytes());
        out.extend_from_slice(format!("{} ", x % 97).as_bytes());
    }
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_article_trades_and_a_resent_input_costs_only_new_chunks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount", "raytrace", "thumbnail"]).await?;
    // Only seller one sells wordcount, so the re-send goes to the seller that has the chunks.
    let s1 = harness::seller(
        "seller1",
        &dir.path().join("s1"),
        &ex.url,
        &["wordcount:100", "raytrace:100", "thumbnail:100"],
        2,
    )?;
    let s2 = harness::seller(
        "seller2",
        &dir.path().join("s2"),
        &ex.url,
        &["raytrace:150", "thumbnail:150"],
        2,
    )?;
    let b = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;

    // wordcount, through BitWrk's `data` field.
    let got = buy(
        &b.int_url,
        "wordcount",
        vec![("data", b"The cat and the hat. THE END".to_vec())],
        None,
    )
    .await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    let counts: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert_eq!(counts["counts"]["the"], 3);
    assert_eq!(counts["total_words"], 7);

    // raytrace: one tile of a small scene.
    let got = buy(
        &b.int_url,
        "raytrace",
        vec![("scene", scene(64, 48, 2)), ("tile", tile(16, 8, 32, 24))],
        Some(200),
    )
    .await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(png_size(&got.body), (32, 24));
    let tile_png = got.body;

    // thumbnail of that tile.
    let got = buy(
        &b.int_url,
        "thumbnail",
        vec![("image", tile_png), ("params", br#"{"max_width":8,"max_height":8}"#.to_vec())],
        Some(200),
    )
    .await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(png_size(&got.body), (8, 6));

    // A bad input is the buyer's error, with the reason code and no retry.
    let got = buy(
        &b.int_url,
        "raytrace",
        vec![("scene", b"{not json".to_vec()), ("tile", tile(0, 0, 4, 4))],
        Some(200),
    )
    .await?;
    assert_eq!(got.status, 422, "{}", String::from_utf8_lossy(&got.body));
    let err: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert_eq!(err["error"], "bad_input", "{err}");

    // A 3 MB text, then the same text with 1 % of it edited in one place.
    let first = text(3_000_000, 7);
    let got = buy(&b.int_url, "wordcount", vec![("text", first.clone())], None).await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.input_bytes, 3_000_000);
    assert!(
        got.sent_bytes >= 2_900_000,
        "first send carries nearly everything: {}",
        got.sent_bytes
    );
    let mut edited = first.clone();
    for b in &mut edited[1_500_000..1_530_000] {
        *b = b'x';
    }
    let got = buy(&b.int_url, "wordcount", vec![("text", edited)], None).await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        got.sent_bytes > 0 && got.sent_bytes <= 600_000,
        "re-send sent {} bytes",
        got.sent_bytes
    );

    let l = assert_conserved(&client).await?;
    assert!(l.fees_sat.0 > 0);
    drop((s1, s2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_killed_mid_trade_costs_a_retry_and_its_tx_refunds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Short deadlines, so the dead seller's transaction refunds within the test.
    let ex = harness::exchange(
        &dir.path().join("exchange"),
        &["--establishing-s", "4", "--transmitting-s", "8", "--working-s", "20"],
    )?;
    let client = harness::publish(&ex.url, &["raytrace"]).await?;
    // The cheaper seller is matched first; one slot, so it has no second bid to match.
    let mut doomed =
        harness::seller("doomed", &dir.path().join("doomed"), &ex.url, &["raytrace:100"], 1)?;
    // Its ask must be in the book before the buyer bids.
    // (It may have been placed before the ready line the harness waited for.)
    doomed.proc.wait_logged("sell bid placed")?;
    let survivor =
        harness::seller("survivor", &dir.path().join("survivor"), &ex.url, &["raytrace:200"], 1)?;
    let b = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    let capital = client.info().starting_capital_sat;

    let buying = {
        let fields = vec![("scene", scene(96, 96, 48)), ("tile", tile(0, 0, 96, 96))];
        let b_url = b.int_url.clone();
        tokio::spawn(async move { buy(&b_url, "raytrace", fields, Some(300)).await })
    };
    // Kill the cheap seller as soon as it has established the transaction.
    let line = doomed.proc.wait_line("sell trade established")?;
    let dead_tx: Id =
        line.split_whitespace().find_map(|w| w.strip_prefix("tx=")).expect("tx field").parse()?;
    doomed.proc.kill();

    let got = buying.await??;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(png_size(&got.body), (96, 96));
    assert!(got.attempts >= 2, "the first attempt went to the killed seller");
    assert_ne!(got.tx, dead_tx.to_string());

    // The dead seller's transaction refunds the buyer at its deadline.
    let mut v: TxView = client.tx(&dead_tx).await?;
    while v.settlement.is_none() {
        v = client.wait_tx(&dead_tx, v.version, Duration::from_secs(30)).await?;
    }
    assert_eq!(v.settlement, Some(Settlement::RefundedBuyer));
    // The buyer accepts after handing over the result: wait for that to land.
    let good_tx: Id = got.tx.parse()?;
    let mut good: TxView = client.tx(&good_tx).await?;
    while good.settlement.is_none() {
        good = client.wait_tx(&good_tx, good.version, Duration::from_secs(30)).await?;
    }
    assert_eq!(good.phase, Phase::Finished);
    let after = client.account(&b.address.parse()?).await?;
    assert_eq!(after.blocked_sat, Sat(0));
    assert_eq!(capital.0 - after.available_sat.0, good.price_sat.0 + good.fee_sat.0);
    assert_conserved(&client).await?;
    drop(survivor);
    Ok(())
}

/// Post an envelope to the exchange; the HTTP status and error code.
async fn post_raw(url: &str, path: &str, env: &bitwrk_protocol::Envelope) -> (u16, String) {
    let resp = reqwest::Client::new().post(format!("{url}{path}")).json(env).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("").to_string())
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_messages_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let _seller = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let wordcount = bitwrk_host::local_articles::load("wordcount")?.0;
    let article = wordcount.id();
    let me = PrivateKey::generate();
    let mallory = PrivateKey::generate();
    let xid = client.exchange_id().to_string();

    // At the exchange: a bid signed by another key than the address it claims.
    let op = Operation::Bid { article, side: Side::Buy, price: Sat(500), exclude: vec![] };
    let mut forged = client.sign(&mallory, op.clone());
    forged.address = me.address().to_string();
    let (status, _) = post_raw(&ex.url, "/v1/bids", &forged).await;
    assert!((400..500).contains(&status), "forged bid: {status}");
    // Signed for another exchange.
    let other = Message::new("some-other-exchange", op.clone(), now_s(), 60).sign(&me);
    let (status, _) = post_raw(&ex.url, "/v1/bids", &other).await;
    assert!((400..500).contains(&status), "bid for another exchange: {status}");
    // Expired.
    let old = Message::new(&xid, op.clone(), now_s() - 700, 60).sign(&me);
    let (status, _) = post_raw(&ex.url, "/v1/bids", &old).await;
    assert!((400..500).contains(&status), "expired bid: {status}");
    // A used nonce under another message.
    let first = Message::new(&xid, op.clone(), now_s(), 60);
    let env = first.sign(&me);
    let (status, _) = post_raw(&ex.url, "/v1/bids", &env).await;
    assert_eq!(status, 200, "a proper bid");
    let again = Message {
        op: Operation::Bid { article, side: Side::Buy, price: Sat(501), exclude: vec![] },
        ..first
    };
    let (status, _) = post_raw(&ex.url, "/v1/bids", &again.sign(&me)).await;
    assert_eq!(status, 409, "same nonce, another message");

    // The bid matched the seller: play the buyer by hand and try the seller's checks.
    let bid: bitwrk_protocol::api::BidView = serde_json::from_value(
        reqwest::Client::new()
            .post(format!("{}/v1/bids", ex.url))
            .json(&env)
            .send()
            .await?
            .json()
            .await?,
    )?;
    let mut b = bid;
    while b.tx.is_none() {
        b = client.wait_bid(&b.id, b.version, Duration::from_secs(30)).await?;
    }
    let tx = b.tx.clone().unwrap();
    let input = b"one two two".to_vec();
    let (manifest, _) = WorkManifest::build([("text", input.as_slice())]);
    let work_hash = manifest.work_hash();
    let secret = [7u8; 32];
    let establish = TxAction::EstablishBuyer {
        work_hash,
        secret_hash: bitwrk_protocol::tx::secret_hash(&work_hash, &secret),
    };
    // Mallory cannot act for the buyer.
    let err = client.tx_action(&mallory, &tx, establish.clone()).await.unwrap_err();
    assert!(err.code().is_some(), "mallory's establish: {err}");
    let mut v = client.tx_action(&me, &tx, establish).await?;
    while v.phase < Phase::Transmitting {
        v = client.wait_tx(&tx, v.version, Duration::from_secs(30)).await?;
    }
    let base = format!("{}/{}", v.worker_url.clone().unwrap(), tx);
    let http = reqwest::Client::new();

    // A wrong secret is refused; the right one gets the bitmap.
    let wrong = WorkOffer { manifest: manifest.clone(), secret: Hash32([8u8; 32]) };
    assert_eq!(http.post(&base).json(&wrong).send().await?.status().as_u16(), 403);
    let offer = WorkOffer { manifest: manifest.clone(), secret: Hash32(secret) };
    let ans: WorkOfferAnswer =
        http.post(&base).json(&offer).send().await?.error_for_status()?.json().await?;
    let missing = ans.missing(manifest.distinct_chunks().len())?;
    assert_eq!(missing, vec![true]);
    // Every later transfer request needs the buyer's credential: a stranger who knows
    // the public ids (tx, worker_url) feeds no chunks and reads no result.
    let auth = transfer_auth(&Hash32(secret)).to_hex();
    let stranger_auths =
        [None, Some(transfer_auth(&Hash32([8u8; 32])).to_hex()), Some(Hash32(secret).to_hex())];
    for bad in &stranger_auths {
        let with = |r: reqwest::RequestBuilder| match bad {
            Some(h) => r.header(TRANSFER_AUTH_HEADER, h),
            None => r,
        };
        let r = with(http.post(format!("{base}/chunks")).body(frame_chunks([input.as_slice()])))
            .send()
            .await?;
        assert_eq!(r.status().as_u16(), 403, "a stranger's chunks ({bad:?})");
    }
    // A chunk with other bytes than asked for is refused; the right one is taken.
    let r = http
        .post(format!("{base}/chunks"))
        .header(TRANSFER_AUTH_HEADER, &auth)
        .body(frame_chunks([&b"one two three"[..]]))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(format!("{base}/chunks"))
        .header(TRANSFER_AUTH_HEADER, &auth)
        .body(frame_chunks([input.as_slice()]))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let result = |h: Option<&str>| {
        let r = http.get(format!("{base}/result?wait_ms=20000"));
        match h {
            Some(h) => r.header(TRANSFER_AUTH_HEADER, h),
            None => r,
        }
    };
    let mut r = result(Some(&auth)).send().await?;
    while r.status().as_u16() == 202 {
        r = result(Some(&auth)).send().await?;
    }
    let enc = r.error_for_status()?.bytes().await?.to_vec();
    let enc_hash = Hash32::of(&enc);
    // The result is ready; a stranger still gets 403 and not one byte of it.
    for bad in &stranger_auths {
        let r = result(bad.as_deref()).send().await?;
        assert_eq!(r.status().as_u16(), 403, "a stranger's result read ({bad:?})");
        let body = r.bytes().await?;
        assert!(!body.windows(16).any(|w| enc.windows(16).any(|e| e == w)), "no result bytes");
    }

    // The seller committed before it served: the key is in no public view; a receipt by
    // anyone but the buyer, or for other bytes, is refused; the buyer's gets the key.
    let v = client.tx(&tx).await?;
    assert_eq!((v.phase, v.enc_result_hash), (Phase::Committed, Some(enc_hash)));
    let public = reqwest::get(format!("{}/v1/tx/{tx}", ex.url)).await?.text().await?;
    assert!(!public.contains("result_key"), "{public}");
    let e = client.receipt(&mallory, &tx, enc_hash).await.unwrap_err();
    assert_eq!(e.code(), Some("not_party"));
    let e = client.receipt(&me, &tx, Hash32::of(b"x")).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_receipt"));
    let e = client.result_key(&mallory, &tx).await.unwrap_err();
    assert_eq!(e.code(), Some("not_party"));
    let receipt = client.sign(
        &me,
        Operation::Tx { tx: tx.clone(), action: TxAction::Receipt { enc_result_hash: enc_hash } },
    );
    let a1: bitwrk_protocol::api::ReceiptAnswer =
        client.post_envelope(&format!("/v1/tx/{tx}"), &receipt).await?;
    // Resending the receipt changes nothing and gets the same answer.
    let a2: bitwrk_protocol::api::ReceiptAnswer =
        client.post_envelope(&format!("/v1/tx/{tx}"), &receipt).await?;
    assert_eq!(a1, a2);
    assert_eq!(client.result_key(&me, &tx).await?.result_key, a1.result_key);
    let outputs = bitwrk_protocol::work::check_result(&wordcount, &a1.result_key.0, &tx, enc)?;
    let counts: serde_json::Value = serde_json::from_slice(&outputs[0].1)?;
    assert_eq!(counts["counts"]["two"], 2);
    // Mallory cannot accept for the buyer; the buyer can, once.
    assert!(client.tx_action(&mallory, &tx, TxAction::Accept).await.is_err());
    let accept = client.sign(&me, Operation::Tx { tx: tx.clone(), action: TxAction::Accept });
    let (status, _) = post_raw(&ex.url, &format!("/v1/tx/{tx}"), &accept).await;
    assert_eq!(status, 200);
    // The same envelope again gets the first answer (an idempotent retry, not a second accept).
    let (status, _) = post_raw(&ex.url, &format!("/v1/tx/{tx}"), &accept).await;
    assert_eq!(status, 200);
    let v = client.tx(&tx).await?;
    assert_eq!(v.phase, Phase::Finished);
    assert_eq!(v.settlement, Some(Settlement::PaidSeller));
    assert_conserved(&client).await?;
    let _ = ExchangeClient::connect(&ex.url).await?;
    Ok(())
}

/// A buyer that goes away (here the Blender add-on's client, cancelled while its buy
/// waits for a seller) makes the host withdraw the resting bid: the escrow comes back
/// and nothing is bought. The client is the add-on's own `client.py`, run by python3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_buy_withdraws_its_bid_and_releases_the_escrow() -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    // No seller: the bid rests.
    let b = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    let addon =
        bitwrk_host::local_articles::workspace_root().join("blender-bridge/addon/bitwrk_render");
    let script = r#"
import sys, threading
sys.path.insert(0, sys.argv[1])
import client
cancel = client.Cancel()
def run():
    try:
        client.buy(sys.argv[2], "wordcount", [("text", "t.txt", "text/plain", b"a b b")], 500, cancel)
        print("BOUGHT", flush=True)
    except client.BuyError as e:
        print("ERROR", e.code, e.final, flush=True)
t = threading.Thread(target=run)
t.start()
sys.stdin.readline()
cancel.cancel()
t.join()
"#;
    let mut py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&addon)
        .arg(&b.int_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("python3 (the add-on's client runs in it)")?;
    let line = b.proc.wait_line("buy bid placed")?;
    let bid: Id = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bid="))
        .context("bid field")?
        .parse()?;
    let blocked = client.account(&b.address.parse()?).await?.blocked_sat;
    assert_eq!(blocked, Sat(500 + 15), "price + 3 % fee in escrow while the bid rests");

    py.stdin.take().context("stdin")?.write_all(b"cancel\n")?;
    let mut out = String::new();
    std::io::BufReader::new(py.stdout.take().context("stdout")?).read_line(&mut out)?;
    assert_eq!(out.trim(), "ERROR cancelled True", "the client reports the cancel as final");
    assert!(py.wait()?.success());

    let line = b.proc.wait_line("bid withdrawn")?;
    assert!(line.contains(&bid.to_string()), "{line}");
    let view = client.bid(&bid).await?;
    assert_eq!(view.state, bitwrk_protocol::api::BidState::Cancelled);
    let acc = client.account(&b.address.parse()?).await?;
    assert_eq!((acc.available_sat, acc.blocked_sat), (client.info().starting_capital_sat, Sat(0)));
    assert_conserved(&client).await?;
    Ok(())
}
