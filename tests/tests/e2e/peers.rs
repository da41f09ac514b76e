//! The hostile-peer kit (issue 12): cheating sellers, a stranger, a chunk prober and a
//! buyer who never signs, each played by this test against the real binaries (an
//! exchange process, honest host processes). Every property is an assertion against
//! balances, phases and bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::api::{BidState, TxView};
use bitwrk_protocol::transfer::{
    TRANSFER_AUTH_HEADER, WorkOffer, WorkOfferAnswer, encode_result, frame_chunks, transfer_auth,
};
use bitwrk_protocol::work::WorkManifest;
use bitwrk_protocol::{Hash32, Id, Phase, PrivateKey, Sat, Settlement, Side, TxAction, crypto};

use crate::harness::{self, assert_conserved, buy};

const WAIT: Duration = Duration::from_secs(30);
/// Starting capital of every account (the exchange's default).
const CAPITAL: u64 = 100_000_000;

/// How a hostile seller cheats once it has the work.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cheat {
    /// Random bytes as "ciphertext", committed by their hash.
    Garbage,
    /// A well-formed result sealed with one key, another key committed.
    WrongKey,
    /// A valid ciphertext under the committed key whose outputs break the manifest
    /// (an output the article does not declare).
    BreaksManifest,
    /// Commits, then streams [`FLOOD_BYTES`] as "the result" without a Content-Length.
    Flood,
}

/// What a flooding seller streams: far more than wordcount's outputs can encrypt to.
const FLOOD_BYTES: u64 = 256 << 20;

struct HostileState {
    client: ExchangeClient,
    key: PrivateKey,
    cheat: Cheat,
    /// Per transaction: the ciphertext it serves.
    served: Mutex<HashMap<String, Vec<u8>>>,
    secrets: Mutex<HashMap<String, Hash32>>,
    matched: AtomicU32,
    /// Bytes of a flood the buyer pulled.
    flooded: Arc<std::sync::atomic::AtomicU64>,
}

/// A seller played by the test: it bids, establishes, takes the work like an honest
/// seller and then cheats. `matched` counts its trades.
struct HostileSeller {
    state: Arc<HostileState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for HostileSeller {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn hostile_offer(
    State(st): State<Arc<HostileState>>,
    Path(tx): Path<String>,
    body: Bytes,
) -> axum::Json<WorkOfferAnswer> {
    let offer: WorkOffer = serde_json::from_slice(&body).expect("an offer");
    let id = Id::new(&tx).unwrap();
    st.client.tx_action(&st.key, &id, TxAction::Secret { secret: offer.secret.0 }).await.unwrap();
    st.secrets.lock().unwrap().insert(tx, offer.secret);
    axum::Json(WorkOfferAnswer::new(&vec![true; offer.manifest.distinct_chunks().len()]))
}

/// Takes the chunks, commits its cheat at the exchange and answers with it.
async fn hostile_chunks(
    State(st): State<Arc<HostileState>>,
    Path(tx): Path<String>,
) -> axum::response::Response {
    let id = Id::new(&tx).unwrap();
    let committed = crypto::new_key();
    let (enc, key) = match st.cheat {
        Cheat::Garbage => ((0..200u8).map(|i| i.wrapping_mul(37)).collect(), committed),
        Cheat::WrongKey => {
            let plain = encode_result(&[("counts".into(), br#"{"counts":{}}"#.to_vec())]);
            (crypto::seal(&crypto::new_key(), &id, &plain).0, committed)
        }
        Cheat::BreaksManifest => {
            let plain = encode_result(&[("not-declared".into(), b"x".to_vec())]);
            (crypto::seal(&committed, &id, &plain).0, committed)
        }
        Cheat::Flood => (b"never sent".to_vec(), committed),
    };
    let action = TxAction::Result { enc_result_hash: Hash32::of(&enc), result_key: key };
    st.client.tx_action(&st.key, &id, action).await.unwrap();
    let octets = [(axum::http::header::CONTENT_TYPE, "application/octet-stream")];
    st.served.lock().unwrap().insert(tx.clone(), enc.clone());
    if st.cheat == Cheat::Flood {
        // A chunked body (no length) that never ends before FLOOD_BYTES; counts what the
        // buyer pulls.
        const PIECE: usize = 64 << 10;
        let counter = st.flooded.clone();
        let stream = futures_util::stream::unfold(0u64, move |sent| {
            let counter = counter.clone();
            async move {
                if sent >= FLOOD_BYTES {
                    return None;
                }
                counter.fetch_add(PIECE as u64, Ordering::SeqCst);
                Some((Ok::<_, std::io::Error>(Bytes::from(vec![0x5a; PIECE])), sent + PIECE as u64))
            }
        });
        return (octets, axum::body::Body::from_stream(stream)).into_response();
    }
    (octets, enc).into_response()
}

async fn hostile_result(
    State(st): State<Arc<HostileState>>,
    Path(tx): Path<String>,
) -> impl IntoResponse {
    let enc = st.served.lock().unwrap().get(&tx).cloned().unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], enc)
}

/// Start a hostile seller of `article` at `price`; returns once its first bid rests.
async fn hostile_seller(
    ex_url: &str,
    article: Hash32,
    price: u64,
    cheat: Cheat,
) -> anyhow::Result<HostileSeller> {
    let state = Arc::new(HostileState {
        client: ExchangeClient::connect(ex_url).await?,
        key: PrivateKey::generate(),
        cheat,
        served: Mutex::default(),
        secrets: Mutex::default(),
        matched: AtomicU32::new(0),
        flooded: Arc::default(),
    });
    let app = axum::Router::new()
        .route("/v1/work/{tx}", axum::routing::post(hostile_offer))
        .route("/v1/work/{tx}/chunks", axum::routing::post(hostile_chunks))
        .route("/v1/work/{tx}/result", axum::routing::get(hostile_result))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let worker_url = format!("http://{}/v1/work", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let first = state.client.place_bid(&state.key, article, Side::Sell, Sat(price)).await?;
    let st = state.clone();
    // Bid, establish each match, bid again: forever (until dropped).
    let bidder = tokio::spawn(async move {
        let mut bid = first;
        loop {
            while bid.state == BidState::Open {
                bid = st.client.wait_bid(&bid.id, bid.version, WAIT).await.unwrap();
            }
            if let Some(tx) = &bid.tx {
                st.matched.fetch_add(1, Ordering::SeqCst);
                let action = TxAction::EstablishSeller { worker_url: worker_url.clone() };
                st.client.tx_action(&st.key, tx, action).await.unwrap();
            }
            bid = st.client.place_bid(&st.key, article, Side::Sell, Sat(price)).await.unwrap();
        }
    });
    Ok(HostileSeller { state, tasks: vec![server, bidder] })
}

/// One cheating seller, cheaper than the honest one: the buyer host meets it first,
/// disputes with the evidence, is refunded in full, leaves it out of its next bid and
/// gets the right result from the honest seller. The cheater is never paid, matched
/// once, and the fault is on its record.
async fn a_cheating_seller_costs_nothing(cheat: Cheat) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let article = bitwrk_host::local_articles::load("wordcount")?.0.id();
    let cheater = hostile_seller(&ex.url, article, 50, cheat).await?;
    let honest = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let b = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;

    let got = buy(&b.int_url, "wordcount", vec![("data", b"a b b".to_vec())], Some(200)).await?;
    assert_eq!(got.status, 303, "{cheat:?}: {}", String::from_utf8_lossy(&got.body));
    let counts: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert_eq!(counts["counts"]["b"], 2, "{cheat:?}: the honest seller's result");
    assert_eq!(got.attempts, 2, "{cheat:?}: one attempt with the cheater, then the honest one");
    assert_eq!(cheater.state.matched.load(Ordering::SeqCst), 1, "{cheat:?}: matched once");

    // The honest trade is settled once the buyer's accept lands.
    let tx = client.tx(&Id::new(&got.tx)?).await?;
    let mut tx = tx;
    while tx.settlement.is_none() {
        tx = client.wait_tx(&tx.id, tx.version, WAIT).await?;
    }
    assert_eq!(
        (tx.seller.as_str(), tx.settlement),
        (honest.address.as_str(), Some(Settlement::PaidSeller))
    );
    // The buyer paid that trade and nothing else; the cheater got nothing.
    let buyer = client.account(&b.address.parse()?).await?;
    assert_eq!(buyer.blocked_sat, Sat(0), "{cheat:?}");
    assert_eq!(buyer.available_sat.0, CAPITAL - tx.price_sat.0 - tx.fee_sat.0, "{cheat:?}");
    assert_eq!((buyer.record.disputes_won, buyer.record.disputes_lost), (1, 0), "{cheat:?}");
    let c = client.account(&cheater.state.key.address()).await?;
    assert_eq!((c.available_sat.0, c.blocked_sat.0), (CAPITAL, 0), "{cheat:?}: never paid");
    assert_eq!(c.record.seller_faults, 1, "{cheat:?}");
    assert_conserved(&client).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_that_returns_garbage_costs_the_buyer_nothing() -> anyhow::Result<()> {
    a_cheating_seller_costs_nothing(Cheat::Garbage).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_that_posts_a_wrong_key_costs_the_buyer_nothing() -> anyhow::Result<()> {
    a_cheating_seller_costs_nothing(Cheat::WrongKey).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_whose_outputs_break_the_manifest_costs_the_buyer_nothing() -> anyhow::Result<()> {
    a_cheating_seller_costs_nothing(Cheat::BreaksManifest).await
}

/// A buyer played by hand against an honest seller host, up to the offer: bids, waits
/// for the match, establishes, offers `input` as wordcount's text. Returns the tx as
/// `transmitting`, the seller's base URL and the offer's bitmap.
struct HandBuyer {
    key: PrivateKey,
    secret: Hash32,
    manifest: WorkManifest,
    tx: TxView,
    base: String,
    /// The distinct chunks' bytes, in the manifest's `distinct_chunks` order.
    chunks: Vec<Vec<u8>>,
    missing: Vec<bool>,
}

async fn hand_buyer(client: &ExchangeClient, input: &[u8]) -> anyhow::Result<HandBuyer> {
    hand_buyer_as(client, PrivateKey::generate(), input).await
}

async fn hand_buyer_as(
    client: &ExchangeClient,
    key: PrivateKey,
    input: &[u8],
) -> anyhow::Result<HandBuyer> {
    let article = bitwrk_host::local_articles::load("wordcount")?.0.id();
    let mut bid = client.place_bid(&key, article, Side::Buy, Sat(1000)).await?;
    while bid.tx.is_none() {
        bid = client.wait_bid(&bid.id, bid.version, WAIT).await?;
    }
    let id = bid.tx.unwrap();
    let (manifest, refs) = WorkManifest::build([("text", input)]);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in refs.iter().flat_map(|(_, r)| r) {
        if seen.insert(r.hash) {
            chunks.push(input[r.offset..r.offset + r.len].to_vec());
        }
    }
    let secret = Hash32(crypto::new_key());
    let work_hash = manifest.work_hash();
    let secret_hash = bitwrk_protocol::tx::secret_hash(&work_hash, &secret.0);
    let mut tx =
        client.tx_action(&key, &id, TxAction::EstablishBuyer { work_hash, secret_hash }).await?;
    while tx.phase < Phase::Transmitting {
        tx = client.wait_tx(&id, tx.version, WAIT).await?;
    }
    let base = format!("{}/{id}", tx.worker_url.clone().unwrap());
    let offer = WorkOffer { manifest: manifest.clone(), secret };
    let answer: WorkOfferAnswer = reqwest::Client::new()
        .post(&base)
        .json(&offer)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let missing = answer.missing(manifest.distinct_chunks().len())?;
    Ok(HandBuyer { key, secret, manifest, tx, base, chunks, missing })
}

impl HandBuyer {
    /// Upload the chunks the seller asked for and fetch the encrypted result.
    async fn upload_and_fetch(&self) -> anyhow::Result<Vec<u8>> {
        let http = reqwest::Client::new();
        let auth = transfer_auth(&self.secret).to_hex();
        let wanted: Vec<&[u8]> = self
            .chunks
            .iter()
            .zip(&self.missing)
            .filter(|(_, m)| **m)
            .map(|(c, _)| c.as_slice())
            .collect();
        if !wanted.is_empty() {
            http.post(format!("{}/chunks", self.base))
                .header(TRANSFER_AUTH_HEADER, &auth)
                .body(frame_chunks(wanted))
                .send()
                .await?
                .error_for_status()?;
        }
        loop {
            let r = http
                .get(format!("{}/result?wait_ms=20000", self.base))
                .header(TRANSFER_AUTH_HEADER, &auth)
                .send()
                .await?
                .error_for_status()?;
            if r.status().as_u16() == 200 {
                return Ok(r.bytes().await?.to_vec());
            }
        }
    }
}

/// A stranger who reads every public id of someone else's trade (book, bid, tx,
/// worker_url) learns nothing of the content: no key in any view or for its signature,
/// no result bytes from the seller, no evidence slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_every_public_id_reads_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let _seller = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let secret_text = b"salary 123456 confidential".to_vec();
    let victim = hand_buyer(&client, &secret_text).await?;
    let enc = victim.upload_and_fetch().await?;
    let id = victim.tx.id.clone();
    let mut view = client.tx(&id).await?;
    while view.phase < Phase::Committed {
        view = client.wait_tx(&id, view.version, WAIT).await?;
    }
    let key = client.receipt(&victim.key, &id, Hash32::of(&enc)).await?.result_key;
    let plain = crypto::open(&key.0, &id, &enc)?;

    // What the stranger sees and tries.
    let stranger = PrivateKey::generate();
    let http = reqwest::Client::new();
    let mut answers: Vec<Vec<u8>> = Vec::new();
    for path in [format!("/v1/tx/{id}"), format!("/v1/bids/{}", view.buy_bid)] {
        answers.push(reqwest::get(format!("{}{path}", ex.url)).await?.bytes().await?.to_vec());
    }
    let e = client.result_key(&stranger, &id).await.unwrap_err();
    assert_eq!(e.code(), Some("not_party"));
    let guesses = [None, Some(transfer_auth(&Hash32::of(b"guess")).to_hex()), Some(id.to_string())];
    for guess in &guesses {
        let mut r = http.get(format!("{}/result", victim.base));
        if let Some(g) = guess {
            r = r.header(TRANSFER_AUTH_HEADER, g);
        }
        let r = r.send().await?;
        assert_eq!(r.status().as_u16(), 403, "a stranger's result read ({guess:?})");
        answers.push(r.bytes().await?.to_vec());
    }
    let r = http.put(format!("{}/v1/tx/{id}/evidence", ex.url)).body(enc.clone()).send().await?;
    assert!(r.status().is_client_error());
    answers.push(r.bytes().await?.to_vec());
    let key_hex = key.to_hex();
    for a in &answers {
        let text = String::from_utf8_lossy(a);
        assert!(!text.contains(&key_hex), "the key leaked: {text}");
        assert!(!a.windows(16).any(|w| enc.windows(16).any(|e| e == w)), "result bytes leaked");
        assert!(!text.contains("123456"), "plaintext leaked");
    }
    assert!(String::from_utf8_lossy(&plain).contains("123456"), "the buyer itself reads it");
    Ok(())
}

/// The seller's "chunks I lack" answer is no oracle: a prober that offers exactly the
/// chunks another buyer sent is asked for all of them, like for a wrong guess, while
/// the buyer who sent them is asked for none on its re-send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_prober_learns_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    // A slot per trade: the probes never upload, so their trades hold their slots.
    let _seller = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 4)?;
    // The victim's document: 300 KB, several chunks, now in the seller's store.
    let doc: Vec<u8> = (0..300_000u32).map(|i| b"abcdefgh ijk"[(i * 7 % 12) as usize]).collect();
    let victim = hand_buyer(&client, &doc).await?;
    assert!(victim.missing.len() > 1 && victim.missing.iter().all(|m| *m));
    victim.upload_and_fetch().await?;
    // The prober guesses right, and wrong: the answers are the same, everything missing.
    let right = hand_buyer(&client, &doc).await?;
    assert!(right.missing.iter().all(|m| *m), "the right guess is not revealed");
    let mut other = doc.clone();
    other[1000] = b'z';
    let wrong = hand_buyer(&client, &other).await?;
    assert!(wrong.missing.iter().all(|m| *m));
    // The victim's own re-send, in a new trade, is asked for nothing: dedupe still
    // works for the buyer whose chunks they are.
    let again = hand_buyer_as(&client, victim.key.clone(), &doc).await?;
    assert!(again.missing.iter().all(|m| !*m), "{:?}", again.missing);
    assert_eq!(again.manifest, victim.manifest);
    drop((right, wrong));
    Ok(())
}

/// Free work has a price: a buyer that has the seller run its work and then never signs
/// the receipt lapses at the deadline and pays the seller half; its record says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_never_signs_pays_the_lapse_share() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Short deadlines (each counts from the one before): the lapse comes ~12 s after the
    // match.
    let flags = [
        "--establishing-s",
        "3",
        "--transmitting-s",
        "3",
        "--working-s",
        "5",
        "--committed-s",
        "1",
    ];
    let ex = harness::exchange(&dir.path().join("exchange"), &flags)?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let seller = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let freeloader = hand_buyer(&client, b"free work").await?;
    let enc = freeloader.upload_and_fetch().await?;
    assert!(!enc.is_empty());
    let id = freeloader.tx.id.clone();
    let mut view = client.tx(&id).await?;
    while view.settlement.is_none() {
        view = client.wait_tx(&id, view.version, WAIT).await?;
    }
    assert_eq!((view.phase, view.settlement), (Phase::Committed, Some(Settlement::Lapsed)));
    let (price, fee) = (view.price_sat.0, view.fee_sat.0);
    let s = client.account(&seller.address.parse()?).await?;
    assert_eq!(s.available_sat.0, CAPITAL + price / 2);
    let b = client.account(&freeloader.key.address()).await?;
    assert_eq!(b.available_sat.0, CAPITAL - price / 2 - fee / 2);
    assert_eq!((b.record.lapsed, b.record.trades_bought), (1, 1));
    assert_conserved(&client).await?;
    Ok(())
}

/// Issue 13 item 4 (SSRF): a seller that names a loopback `worker_url` (here a port that
/// counts connections; in the attack, the buyer host's own internal port) is refused by
/// a host that was not told the market is a LAN: it never connects, leaves that seller
/// out of its next bid, and the buy ends with an error that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_host_refuses_a_loopback_worker_url() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Short bid lifetime: the second bid (without the refused seller) expires quickly.
    let ex = harness::exchange(&dir.path().join("exchange"), &["--bid-lifetime-s", "4"])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let article = bitwrk_host::local_articles::load("wordcount")?.0.id();
    // The "worker": counts every connection it accepts.
    let worker = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let worker_url = format!("http://{}/v1/work", worker.local_addr()?);
    let connections = Arc::new(AtomicU32::new(0));
    let counted = connections.clone();
    let _accept = tokio::spawn(async move {
        while let Ok((_socket, _)) = worker.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let buyer = harness::host_public(
        "buyer",
        &dir.path().join("buyer"),
        &ex.url,
        &["--mandate", "buy:*:1000"],
    )?;
    // The hostile seller: two resting bids, and it establishes each match with that URL.
    let key = PrivateKey::generate();
    let first = client.place_bid(&key, article, Side::Sell, Sat(50)).await?;
    let second = client.place_bid(&key, article, Side::Sell, Sat(50)).await?;
    let (c, k, url) = (client.clone(), key.clone(), worker_url.clone());
    let establish = tokio::spawn(async move {
        let mut bid = first;
        while bid.state == BidState::Open {
            bid = c.wait_bid(&bid.id, bid.version, WAIT).await?;
        }
        let tx = bid.tx.clone().context("matched without a tx")?;
        c.tx_action(&k, &tx, TxAction::EstablishSeller { worker_url: url }).await?;
        anyhow::Ok(tx)
    });

    let got =
        buy(&buyer.int_url, "wordcount", vec![("data", b"a b b".to_vec())], Some(100)).await?;
    let body: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert_eq!((got.status, body["error"].as_str()), (502, Some("sellers_failed")), "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&worker_url)
            && message.contains("loopback")
            && message.contains("--lan-market"),
        "{message}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the buyer connected to the worker_url");
    // The refused trade is the hostile seller's one match: the second bid was excluded.
    let tx = establish.await??;
    let view = client.tx(&tx).await?;
    assert_eq!((view.phase, view.seller), (Phase::Transmitting, key.address()));
    let second = client.bid(&second.id).await?;
    assert_ne!(second.state, BidState::Matched, "the refused seller was matched again");
    assert_conserved(&client).await?;
    Ok(())
}

/// A seller that streams an endless "result" without a Content-Length: the buyer host
/// stops reading at what the article's outputs can encrypt to (wordcount: 16 MiB), so its
/// memory stays bounded; it gets the result from the honest seller, and the flooder,
/// which had committed, is disputed as "not delivered" instead of lapsing into a payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stream_without_a_length_is_bounded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let wordcount = bitwrk_host::local_articles::load("wordcount")?.0;
    let flooder = hostile_seller(&ex.url, wordcount.id(), 50, Cheat::Flood).await?;
    let _honest = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let b = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    let got = buy(&b.int_url, "wordcount", vec![("data", b"x y y".to_vec())], Some(200)).await?;
    assert_eq!(got.status, 303, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.attempts, 2);
    // The honest trade settles once the buyer's accept (sent after the answer) lands.
    let mut good = client.tx(&Id::new(&got.tx)?).await?;
    while good.settlement.is_none() {
        good = client.wait_tx(&good.id, good.version, WAIT).await?;
    }
    let cap: u64 = wordcount.outputs.iter().map(|o| o.max_bytes).sum();
    let pulled = flooder.state.flooded.load(Ordering::SeqCst);
    // What the buyer read plus what sat in socket buffers when it hung up.
    assert!(pulled <= cap + (16 << 20), "the buyer pulled {pulled} bytes of a flood (cap {cap})");
    assert!(pulled < FLOOD_BYTES);
    // The flooder's trade: disputed as "not delivered", not lapsed, nothing paid.
    let c = client.account(&flooder.state.key.address()).await?;
    assert_eq!((c.available_sat.0, c.blocked_sat.0), (CAPITAL, 0));
    let served: Vec<String> = flooder.state.served.lock().unwrap().keys().cloned().collect();
    assert_eq!(served.len(), 1);
    let id = Id::new(&served[0])?;
    let mut v = client.tx(&id).await?;
    while v.phase != Phase::ResultDisputed && v.settlement.is_none() {
        v = client.wait_tx(&id, v.version, WAIT).await?;
    }
    assert_eq!((v.phase, v.settlement), (Phase::ResultDisputed, None), "disputed, not lapsed");
    assert!(!v.receipted(), "a dispute of a result never received");
    // Price, fee and deposit stay blocked until the verdict or its deadline, nothing paid.
    let buyer = client.account(&b.address.parse()?).await?;
    assert_eq!(buyer.blocked_sat.0, v.price_sat.0 + v.fee_sat.0 + v.dispute_deposit_sat.0);
    assert_eq!(buyer.record.lapsed, 0);
    assert_conserved(&client).await?;
    Ok(())
}
