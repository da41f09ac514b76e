//! Selling: keep sell bids open while worker slots are free, establish matched
//! transactions, serve the transfer endpoints on the external port (PROTOCOL §5,
//! docs/PROTOCOL.md), run the work in the sandbox and hand back the encrypted
//! result, or `reject_work` with the reason code.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitwrk_protocol::api::{ArticleEntry, BidState, BidView, ErrorBody, TxView};
use bitwrk_protocol::identity::Address;
use bitwrk_protocol::manifest::Runtime;
use bitwrk_protocol::transfer::{
    ChunksAnswer, NotReady, TRANSFER_AUTH_HEADER, WorkOffer, WorkOfferAnswer, encode_result,
    limits as tl, transfer_auth, transfer_auth_matches, unframe_chunks,
};
use bitwrk_protocol::work::WorkManifest;
use bitwrk_protocol::{Hash32, Id, Phase, ReasonCode, Sat, Settlement, Side, TxAction};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::dedupe::BuyerChunks;
use crate::limits::{self, EXCHANGE_WAIT};
use crate::node::{Node, TradeReport};
use crate::state::{ActivityRequest, Forbidden, WorkerInfo, now_ms};

/// Default ask when `--sell ARTICLE` names no price.
pub const SELL_PRICE_DEFAULT_SAT: u64 = 100;
/// How long a bidder waits after the user (or a timeout) refused a sell bid before it asks
/// again: long enough not to flood the UI with requests.
const FORBIDDEN_BACKOFF: Duration = Duration::from_secs(60);

/// `--sell ARTICLE[:MIN_PRICE]`: an article (id or name) and the lowest price to sell at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellSpec {
    pub article: String,
    pub min_price: Sat,
}

impl FromStr for SellSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<SellSpec, String> {
        let (article, price) = match s.rsplit_once(':') {
            Some((a, p)) => (
                a,
                Sat(p.parse().map_err(|_| {
                    format!("--sell {s:?}: price {p:?} is not a whole number of sat")
                })?),
            ),
            None => (s, Sat(SELL_PRICE_DEFAULT_SAT)),
        };
        if article.is_empty() {
            return Err(format!("--sell {s:?}: give an article id or name, e.g. raytrace:100"));
        }
        Ok(SellSpec { article: article.to_string(), min_price: price })
    }
}

/// How a seller is set up.
#[derive(Debug, Clone)]
pub struct SellerConfig {
    pub sells: Vec<SellSpec>,
    /// Trades worked on at once (each runs one sandbox).
    pub worker_slots: usize,
    /// Unmatched sell bids kept open per article while a worker slot is free (at most
    /// `worker_slots` per article; a slot is taken when a bid matches).
    pub unmatched_bids: usize,
    /// What buyers are told in `establish`: `http://ADDR:PORT/v1/work`; a buyer appends `/{tx}`.
    pub worker_url: String,
}

/// What a seller does with a run: the wasm sandbox (and, once configured, Blender).
pub struct Engines {
    pub sandbox: Arc<bitwrk_runtime::Sandbox>,
    /// The Blender bridge (`run --blender`): sells the blender-cycles article of its version.
    pub blender: Option<Arc<bitwrk_blender_bridge::Bridge>>,
}

/// A slot taken from the worker pool; returned on drop.
struct Slot {
    id: u32,
    _permit: OwnedSemaphorePermit,
    free_ids: Arc<Mutex<Vec<u32>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.free_ids.lock().expect("slot ids lock").push(self.id);
    }
}

/// The encrypted result of one trade, committed at the exchange (hash and key).
#[derive(Debug)]
struct Sealed {
    enc: Bytes,
}

#[derive(Debug, Clone)]
enum Stage {
    AwaitingOffer,
    Receiving,
    Running,
    Ready(Arc<Sealed>),
    Failed(ReasonCode, String),
}

type SecretPost = Shared<BoxFuture<'static, Result<(), String>>>;

/// Transfer state of one transaction at the seller.
struct SellTrade {
    tx: Id,
    article: Arc<ArticleEntry>,
    view: Mutex<Option<TxView>>,
    stage: watch::Sender<Stage>,
    work: Mutex<Option<Work>>,
    secret: Mutex<Option<SecretPost>>,
    /// The buyer's transfer credential ([`transfer_auth`] of the secret), once an offer
    /// proved the secret; every later transfer request must carry it.
    auth: Mutex<Option<Hash32>>,
    slot: Mutex<Option<Slot>>,
    /// Set once the evidence of delivery was uploaded (a dispute without receipt).
    evidence_sent: std::sync::atomic::AtomicBool,
}

struct Work {
    manifest: WorkManifest,
    /// The tx's buyer: its uploads are recorded for its own dedupe only.
    buyer: Address,
    missing: HashSet<Hash32>,
    started: bool,
}

/// The selling side of a host.
pub struct Seller {
    node: Arc<Node>,
    engines: Engines,
    config: SellerConfig,
    slots: Arc<Semaphore>,
    free_ids: Arc<Mutex<Vec<u32>>>,
    trades: Mutex<HashMap<Id, Arc<SellTrade>>>,
    loaded: tokio::sync::Mutex<HashMap<Hash32, Arc<bitwrk_runtime::LoadedArticle>>>,
    /// The bidders, so a stop can wait until they cancelled their open bids.
    bidders: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Which chunks each buyer sent: the have-list counts only a buyer's own chunks.
    dedupe: BuyerChunks,
}

/// Transfer errors as HTTP answers: `{"error": code, "message": text}`.
struct ApiError(StatusCode, String, String);

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(status, code.to_string(), message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1, message: self.2 })).into_response()
    }
}

impl Seller {
    pub fn new(node: Arc<Node>, engines: Engines, config: SellerConfig) -> Arc<Seller> {
        let slots = config.worker_slots.max(1);
        Arc::new(Seller {
            node,
            engines,
            slots: Arc::new(Semaphore::new(slots)),
            free_ids: Arc::new(Mutex::new((0..slots as u32).rev().collect())),
            config,
            trades: Mutex::new(HashMap::new()),
            loaded: tokio::sync::Mutex::new(HashMap::new()),
            bidders: Mutex::new(Vec::new()),
            dedupe: BuyerChunks::default(),
        })
    }

    /// Resolve the `--sell` articles and start their bidders. Returns once every article
    /// is resolved (so a typo fails at start); the bidders run until `shutdown`.
    pub async fn start(self: &Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        for spec in &self.config.sells {
            let entry = self.node.resolve_article(&spec.article).await?;
            let offered =
                self.engines.blender.as_ref().is_some_and(|b| b.manifest().id() == entry.id);
            if let Runtime::NativeBlender { .. } = entry.manifest.runtime
                && !offered
            {
                anyhow::bail!(
                    "article {} needs Blender, which this host does not offer; leave it out of --sell",
                    entry.manifest.name
                );
            }
            tracing::info!(article = %entry.id, name = %entry.manifest.name, price = spec.min_price.0, "selling");
            let bidders = self.config.unmatched_bids.clamp(1, self.config.worker_slots.max(1));
            for _ in 0..bidders {
                let me = self.clone();
                let entry = entry.clone();
                let price = spec.min_price;
                let shutdown = shutdown.clone();
                let h = tokio::spawn(async move { me.bidder(entry, price, shutdown).await });
                self.bidders.lock().expect("bidders lock").push(h);
            }
        }
        Ok(())
    }

    /// Wait for the bidders to end (after the shutdown token fired): open bids cancelled.
    pub async fn bidders_done(&self) {
        let hs: Vec<_> = std::mem::take(&mut *self.bidders.lock().expect("bidders lock"));
        for h in hs {
            let _ = h.await;
        }
    }

    async fn take_slot(&self) -> Slot {
        let permit =
            self.slots.clone().acquire_owned().await.expect("the slot semaphore is never closed");
        let id =
            self.free_ids.lock().expect("slot ids lock").pop().expect("a permit implies a free id");
        Slot { id, _permit: permit, free_ids: self.free_ids.clone() }
    }

    fn worker(&self, slot: u32, article: &ArticleEntry, tx: Option<Id>) {
        self.node.gate.worker_update(WorkerInfo {
            slot,
            article: article.id,
            article_name: article.manifest.name.clone(),
            busy: tx.is_some(),
            tx,
            started_ms: Some(now_ms()),
        });
    }

    /// Wait until a worker slot is free, without taking it.
    async fn slot_free(&self) {
        let permit = self.slots.acquire().await.expect("the slot semaphore is never closed");
        drop(permit);
    }

    /// Keep one sell bid open for `article` while a worker slot is free.
    ///
    /// The slot is taken when the bid matches, not while it rests: a seller of several
    /// articles keeps every one of them on offer. (Reserving a slot per resting bid let
    /// the bids of an article nobody buys hold every slot, so a buyer of another article
    /// waited for them to expire: the 30 s stalls once measured in the host bench.)
    /// Matches beyond the free slots wait for one before establishing; at most
    /// `--num-unmatched-bids` per article can, and the phase deadlines bound the wait.
    async fn bidder(
        self: Arc<Self>,
        article: Arc<ArticleEntry>,
        price: Sat,
        shutdown: CancellationToken,
    ) {
        // A permission covers one trade, not one bid: it is kept while the bids placed
        // under it expire unmatched and is spent when one matches, so a mandate for ten
        // trades sells ten times however long the buyers take.
        let mut permitted = false;
        loop {
            tokio::select! {
                _ = self.slot_free() => {},
                _ = shutdown.cancelled() => return,
            };
            if !permitted {
                let req = ActivityRequest {
                    article: article.id,
                    article_name: article.manifest.name.clone(),
                    side: Side::Sell,
                    price,
                };
                let hint = self.node.gate.permission_hint(&req);
                let answer = tokio::select! {
                    r = self.node.gate.request_permission(req) => r,
                    _ = shutdown.cancelled() => return,
                };
                match answer {
                    Ok(()) => permitted = true,
                    // Nobody looked: ask again at once, so the UI always shows the request.
                    Err(Forbidden::TimedOut(s)) => {
                        tracing::warn!(article = %article.manifest.name, "no answer in {s} s; asking again. {hint}");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(article = %article.manifest.name, error = %e, "sell bid not permitted; asking again in {} s. {hint}", FORBIDDEN_BACKOFF.as_secs());
                        tokio::select! {
                            _ = tokio::time::sleep(FORBIDDEN_BACKOFF) => continue,
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            }
            let bid = match self
                .node
                .exchange
                .place_bid(&self.node.key, article.id, Side::Sell, price)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(article = %article.manifest.name, error = %e, "placing a sell bid failed");
                    tokio::select! {
                        _ = tokio::time::sleep(limits::SELL_RETRY_BACKOFF) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            tracing::debug!(bid = %bid.id, article = %article.manifest.name, "sell bid placed");
            let Some(bid) = self.await_match(bid, &shutdown).await else {
                if shutdown.is_cancelled() {
                    return;
                }
                tracing::debug!(article = %article.manifest.name, "sell bid ended unmatched; placing another under the same permission");
                continue;
            };
            permitted = false;
            let slot = tokio::select! {
                s = self.take_slot() => s,
                // The matched tx refunds the buyer at its establishing deadline.
                _ = shutdown.cancelled() => return,
            };
            let me = self.clone();
            let article = article.clone();
            tokio::spawn(async move { me.trade(bid, slot, article).await });
        }
    }

    /// Follow a bid until it matches (Some) or ends unmatched (None; cancelled on shutdown).
    async fn await_match(&self, mut bid: BidView, shutdown: &CancellationToken) -> Option<BidView> {
        loop {
            match bid.state {
                BidState::Matched if bid.tx.is_some() => return Some(bid),
                BidState::Open => {}
                _ => return None,
            }
            let next = tokio::select! {
                r = self.node.exchange.wait_bid(&bid.id, bid.version, EXCHANGE_WAIT) => r,
                _ = shutdown.cancelled() => {
                    if let Err(e) = self.node.exchange.cancel_bid(&self.node.key, &bid.id).await {
                        tracing::warn!(bid = %bid.id, error = %e, "cancelling the sell bid at shutdown failed");
                    }
                    return None;
                }
            };
            match next {
                Ok(b) => bid = b,
                Err(e) => {
                    tracing::warn!(bid = %bid.id, error = %e, "waiting on the sell bid failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(limits::SELL_RETRY_BACKOFF) => {}
                        _ = shutdown.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// One matched transaction, from `establish` until it settles.
    async fn trade(self: Arc<Self>, bid: BidView, slot: Slot, article: Arc<ArticleEntry>) {
        let tx = bid.tx.clone().expect("matched bids have a tx");
        let mut report = TradeReport::new(
            self.node.gate.clone(),
            bid.id.to_string(),
            &article,
            Side::Sell,
            bid.price_sat,
        );
        // The sale's permission was given before its bid was placed.
        report.permitted();
        report.info().bid = Some(bid.id.clone());
        report.info().tx = Some(tx.clone());
        self.worker(slot.id, &article, Some(tx.clone()));
        let trade = Arc::new(SellTrade {
            tx: tx.clone(),
            article: article.clone(),
            view: Mutex::new(None),
            stage: watch::Sender::new(Stage::AwaitingOffer),
            work: Mutex::new(None),
            secret: Mutex::new(None),
            auth: Mutex::new(None),
            slot: Mutex::new(Some(slot)),
            evidence_sent: std::sync::atomic::AtomicBool::new(false),
        });
        {
            let mut trades = self.trades.lock().expect("trades lock");
            if trades.len() >= limits::SELLER_TRADES_MAX {
                tracing::warn!(tx = %tx, "too many transactions in flight; not establishing (it refunds at its deadline)");
                report.finish(None, Some("too many transactions in flight".into()));
                return;
            }
            trades.insert(tx.clone(), trade.clone());
        }
        report.phase("establishing");
        let action = TxAction::EstablishSeller { worker_url: self.config.worker_url.clone() };
        let mut version = 0;
        match self.node.exchange.tx_action(&self.node.key, &tx, action).await {
            Ok(v) => {
                tracing::info!(tx = %tx, price = v.price_sat.0, "sell trade established");
                version = v.version;
                report.info().price_sat = v.price_sat;
                report.info().fee_sat = v.fee_sat;
                trade.set_view(v);
            }
            Err(e) => {
                tracing::warn!(tx = %tx, error = %e, "establish failed; following the tx anyway")
            }
        }
        let end = loop {
            match self.node.exchange.wait_tx(&tx, version, EXCHANGE_WAIT).await {
                Ok(v) => {
                    version = v.version;
                    let done = v.phase.is_terminal() || v.settlement.is_some();
                    report.phase(v.phase.as_str());
                    trade.set_view(v.clone());
                    if v.phase == Phase::ResultDisputed && !v.receipted() && !done {
                        self.prove_delivery(&trade);
                    }
                    if done {
                        break v;
                    }
                }
                Err(e) => {
                    tracing::warn!(tx = %tx, error = %e, "following the tx failed; retrying");
                    tokio::time::sleep(limits::SELL_RETRY_BACKOFF).await;
                }
            }
        };
        // Free the slot if the work never ran (buyer never came).
        if let Some(slot) = trade.slot.lock().expect("slot lock").take() {
            self.worker(slot.id, &article, None);
        }
        self.trades.lock().expect("trades lock").remove(&tx);
        let outcome = match end.settlement {
            Some(s) => format!("{}: {}", end.phase, settlement_text(s)),
            None => end.phase.to_string(),
        };
        let error = end.reason.map(|r| format!("work rejected: {r}"));
        tracing::info!(tx = %tx, phase = %end.phase, settlement = ?end.settlement, "sell trade ended");
        report.finish(Some(outcome), error);
    }

    /// The external port's routes (`/v1/work/...`).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/v1/work/{tx}", post(offer))
            .route(
                "/v1/work/{tx}/chunks",
                post(chunks).layer(DefaultBodyLimit::max(
                    tl::CHUNK_BATCH_BYTES_MAX + 1024 * tl::FRAME_HEADER_BYTES,
                )),
            )
            .route("/v1/work/{tx}/result", get(result))
            .layer(DefaultBodyLimit::max(limits::EXT_BODY_BYTES_MAX))
            .layer(tower::limit::ConcurrencyLimitLayer::new(limits::EXT_CONCURRENT_MAX))
            .with_state(self.clone())
    }

    fn trade_of(&self, tx: &str) -> Result<Arc<SellTrade>, ApiError> {
        let id = Id::new(tx)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        self.trades.lock().expect("trades lock").get(&id).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_tx",
                format!("no transaction {id} at this seller"),
            )
        })
    }

    /// The trade of `tx`, if the request carries its buyer's transfer credential
    /// ([`TRANSFER_AUTH_HEADER`]): only the buyer reads its result or feeds its chunks.
    /// Unknown tx: 404; no or wrong credential (or no offer yet): 403, and no bytes.
    fn authed_trade(&self, tx: &str, headers: &HeaderMap) -> Result<Arc<SellTrade>, ApiError> {
        let trade = self.trade_of(tx)?;
        let expected = *trade.auth.lock().expect("auth lock");
        let given = headers.get(TRANSFER_AUTH_HEADER).map(|v| v.as_bytes());
        match (expected, given) {
            (Some(e), Some(g)) if transfer_auth_matches(&e, g) => Ok(trade),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "only the transaction's buyer may do this: send {TRANSFER_AUTH_HEADER} (after the offer)"
                ),
            )),
        }
    }

    /// The tx as the exchange shows it, with the buyer's commitment in it.
    async fn committed_view(&self, trade: &SellTrade) -> Result<TxView, ApiError> {
        if let Some(v) = trade.view.lock().expect("view lock").clone()
            && v.secret_hash.is_some()
        {
            return Ok(v);
        }
        let v = self.node.exchange.tx(&trade.tx).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "exchange",
                format!("could not read the tx from the exchange: {e}"),
            )
        })?;
        trade.set_view(v.clone());
        Ok(v)
    }

    /// Start the run once every chunk is here (at most once per trade).
    fn maybe_start(self: &Arc<Self>, trade: &Arc<SellTrade>) {
        let manifest = {
            let mut w = trade.work.lock().expect("work lock");
            let Some(work) = w.as_mut() else { return };
            if !work.missing.is_empty() || work.started {
                return;
            }
            work.started = true;
            work.manifest.clone()
        };
        trade.stage.send_replace(Stage::Running);
        let me = self.clone();
        let trade = trade.clone();
        tokio::spawn(async move { me.run_work(trade, manifest).await });
    }

    async fn run_work(self: Arc<Self>, trade: Arc<SellTrade>, manifest: WorkManifest) {
        let t0 = std::time::Instant::now();
        let outcome = self.execute(&trade.article, manifest).await;
        let wall_ms = t0.elapsed().as_millis() as u64;
        if let Some(slot) = trade.slot.lock().expect("slot lock").take() {
            self.worker(slot.id, &trade.article, None);
        }
        match outcome {
            Ok(outputs) => {
                let plain = encode_result(&outputs);
                let key = crate::crypto::new_key();
                let (enc, hash) = crate::crypto::seal(&key, &trade.tx, &plain);
                tracing::info!(tx = %trade.tx, wall_ms, result_bytes = enc.len(), "work done");
                // Commit first (hash and key to the exchange), then serve: the buyer signs
                // its receipt for exactly the bytes it gets, and the exchange holds the key
                // that opens them, for the buyer and for a dispute.
                match self.commit(&trade, hash, key).await {
                    Ok(()) => {
                        let sealed = Sealed { enc: Bytes::from(enc) };
                        trade.stage.send_replace(Stage::Ready(Arc::new(sealed)));
                    }
                    Err(e) => {
                        tracing::warn!(tx = %trade.tx, error = %e, "committing the result failed; the buyer is refunded at the working deadline");
                        let message = format!("the seller could not commit its result: {e}");
                        trade.stage.send_replace(Stage::Failed(ReasonCode::Internal, message));
                    }
                }
            }
            Err((reason, message)) => {
                tracing::info!(tx = %trade.tx, %reason, %message, wall_ms, "work failed; rejecting it");
                trade.stage.send_replace(Stage::Failed(reason, message));
                if let Err(e) = trade.secret_posted().await {
                    tracing::warn!(tx = %trade.tx, error = %e, "secret was not accepted; not rejecting");
                    return;
                }
                if let Err(e) = self
                    .node
                    .exchange
                    .tx_action(&self.node.key, &trade.tx, TxAction::RejectWork { reason })
                    .await
                {
                    tracing::warn!(tx = %trade.tx, error = %e, "reject_work failed");
                }
            }
        }
    }

    /// Post `result` (the encrypted result's hash and its key) once the secret is in.
    async fn commit(&self, trade: &SellTrade, hash: Hash32, key: [u8; 32]) -> Result<(), String> {
        trade.secret_posted().await.map_err(|e| format!("the secret was not accepted: {e}"))?;
        let action = TxAction::Result { enc_result_hash: hash, result_key: key };
        let v = self
            .node
            .exchange
            .tx_action(&self.node.key, &trade.tx, action)
            .await
            .map_err(|e| e.to_string())?;
        trade.set_view(v);
        Ok(())
    }

    /// The buyer disputes without having signed a receipt ("never delivered"): only the
    /// seller holds the ciphertext, so it uploads it as evidence; the exchange decrypts it
    /// with the committed key and decides. Once per trade, in the background.
    fn prove_delivery(&self, trade: &Arc<SellTrade>) {
        let Stage::Ready(sealed) = trade.stage.borrow().clone() else {
            tracing::warn!(tx = %trade.tx, "disputed as undelivered, but there is no result to show");
            return;
        };
        let Some(auth) = *trade.auth.lock().expect("auth lock") else { return };
        if trade.evidence_sent.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let node = self.node.clone();
        let tx = trade.tx.clone();
        tokio::spawn(async move {
            match node.exchange.upload_evidence(&tx, &auth, sealed.enc.to_vec()).await {
                Ok(v) => {
                    tracing::info!(tx = %tx, settlement = ?v.settlement, "delivery proven to the exchange")
                }
                Err(e) => tracing::warn!(tx = %tx, error = %e, "uploading the evidence failed"),
            }
        });
    }

    /// Reassemble the inputs from the store and run the article.
    async fn execute(
        &self,
        article: &Arc<ArticleEntry>,
        manifest: WorkManifest,
    ) -> Result<Vec<(String, Vec<u8>)>, (ReasonCode, String)> {
        let internal = |e: String| (ReasonCode::Internal, e);
        let store = self.node.store.clone();
        // Chunks that just arrived are still in memory (write-behind): no thread hop for
        // them. Otherwise read from disk on the blocking pool.
        let in_memory = manifest.inputs.iter().flat_map(|i| &i.chunks).all(|h| store.is_cheap(h));
        let assemble = move || -> Result<Inputs, (ReasonCode, String)> {
            let mut out = Vec::new();
            for input in &manifest.inputs {
                let mut data = Vec::with_capacity(input.size as usize);
                for h in &input.chunks {
                    // A chunk gone since the offer is this seller's failure, not the work's.
                    let c = store.get(h).map_err(|e| internal(e.to_string()))?;
                    data.extend_from_slice(&c);
                }
                if data.len() as u64 != input.size {
                    return Err((
                        ReasonCode::BadInput,
                        format!(
                            "input {:?}: chunks add up to {} bytes, manifest says {}",
                            input.name,
                            data.len(),
                            input.size
                        ),
                    ));
                }
                out.push((input.name.clone(), data));
            }
            Ok(out)
        };
        let inputs = if in_memory {
            assemble()?
        } else {
            tokio::task::spawn_blocking(assemble).await.map_err(|e| internal(e.to_string()))??
        };
        if let Runtime::NativeBlender { .. } = article.manifest.runtime {
            // Blender articles run in the confined Blender of blender-bridge.
            let bridge = match &self.engines.blender {
                Some(b) if b.manifest().id() == article.id => b.clone(),
                _ => {
                    return Err((
                        ReasonCode::Unsupported,
                        "this host offers no Blender of that version".into(),
                    ));
                }
            };
            let outputs = tokio::task::spawn_blocking(move || bridge.render(inputs))
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|e| (e.reason, e.message))?;
            check_outputs(&article.manifest, &outputs)
                .map_err(|m| (ReasonCode::OutputTooLarge, m))?;
            return Ok(outputs);
        }
        let loaded = self.loaded(article).await.map_err(|e| internal(format!("{e:#}")))?;
        let sandbox = self.engines.sandbox.clone();
        let run = tokio::task::spawn_blocking(move || sandbox.run(&loaded, inputs))
            .await
            .map_err(|e| internal(e.to_string()))?;
        let out = run.map_err(|e| (e.reason, e.message))?;
        check_outputs(&article.manifest, &out.outputs)
            .map_err(|m| (ReasonCode::OutputTooLarge, m))?;
        Ok(out.outputs)
    }

    /// The article compiled for the sandbox (fetched from the registry by id, hash-checked).
    async fn loaded(
        &self,
        article: &ArticleEntry,
    ) -> anyhow::Result<Arc<bitwrk_runtime::LoadedArticle>> {
        let mut cache = self.loaded.lock().await;
        if let Some(l) = cache.get(&article.id) {
            return Ok(l.clone());
        }
        let module = self.node.exchange.module(&article.id).await?;
        anyhow::ensure!(
            Some(Hash32::of(&module)) == article.manifest.module_sha256,
            "the registry's module for {} does not match the manifest's module_sha256",
            article.manifest.name
        );
        let sandbox = self.engines.sandbox.clone();
        let manifest = article.manifest.clone();
        let loaded =
            tokio::task::spawn_blocking(move || sandbox.load(&manifest, &module)).await??;
        let loaded = Arc::new(loaded);
        if cache.len() >= limits::ARTICLE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(article.id, loaded.clone());
        Ok(loaded)
    }
}

/// A work's inputs, by name, reassembled from their chunks.
type Inputs = Vec<(String, Vec<u8>)>;

/// Outputs must be exactly the declared ones, each once, each within its `max_bytes`:
/// the protocol's one check, which the buyer and the exchange apply too.
fn check_outputs(
    manifest: &bitwrk_protocol::Manifest,
    outputs: &[(String, Vec<u8>)],
) -> Result<(), String> {
    bitwrk_protocol::work::check_outputs(manifest, outputs).map_err(|e| e.to_string())
}

/// A settlement as the seller's activity list says it.
fn settlement_text(s: Settlement) -> &'static str {
    match s {
        Settlement::PaidSeller => "paid",
        Settlement::RefundedBuyer => "the buyer was refunded",
        Settlement::Lapsed => "the buyer lapsed; half the price paid",
        Settlement::DisputeSellerFault => "dispute lost (the evidence did not open)",
        Settlement::DisputeBuyerFault => "dispute won; paid",
    }
}

impl SellTrade {
    fn set_view(&self, v: TxView) {
        let mut cur = self.view.lock().expect("view lock");
        if cur.as_ref().is_none_or(|c| c.version <= v.version) {
            *cur = Some(v);
        }
    }

    /// Wait until the `secret` post finished; its outcome.
    async fn secret_posted(&self) -> Result<(), String> {
        let fut = self.secret.lock().expect("secret lock").clone();
        match fut {
            Some(f) => f.await,
            None => Err("the secret was never posted".into()),
        }
    }
}

async fn offer(
    State(seller): State<Arc<Seller>>,
    Path(tx): Path<String>,
    body: Bytes,
) -> Result<Json<WorkOfferAnswer>, ApiError> {
    let trade = seller.trade_of(&tx)?;
    let offer: WorkOffer = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("work offer does not parse: {e}"),
        )
    })?;
    // Canonical order is part of the work hash; check it like the protocol's parser does.
    let manifest = WorkManifest::from_json(&offer.manifest.canonical_json())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let view = seller.committed_view(&trade).await?;
    let work_hash = manifest.work_hash();
    let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", m.to_string());
    if view.work_hash != Some(work_hash) {
        return Err(forbidden("the work does not match the work_hash the buyer committed to"));
    }
    if view.secret_hash != Some(bitwrk_protocol::tx::secret_hash(&work_hash, &offer.secret.0)) {
        return Err(forbidden(
            "wrong secret: SHA256(work_hash ‖ secret) is not the tx's secret_hash",
        ));
    }
    *trade.auth.lock().expect("auth lock") = Some(transfer_auth(&offer.secret));
    check_work(&trade.article.manifest, &manifest).map_err(|m| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ReasonCode::BadInput.as_str(), m)
    })?;
    let distinct = manifest.distinct_chunks();
    // No chunk oracle: a chunk counts as held only if this buyer sent it before (and the
    // store still has it); another buyer's chunks are asked for like unknown ones.
    let sent_before = seller.dedupe.sent_before(&view.buyer, &distinct);
    let store = seller.node.store.clone();
    let d = distinct.clone();
    let lacks = move |(h, sent): (&Hash32, &bool)| !*sent || !store.has(h);
    // A few lookups (memory, or one failed open each) are cheaper than a thread hop.
    let missing: Vec<bool> = if d.len() <= 4 {
        d.iter().zip(&sent_before).map(lacks).collect()
    } else {
        tokio::task::spawn_blocking(move || d.iter().zip(&sent_before).map(lacks).collect())
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
    };
    {
        let mut w = trade.work.lock().expect("work lock");
        match w.as_ref() {
            Some(existing) if existing.manifest != manifest => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "a different work was already offered",
                ));
            }
            Some(_) => {}
            None => {
                let set =
                    distinct.iter().zip(&missing).filter(|(_, m)| **m).map(|(h, _)| *h).collect();
                *w = Some(Work {
                    manifest: manifest.clone(),
                    buyer: view.buyer.clone(),
                    missing: set,
                    started: false,
                });
            }
        }
    }
    // Prove to the exchange that we work for the real buyer; in parallel with the upload.
    {
        let mut s = trade.secret.lock().expect("secret lock");
        if s.is_none() {
            let node = seller.node.clone();
            let tx = trade.tx.clone();
            let secret = offer.secret.0;
            let fut: BoxFuture<'static, Result<(), String>> = async move {
                node.exchange
                    .tx_action(&node.key, &tx, TxAction::Secret { secret })
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            .boxed();
            let shared = fut.shared();
            tokio::spawn(shared.clone());
            *s = Some(shared);
        }
    }
    if matches!(*trade.stage.borrow(), Stage::AwaitingOffer) {
        trade.stage.send_replace(Stage::Receiving);
    }
    tracing::debug!(tx = %trade.tx, chunks = distinct.len(), missing = missing.iter().filter(|m| **m).count(), "work offered");
    seller.maybe_start(&trade);
    Ok(Json(WorkOfferAnswer::new(&missing)))
}

/// The work must carry exactly the declared inputs, each within `max_bytes`.
fn check_work(article: &bitwrk_protocol::Manifest, work: &WorkManifest) -> Result<(), String> {
    let chunks: usize = work.inputs.iter().map(|i| i.chunks.len()).sum();
    if chunks > tl::CHUNKS_PER_WORK_MAX {
        return Err(format!("{chunks} chunks; at most {} per work", tl::CHUNKS_PER_WORK_MAX));
    }
    if work.inputs.len() != article.inputs.len() {
        return Err(format!(
            "{} inputs, the article declares {}",
            work.inputs.len(),
            article.inputs.len()
        ));
    }
    for input in &work.inputs {
        let decl = article
            .input(&input.name)
            .ok_or_else(|| format!("input {:?} is not declared", input.name))?;
        if input.size > decl.max_bytes {
            return Err(format!(
                "input {:?} has {} bytes, at most {} declared",
                input.name, input.size, decl.max_bytes
            ));
        }
        let most =
            input.size.div_ceil(bitwrk_protocol::work::CHUNK_MIN_BYTES as u64).max(1) as usize;
        if input.chunks.len() > most {
            return Err(format!("input {:?} lists more chunks than its size allows", input.name));
        }
    }
    Ok(())
}

async fn chunks(
    State(seller): State<Arc<Seller>>,
    Path(tx): Path<String>,
    Query(q): Query<WaitParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let trade = seller.authed_trade(&tx, &headers)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let frames = unframe_chunks(&body).map_err(|e| bad(e.to_string()))?;
    let hashed: Vec<(Hash32, &[u8])> = frames.iter().map(|c| (Hash32::of(c), *c)).collect();
    {
        let w = trade.work.lock().expect("work lock");
        let work = w.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "offer the work (POST /v1/work/{tx}) before its chunks",
            )
        })?;
        if let Some((h, _)) = hashed.iter().find(|(h, _)| !work.missing.contains(h)) {
            return Err(bad(format!("chunk {h} was not asked for (wrong bytes or sent twice)")));
        }
    }
    // Write-behind: the chunks are readable at once, the disk write follows.
    let store = &seller.node.store;
    let mut stored = Vec::with_capacity(hashed.len());
    for (h, c) in &hashed {
        store.put_soon(*h, body.slice_ref(c)).await.map_err(|e| {
            tracing::error!(tx = %trade.tx, error = %e, "storing chunks failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        })?;
        stored.push(*h);
    }
    let (still_missing, buyer) = {
        let mut w = trade.work.lock().expect("work lock");
        let work = w.as_mut().expect("checked above");
        for h in &stored {
            work.missing.remove(h);
        }
        (work.missing.len() as u64, work.buyer.clone())
    };
    seller.dedupe.record(&buyer, stored);
    seller.maybe_start(&trade);
    // The batch that completed the work may wait for the run and answer with its result.
    let wait = q.wait();
    if still_missing == 0 && !wait.is_zero() {
        let stage = wait_done(&trade, wait).await;
        if matches!(stage, Stage::Ready(_) | Stage::Failed(..)) {
            return Ok(stage_response(stage));
        }
    }
    Ok(Json(ChunksAnswer { still_missing }).into_response())
}

/// The trade's stage once the run is done, or as it is when `wait` is over.
async fn wait_done(trade: &SellTrade, wait: Duration) -> Stage {
    let mut rx = trade.stage.subscribe();
    let done = |s: &Stage| matches!(s, Stage::Ready(_) | Stage::Failed(..));
    match tokio::time::timeout(wait, rx.wait_for(done)).await {
        Ok(Ok(s)) => s.clone(),
        _ => trade.stage.borrow().clone(),
    }
}

/// The answer to a result request (or a completing chunk batch) in this stage.
fn stage_response(stage: Stage) -> Response {
    match stage {
        Stage::Ready(sealed) => {
            ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], sealed.enc.clone())
                .into_response()
        }
        Stage::Failed(reason, message) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, reason.as_str(), message)
                .into_response()
        }
        Stage::AwaitingOffer => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "no work was offered for this transaction",
        )
        .into_response(),
        Stage::Receiving => {
            (StatusCode::ACCEPTED, Json(NotReady { stage: "receiving".into() })).into_response()
        }
        Stage::Running => {
            (StatusCode::ACCEPTED, Json(NotReady { stage: "running".into() })).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct WaitParams {
    wait_ms: Option<u64>,
}

impl WaitParams {
    /// The wait asked for, capped like every result poll.
    fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms.unwrap_or(0).min(tl::RESULT_WAIT_MS_MAX))
    }
}

async fn result(
    State(seller): State<Arc<Seller>>,
    Path(tx): Path<String>,
    Query(q): Query<WaitParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let trade = seller.authed_trade(&tx, &headers)?;
    let wait = q.wait();
    Ok(stage_response(wait_done(&trade, wait).await))
}
