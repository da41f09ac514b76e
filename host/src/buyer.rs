//! Buying: place the bid, follow the transaction by long poll, send the seller only the
//! chunks it lacks, fetch the encrypted result, sign the receipt for exactly its hash at
//! the exchange (whose answer carries the key), check the outputs, hand them over, and
//! accept in the background. A result that does not open or breaks the manifest is
//! disputed with the ciphertext as evidence, never accepted; a seller that fails is left
//! out of the request's next bids (bounded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitwrk_protocol::api::{ArticleEntry, BidState, ErrorBody};
use bitwrk_protocol::identity::Address;
use bitwrk_protocol::message::BID_EXCLUDE_MAX;
use bitwrk_protocol::transfer::{
    ChunksAnswer, TRANSFER_AUTH_HEADER, WorkOffer, WorkOfferAnswer, frame_chunks, limits as tl,
    transfer_auth,
};
use bitwrk_protocol::work::{ChunkRef, ResultFault, WorkManifest, check_result};
use bitwrk_protocol::{Hash32, Id, Phase, ReasonCode, Sat, Settlement, Side, TxAction};

use crate::limits::{self, BUY_ATTEMPTS_MAX, EXCHANGE_WAIT, RESULT_WAIT};
use crate::node::{Node, TradeReport};
use crate::state::{ActivityRequest, Forbidden};

/// What the buyer wants: one run of an article on these inputs.
pub struct BuyRequest {
    pub article: Arc<ArticleEntry>,
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Highest price; `None`: the book's lowest ask (or a fallback when the book is empty).
    pub price: Option<Sat>,
}

/// One output, stored in the content store.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub hash: Hash32,
    pub media_type: String,
    pub data: bytes::Bytes,
}

/// How a buy went.
#[derive(Debug, Clone)]
pub struct BuyOutcome {
    pub outputs: Vec<Output>,
    pub tx: Id,
    pub price: Sat,
    pub fee: Sat,
    pub attempts: u32,
    /// Bytes of chunks sent to the seller in the successful attempt.
    pub chunk_bytes_sent: u64,
    /// Total input bytes.
    pub input_bytes: u64,
    /// Each step of the successful attempt with the time since the buy began.
    pub steps: Vec<(String, Duration)>,
}

/// Why a buy failed: a reason code (for the JSON answer) and a plain message.
#[derive(Debug, thiserror::Error)]
pub enum BuyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not permitted: {0}")]
    Forbidden(String),
    /// No mandate covers the buy and the user did not answer in time.
    #[error("not permitted: {0}")]
    PermissionRequired(String),
    #[error("the seller rejected the work ({0}): {1}")]
    WorkRejected(ReasonCode, String),
    #[error("no seller took the bid before it expired")]
    NoSeller,
    #[error("the exchange: {0}")]
    Exchange(String),
    #[error("gave up after {attempts} attempts; last: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuyError {
    /// The `error` code of the JSON answer.
    pub fn code(&self) -> &str {
        match self {
            BuyError::BadRequest(_) => "bad_request",
            BuyError::Forbidden(_) => "forbidden",
            BuyError::PermissionRequired(_) => "permission_required",
            BuyError::WorkRejected(r, _) => r.as_str(),
            BuyError::NoSeller => "no_seller",
            BuyError::Exchange(_) => "exchange",
            BuyError::GaveUp { .. } => "sellers_failed",
            BuyError::Internal(_) => "internal",
        }
    }
}

/// Progress of a buy, for a terminal display.
#[derive(Debug, Clone)]
pub enum Progress {
    Step {
        attempt: u32,
        step: String,
    },
    Upload {
        sent: u64,
        total: u64,
    },
    /// Bytes of transfer bodies so far (offer and its answer, chunks, result, receipt).
    Wire {
        bytes: u64,
    },
}

pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// An attempt's failure: whether another seller may do better.
enum AttemptError {
    Retry(String),
    Final(BuyError),
}

fn retry(msg: impl Into<String>) -> AttemptError {
    AttemptError::Retry(msg.into())
}

/// The prepared work: inputs, chunk lists and manifest.
struct Prepared {
    manifest: WorkManifest,
    work_hash: Hash32,
    /// Every distinct chunk in `distinct_chunks` order with its bytes' location.
    distinct: Vec<(Hash32, usize, ChunkRef)>,
    inputs: Vec<(String, Vec<u8>)>,
    input_bytes: u64,
}

/// Check the inputs against the article and cut them into chunks.
fn prepare(article: &ArticleEntry, inputs: Vec<(String, Vec<u8>)>) -> Result<Prepared, BuyError> {
    let m = &article.manifest;
    for (name, data) in &inputs {
        let decl = m.input(name).ok_or_else(|| {
            let names: Vec<&str> = m.inputs.iter().map(|d| d.name.as_str()).collect();
            BuyError::BadRequest(format!("{} has no input {name:?}; it takes {names:?}", m.name))
        })?;
        if data.len() as u64 > decl.max_bytes {
            return Err(BuyError::BadRequest(format!(
                "input {name:?} has {} bytes; {} takes at most {}",
                data.len(),
                m.name,
                decl.max_bytes
            )));
        }
        if inputs.iter().filter(|(n, _)| n == name).count() > 1 {
            return Err(BuyError::BadRequest(format!("input {name:?} is given twice")));
        }
    }
    if let Some(d) = m.inputs.iter().find(|d| !inputs.iter().any(|(n, _)| *n == d.name)) {
        return Err(BuyError::BadRequest(format!(
            "input {:?} ({}) is missing",
            d.name, d.media_type
        )));
    }
    let (manifest, chunked) =
        WorkManifest::build(inputs.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    // Inputs in the manifest's (sorted) order so chunk refs index them.
    let mut inputs = inputs;
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen = std::collections::HashSet::new();
    let mut distinct = Vec::new();
    for (i, (_, refs)) in chunked.iter().enumerate() {
        for r in refs {
            if seen.insert(r.hash) {
                distinct.push((r.hash, i, *r));
            }
        }
    }
    // The inputs stay in memory for the trade (and its re-bids); the buyer's content store
    // holds outputs only, so a buy writes nothing to disk before the result.
    let input_bytes = inputs.iter().map(|(_, d)| d.len() as u64).sum();
    Ok(Prepared { work_hash: manifest.work_hash(), manifest, distinct, inputs, input_bytes })
}

/// Inputs up to this size are chunked and hashed on the calling task.
const INLINE_PREPARE_BYTES: usize = 64 * 1024;

/// Buy one run. Retries with a new bid when a seller fails, at most
/// [`BUY_ATTEMPTS_MAX`] bids in all.
pub async fn buy(
    node: &Arc<Node>,
    req: BuyRequest,
    progress: Option<&ProgressFn>,
) -> Result<BuyOutcome, BuyError> {
    let t0 = Instant::now();
    let article = req.article.clone();
    // Chunking and hashing small inputs takes microseconds: no thread hop for them.
    let prepared = if req.inputs.iter().map(|(_, d)| d.len()).sum::<usize>() <= INLINE_PREPARE_BYTES
    {
        prepare(&article, req.inputs)?
    } else {
        let a = article.clone();
        tokio::task::spawn_blocking(move || prepare(&a, req.inputs))
            .await
            .map_err(|e| BuyError::Internal(e.to_string()))??
    };
    let price = match req.price {
        // Refused here, before the user is asked to permit a bid the exchange refuses.
        Some(Sat(0)) => {
            return Err(BuyError::BadRequest("price must be at least 1 sat".to_string()));
        }
        Some(p) => p,
        None => default_price(node, &article).await,
    };
    let mut last = String::new();
    // Sellers that failed this request: its later bids do not match them.
    let mut failed_sellers: Vec<Address> = Vec::new();
    for attempt in 1..=BUY_ATTEMPTS_MAX {
        let mut att = Attempt {
            exclude: &failed_sellers,
            seller: None,
            node,
            article: &article,
            prepared: &prepared,
            attempt,
            t0,
            steps: Vec::new(),
            progress,
            sent: 0,
            wire: 0,
            auth: Hash32([0; 32]),
        };
        let mut report = TradeReport::new(
            node.gate.clone(),
            format!("buy-{}", Id::random("")),
            &article,
            Side::Buy,
            price,
        );
        match att.run(price, &mut report).await {
            Ok(mut out) => {
                out.attempts = attempt;
                accept_later(node, out.tx.clone(), report);
                return Ok(out);
            }
            Err(AttemptError::Final(e)) => {
                // No seller is left after failed ones: say why those failed.
                let e = match e {
                    BuyError::NoSeller if !last.is_empty() => {
                        BuyError::GaveUp { attempts: attempt, last: std::mem::take(&mut last) }
                    }
                    e => e,
                };
                report.finish(None, Some(e.to_string()));
                return Err(e);
            }
            Err(AttemptError::Retry(why)) => {
                let seller = att.seller.take();
                tracing::warn!(article = %article.manifest.name, attempt, seller = ?seller, error = %why, "trade failed; bidding again without that seller");
                report.finish(None, Some(format!("{why} (bidding again)")));
                if let Some(s) = seller
                    && !failed_sellers.contains(&s)
                    && failed_sellers.len() < BID_EXCLUDE_MAX
                {
                    failed_sellers.push(s);
                }
                last = why;
            }
        }
    }
    Err(BuyError::GaveUp { attempts: BUY_ATTEMPTS_MAX, last })
}

/// Send `accept` for a result the caller already has. It is off the buyer's critical
/// path: the result is checked, and a buyer that never accepts (its host died) still pays
/// at the `unverified` deadline (PROTOCOL §4), so the money ends the same either way.
/// [`Node::settled`] waits for these, e.g. before reading balances or exiting.
fn accept_later(node: &Arc<Node>, tx: Id, mut report: TradeReport) {
    let n = node.clone();
    node.settling.spawn(async move {
        match n.exchange.tx_action(&n.key, &tx, TxAction::Accept).await {
            Ok(_) => {
                report.phase("accepted");
                report.finish(Some("result accepted".into()), None);
            }
            Err(e) => {
                tracing::warn!(tx = %tx, error = %e, "accept failed; the seller is paid at the unverified deadline");
                report.finish(
                    Some("result received".into()),
                    Some(format!(
                        "accept failed: {e} (the seller is paid at the unverified deadline)"
                    )),
                );
            }
        }
    });
}

/// The lowest ask in the book, so a buy without a price matches the cheapest seller.
async fn default_price(node: &Node, article: &ArticleEntry) -> Sat {
    match node.exchange.book(&article.id).await {
        Ok(book) => {
            book.sells.first().map(|l| l.price_sat).unwrap_or(Sat(limits::BUY_PRICE_FALLBACK_SAT))
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the book failed; using the fallback price");
            Sat(limits::BUY_PRICE_FALLBACK_SAT)
        }
    }
}

/// Cancels a resting buy bid when dropped while armed (`bid` is `Some`).
struct OpenBidGuard {
    node: Arc<Node>,
    bid: Option<Id>,
}

impl Drop for OpenBidGuard {
    fn drop(&mut self) {
        let Some(bid) = self.bid.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let node = self.node.clone();
        rt.spawn(async move {
            match node.exchange.cancel_bid(&node.key, &bid).await {
                Ok(v) => tracing::info!(bid = %bid, state = ?v.state, "buy abandoned; bid withdrawn"),
                Err(e) => {
                    tracing::warn!(bid = %bid, error = %e, "buy abandoned; withdrawing the bid failed (it expires)")
                }
            }
        });
    }
}

struct Attempt<'a> {
    node: &'a Arc<Node>,
    /// Sellers this attempt's bid must not match.
    exclude: &'a [Address],
    /// The seller once matched (left out of later attempts if this one fails).
    seller: Option<Address>,
    article: &'a Arc<ArticleEntry>,
    prepared: &'a Prepared,
    attempt: u32,
    t0: Instant,
    steps: Vec<(String, Duration)>,
    progress: Option<&'a ProgressFn>,
    sent: u64,
    wire: u64,
    /// The transfer credential ([`transfer_auth`] of this attempt's secret, set with the
    /// offer), sent with every transfer request and evidence upload so only we can read
    /// the result.
    auth: Hash32,
}

impl Attempt<'_> {
    fn add_wire(&mut self, n: u64) {
        self.wire += n;
        if let Some(p) = self.progress {
            p(Progress::Wire { bytes: self.wire });
        }
    }

    fn step(&mut self, report: &mut TradeReport, step: &str) {
        self.steps.push((step.to_string(), self.t0.elapsed()));
        report.phase(step);
        if let Some(p) = self.progress {
            p(Progress::Step { attempt: self.attempt, step: step.to_string() });
        }
    }

    async fn run(
        &mut self,
        price: Sat,
        report: &mut TradeReport,
    ) -> Result<BuyOutcome, AttemptError> {
        let node = self.node;
        let ex = &node.exchange;
        let article = self.article;
        let req = ActivityRequest {
            article: article.id,
            article_name: article.manifest.name.clone(),
            side: Side::Buy,
            price,
        };
        let hint = node.gate.permission_hint(&req);
        node.gate.request_buy_permission(req).await.map_err(|e| {
            AttemptError::Final(match e {
                Forbidden::TimedOut(s) => BuyError::PermissionRequired(format!(
                    "nobody permitted it within {s} s. {hint}; then send the request again"
                )),
                e => BuyError::Forbidden(e.to_string()),
            })
        })?;
        report.permitted();
        let exch =
            |e: &dyn std::fmt::Display| AttemptError::Final(BuyError::Exchange(e.to_string()));
        let mut bid = ex
            .place_bid_excluding(&node.key, article.id, Side::Buy, price, self.exclude.to_vec())
            .await
            .map_err(|e| exch(&e))?;
        // If this buy is dropped (the client went away: the add-on's cancel, a closed
        // curl) while the bid rests, the bid is withdrawn and its escrow released.
        let mut open_bid = OpenBidGuard { node: node.clone(), bid: Some(bid.id.clone()) };
        tracing::info!(bid = %bid.id, article = %article.manifest.name, price = price.0, "buy bid placed");
        report.info().bid = Some(bid.id.clone());
        self.step(report, "bidding");
        let tx = loop {
            match bid.state {
                BidState::Matched => {
                    open_bid.bid = None;
                    break bid.tx.clone().ok_or_else(|| retry("matched bid without a tx"))?;
                }
                BidState::Open => {}
                BidState::Expired | BidState::Cancelled => {
                    open_bid.bid = None;
                    return Err(AttemptError::Final(BuyError::NoSeller));
                }
            }
            bid = ex.wait_bid(&bid.id, bid.version, EXCHANGE_WAIT).await.map_err(|e| exch(&e))?;
        };
        report.info().tx = Some(tx.clone());
        self.step(report, "matched");

        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| AttemptError::Final(BuyError::Internal(e.to_string())))?;
        let p = self.prepared;
        let establish = TxAction::EstablishBuyer {
            work_hash: p.work_hash,
            secret_hash: bitwrk_protocol::tx::secret_hash(&p.work_hash, &secret),
        };
        let mut view = ex
            .tx_action(&node.key, &tx, establish)
            .await
            .map_err(|e| retry(format!("establish: {e}")))?;
        report.info().price_sat = view.price_sat;
        report.info().fee_sat = view.fee_sat;
        self.seller = Some(view.seller.clone());
        self.step(report, "established");
        // Both sides established: the seller is waiting for the work.
        while view.phase < Phase::Transmitting || view.worker_url.is_none() {
            if view.settlement.is_some() || view.phase.is_terminal() {
                return Err(retry(format!(
                    "the tx ended in {} before the seller established",
                    view.phase
                )));
            }
            view = ex
                .wait_tx(&tx, view.version, EXCHANGE_WAIT)
                .await
                .map_err(|e| retry(format!("waiting on the tx: {e}")))?;
        }
        if view.phase != Phase::Transmitting {
            return Err(retry(format!(
                "the tx is already {} before the work was sent",
                view.phase
            )));
        }
        let worker_url = view.worker_url.clone().unwrap_or_default();
        // No connection to a worker_url on this host, its network or its own ports unless
        // the market is a LAN (worker_url.rs); another seller may do better.
        node.worker_urls.check(&worker_url).await.map_err(retry)?;
        let base = format!("{}/{}", worker_url.trim_end_matches('/'), tx);
        self.step(report, "transmitting");

        // Offer the work; send what the seller lacks.
        self.auth = transfer_auth(&Hash32(secret));
        let offer = WorkOffer { manifest: p.manifest.clone(), secret: Hash32(secret) };
        let answer: WorkOfferAnswer = self.post_json(&base, &offer).await?;
        let missing =
            answer.missing(p.distinct.len()).map_err(|e| retry(format!("seller's answer: {e}")))?;
        let total: u64 = p
            .distinct
            .iter()
            .zip(&missing)
            .filter(|(_, m)| **m)
            .map(|((_, _, r), _)| r.len as u64)
            .sum();
        self.step(report, "uploading");
        let early = self.upload(&base, &missing, total).await;

        // The encrypted result: long poll until the tx's working deadline.
        self.step(report, "working");
        let info = ex.info();
        let d = &info.deadlines;
        let work_deadline_ms =
            view.matched_ms + 1000 * (d.establishing_s + d.transmitting_s + d.working_s);
        let got = match early {
            Ok(Some(enc)) => Ok(enc),
            Ok(None) => self.fetch_result(&base, work_deadline_ms).await,
            Err(e) => Err(e),
        };
        let enc = match got {
            Ok(enc) => enc,
            Err(e) => {
                // A seller that committed a result (or commits one later) but does not
                // hand it over would otherwise be paid a lapse share.
                dispute_if_committed(node, tx.clone());
                return Err(e);
            }
        };
        let enc_hash = Hash32::of(&enc);
        self.step(report, "result received");

        // The receipt for exactly these bytes, at the exchange: its answer carries the key
        // the seller committed. Then the one result check of the protocol.
        let key = self.receipt(&tx, enc_hash, work_deadline_ms).await?;
        let outputs = match self.open_result(&tx, &key, enc.clone()) {
            Ok(o) => o,
            Err(fault) => {
                tracing::warn!(tx = %tx, error = %fault, "the result breaks the contract; disputing it");
                let verdict = self.reject_and_prove(&tx, Some(enc)).await;
                return Err(retry(format!("{fault}; {verdict}")));
            }
        };
        self.step(report, "unverified");
        // Store the outputs for `/file/{sha256}` (checked already); write-behind, so they
        // are served from memory until they are on disk.
        for o in &outputs {
            node.store
                .put_soon(o.hash, o.data.clone())
                .await
                .map_err(|e| AttemptError::Final(BuyError::Internal(e.to_string())))?;
        }
        self.step(report, "checked");
        Ok(BuyOutcome {
            outputs,
            tx,
            price: view.price_sat,
            fee: view.fee_sat,
            attempts: self.attempt,
            chunk_bytes_sent: self.sent,
            input_bytes: p.input_bytes,
            steps: std::mem::take(&mut self.steps),
        })
    }

    /// Sign the receipt for `enc_hash`; the answer's key. A seller that serves before it
    /// committed is waited for until the working deadline; one that committed other bytes
    /// than it served is disputed as "not delivered" (it must show the committed bytes).
    async fn receipt(
        &self,
        tx: &Id,
        enc_hash: Hash32,
        work_deadline_ms: u64,
    ) -> Result<Hash32, AttemptError> {
        let ex = &self.node.exchange;
        loop {
            let err = match ex.receipt(&self.node.key, tx, enc_hash).await {
                Ok(r) => return Ok(r.result_key),
                Err(e) => e,
            };
            match err.code() {
                Some("wrong_phase") if crate::state::now_ms() < work_deadline_ms => {
                    let view =
                        ex.tx(tx).await.map_err(|e| retry(format!("reading the tx: {e}")))?;
                    if view.phase != Phase::Working {
                        return Err(retry(format!("the tx is {} at the receipt", view.phase)));
                    }
                    // Not committed yet: wait for the seller's `result`, then sign again.
                    ex.wait_tx(tx, view.version, EXCHANGE_WAIT)
                        .await
                        .map_err(|e| retry(format!("waiting on the tx: {e}")))?;
                }
                Some("bad_receipt") => {
                    tracing::warn!(tx = %tx, "the seller committed other bytes than it served; disputing");
                    let verdict = self.reject_and_prove(tx, None).await;
                    return Err(retry(format!(
                        "the seller committed another result than it sent; {verdict}"
                    )));
                }
                _ => return Err(retry(format!("receipt: {err}"))),
            }
        }
    }

    /// Dispute: `reject_result` (the deposit is blocked), then, for a result we signed
    /// for (`enc`), hand the exchange the ciphertext as evidence, retried while the
    /// exchange is busy with other evidence, until shortly before the dispute deadline.
    /// The verdict, as text.
    async fn reject_and_prove(&self, tx: &Id, enc: Option<Vec<u8>>) -> String {
        let ex = &self.node.exchange;
        let view = match ex.tx_action(&self.node.key, tx, TxAction::RejectResult).await {
            Ok(v) => v,
            Err(e) => return format!("reject_result failed: {e}"),
        };
        let Some(enc) = enc else {
            return "disputed: the seller must show the committed result".into();
        };
        let give_up_ms = view.deadline_ms.unwrap_or(0).saturating_sub(EVIDENCE_MARGIN_MS);
        loop {
            match ex.upload_evidence(tx, &self.auth, enc.clone()).await {
                Ok(v) => {
                    return match v.settlement {
                        Some(Settlement::DisputeSellerFault) => {
                            "the exchange found the seller at fault; refunded".into()
                        }
                        other => format!("the exchange decided {other:?}"),
                    };
                }
                Err(e) if e.code() == Some("busy") && crate::state::now_ms() < give_up_ms => {
                    tokio::time::sleep(limits::EVIDENCE_RETRY_BACKOFF).await;
                }
                Err(e) => return format!("uploading the evidence failed: {e}"),
            }
        }
    }

    async fn post_json<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &mut self,
        url: &str,
        body: &T,
    ) -> Result<R, AttemptError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| AttemptError::Final(BuyError::Internal(e.to_string())))?;
        self.add_wire(body.len() as u64);
        let resp = self
            .node
            .http
            .post(url)
            .timeout(limits::SELLER_REQUEST_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TRANSFER_AUTH_HEADER, self.auth.to_hex())
            .body(body)
            .send()
            .await
            .map_err(|e| retry(format!("seller unreachable at {url}: {e}")))?;
        self.add_wire(resp.content_length().unwrap_or(0));
        read_json(resp).await
    }

    /// Send the missing chunks in batches of at most 16 MiB.
    async fn upload(
        &mut self,
        base: &str,
        missing: &[bool],
        total: u64,
    ) -> Result<Option<Vec<u8>>, AttemptError> {
        let p = self.prepared;
        let wanted: Vec<&[u8]> = p
            .distinct
            .iter()
            .zip(missing)
            .filter(|(_, m)| **m)
            .map(|((_, i, r), _)| &p.inputs[*i].1[r.offset..r.offset + r.len])
            .collect();
        let mut batch: Vec<&[u8]> = Vec::new();
        let mut batch_bytes = 0usize;
        let url = format!("{base}/chunks");
        // The last batch asks the seller to answer with the result if it is ready within
        // the wait (saves the separate result request of a short run).
        let last_url = format!("{base}/chunks?wait_ms={}", RESULT_WAIT.as_millis());
        let mut result = None;
        let mut i = 0;
        while i <= wanted.len() {
            let next = wanted.get(i);
            let full = next.is_some_and(|c| batch_bytes + c.len() > tl::CHUNK_BATCH_BYTES_MAX);
            if (next.is_none() || full) && !batch.is_empty() {
                let body = frame_chunks(batch.iter().copied());
                self.add_wire(body.len() as u64);
                let last = next.is_none();
                let resp = self
                    .node
                    .http
                    .post(if last { &last_url } else { &url })
                    .timeout(
                        limits::CHUNK_UPLOAD_TIMEOUT
                            + if last { RESULT_WAIT } else { Duration::ZERO },
                    )
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(TRANSFER_AUTH_HEADER, self.auth.to_hex())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| retry(format!("sending chunks: {e}")))?;
                let is_result = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes() == b"application/octet-stream");
                if last && (is_result || resp.status().as_u16() == 422) {
                    result = self.read_result(resp).await?;
                } else {
                    let _: ChunksAnswer = read_json(resp).await?;
                }
                self.sent += batch_bytes as u64;
                if let Some(p) = self.progress {
                    p(Progress::Upload { sent: self.sent, total });
                }
                batch.clear();
                batch_bytes = 0;
            }
            match next {
                Some(c) => {
                    batch.push(c);
                    batch_bytes += c.len();
                    i += 1;
                }
                None => break,
            }
        }
        Ok(result)
    }

    async fn fetch_result(
        &mut self,
        base: &str,
        deadline_ms: u64,
    ) -> Result<Vec<u8>, AttemptError> {
        let url = format!("{base}/result?wait_ms={}", RESULT_WAIT.as_millis());
        loop {
            if crate::state::now_ms() > deadline_ms {
                return Err(retry("the seller did not deliver before the tx's working deadline"));
            }
            let resp = self
                .node
                .http
                .get(&url)
                .header(TRANSFER_AUTH_HEADER, self.auth.to_hex())
                .timeout(RESULT_WAIT + limits::SELLER_REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| retry(format!("fetching the result: {e}")))?;
            if let Some(enc) = self.read_result(resp).await? {
                return Ok(enc);
            }
        }
    }

    /// A result answer (of `GET result`, or of the last chunk batch): the encrypted
    /// result, `None` if it is not ready yet (202, or chunks answered without it), or why
    /// the work failed.
    async fn read_result(
        &mut self,
        resp: reqwest::Response,
    ) -> Result<Option<Vec<u8>>, AttemptError> {
        match resp.status().as_u16() {
            200 => {
                // Bounded whether or not the seller sends a length: at most what the
                // article's declared outputs can encrypt to.
                let cap = result_cap(&self.article.manifest);
                let too_large = || {
                    retry(format!(
                        "the seller's result is larger than the article's outputs allow ({cap} bytes)"
                    ))
                };
                if resp.content_length().is_some_and(|l| l > cap) {
                    return Err(too_large());
                }
                let mut resp = resp;
                let mut enc = Vec::new();
                while let Some(chunk) =
                    resp.chunk().await.map_err(|e| retry(format!("downloading the result: {e}")))?
                {
                    if (enc.len() + chunk.len()) as u64 > cap {
                        return Err(too_large());
                    }
                    enc.extend_from_slice(&chunk);
                }
                self.add_wire(enc.len() as u64);
                Ok(Some(enc))
            }
            202 => Ok(None),
            422 => {
                let body: ErrorBody =
                    resp.json().await.map_err(|e| retry(format!("seller's error answer: {e}")))?;
                let reason: Option<ReasonCode> = body.error.parse().ok();
                Err(match reason {
                    // The work itself failed: another seller would fail the same way.
                    Some(
                        r @ (ReasonCode::BadInput
                        | ReasonCode::Failed
                        | ReasonCode::Trap
                        | ReasonCode::FuelExhausted
                        | ReasonCode::MemoryExceeded
                        | ReasonCode::OutputTooLarge),
                    ) => AttemptError::Final(BuyError::WorkRejected(r, body.message)),
                    _ => retry(format!(
                        "the seller failed the work ({}): {}",
                        body.error, body.message
                    )),
                })
            }
            s => {
                let text = resp.text().await.unwrap_or_default();
                Err(retry(format!(
                    "the seller answered {s}: {}",
                    text.chars().take(200).collect::<String>()
                )))
            }
        }
    }

    /// Decrypt and check the outputs: the protocol's one result check, the same the
    /// exchange applies in a dispute.
    fn open_result(&self, tx: &Id, key: &Hash32, enc: Vec<u8>) -> Result<Vec<Output>, ResultFault> {
        let outputs = check_result(&self.article.manifest, &key.0, tx, enc)?;
        Ok(outputs
            .into_iter()
            .map(|(name, data)| {
                let media_type = self
                    .article
                    .manifest
                    .output(&name)
                    .map(|d| d.media_type.clone())
                    .unwrap_or_default();
                Output { hash: Hash32::of(&data), name, media_type, data: data.into() }
            })
            .collect())
    }
}

/// After giving up on a seller before its result arrived: if the seller committed a
/// result, now or later while the tx is still `working`, dispute it as "not delivered"
/// (the seller must show the bytes, or the buyer is refunded), so that walking away from
/// a seller that never delivered never lapses into paying it. In the background: the
/// request goes on with its next bid.
fn dispute_if_committed(node: &Arc<Node>, tx: Id) {
    let node = node.clone();
    tokio::spawn(async move {
        let ex = &node.exchange;
        let Ok(mut v) = ex.tx(&tx).await else { return };
        while v.phase == Phase::Working && v.settlement.is_none() {
            match ex.wait_tx(&tx, v.version, EXCHANGE_WAIT).await {
                Ok(next) => v = next,
                Err(e) => {
                    tracing::warn!(tx = %tx, error = %e, "following an abandoned tx failed");
                    return;
                }
            }
        }
        if v.phase == Phase::Committed && v.settlement.is_none() {
            match ex.tx_action(&node.key, &tx, TxAction::RejectResult).await {
                Ok(_) => tracing::warn!(tx = %tx, "committed result never delivered; disputed"),
                Err(e) => {
                    tracing::warn!(tx = %tx, error = %e, "disputing an undelivered result failed")
                }
            }
        }
    });
}

/// The largest encrypted result `manifest`'s outputs allow: the container (magic, count,
/// and per output its name and lengths) around every declared output at its `max_bytes`,
/// plus the AEAD tag; never more than the largest result of all.
fn result_cap(manifest: &bitwrk_protocol::Manifest) -> u64 {
    const CONTAINER_HEAD: u64 = 8; // "BWR1" + u32 count
    const PER_OUTPUT: u64 = 2 + 8; // u16 name length + u64 data length
    const TAG: u64 = 16;
    let outputs: u64 = manifest
        .outputs
        .iter()
        .map(|o| o.max_bytes.saturating_add(PER_OUTPUT + o.name.len() as u64))
        .fold(0u64, u64::saturating_add);
    outputs.saturating_add(CONTAINER_HEAD + TAG).min(tl::RESULT_BYTES_MAX + TAG)
}

/// Evidence uploads stop this long before the dispute deadline (an upload in flight at
/// the deadline would come too late anyway).
const EVIDENCE_MARGIN_MS: u64 = 5_000;

async fn read_json<R: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<R, AttemptError> {
    let status = resp.status();
    if status.is_success() {
        return resp
            .json()
            .await
            .map_err(|e| retry(format!("seller's answer does not parse: {e}")));
    }
    let text = resp.text().await.unwrap_or_default();
    let msg = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(b) => format!("{} {}: {}", status.as_u16(), b.error, b.message),
        Err(_) => format!("{}: {}", status.as_u16(), text.chars().take(200).collect::<String>()),
    };
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        return Err(AttemptError::Final(BuyError::WorkRejected(ReasonCode::BadInput, msg)));
    }
    Err(retry(format!("seller refused: {msg}")))
}
