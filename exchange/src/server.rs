//! The HTTP shell around the core: axum routes, signature checks with a key cache, the
//! writer task that applies commands and commits them to SQLite in groups, the deadline
//! timer, long polls, the per-IP rate limit and JSON errors for everything.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use bitwrk_protocol::api::{ApiLimits, ErrorBody, Info, PublishRequest, WaitQuery};
use bitwrk_protocol::fast_verify::{Checked, KeyCache};
use bitwrk_protocol::identity::{CompactSignature, message_hash};
use bitwrk_protocol::manifest::Runtime;
use bitwrk_protocol::manifest::caps::MANIFEST_BYTES_MAX;
use bitwrk_protocol::message::{Message, Operation, VALID_AHEAD_S_MAX};
use bitwrk_protocol::transfer::{TRANSFER_AUTH_HEADER, transfer_auth_matches};
use bitwrk_protocol::{Address, Envelope, Hash32, Id};
use std::sync::mpsc;
use tokio::sync::{oneshot, watch};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::Config;
use crate::core::{Answer, Command, Core, CoreError, Rules, Signed};
use crate::limits::{
    ARTICLES_PAGE_MAX, BODY_BYTES_MAX, COMMIT_GROUP_MAX, CONCURRENT_REQUESTS_MAX,
    EVIDENCE_BYTES_MAX, EVIDENCE_UPLOADS_MAX, FUNDING_IPS_MAX, FUNDING_WINDOW, KEY_CACHE_MAX,
    KEY_TABLE_AFTER_USES, KEY_TABLES_MAX, MODULE_BYTES_MAX, PUBLISH_BODY_BYTES_MAX,
    RATE_LIMIT_IPS_MAX, REQUEST_TIMEOUT, SSE_STREAM_MAX, WAIT_MS_MAX, WRITER_QUEUE_MAX,
};
use crate::store::{LogEntry, Reader, Store};

/// Long-poll wait when `after_version` is given without `wait_ms`.
const WAIT_MS_DEFAULT: u64 = 30_000;
/// Shards of the change notification: a change wakes only the waiters of its shard.
const NOTIFY_SHARDS: usize = 64;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ---------- errors ----------

/// An API error: a 4xx with `{"error": code, "message": text}`, or a 500 "internal".
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        let status = match &e {
            CoreError::BadMessage(_)
            | CoreError::WrongExchange { .. }
            | CoreError::Expired { .. }
            | CoreError::TooFarAhead { .. }
            | CoreError::WrongOp { .. }
            | CoreError::IdMismatch { .. }
            | CoreError::BadPrice(_)
            | CoreError::BadSecret
            | CoreError::BadReceipt { .. }
            | CoreError::WrongEvidence { .. } => StatusCode::BAD_REQUEST,
            CoreError::InsufficientFunds { .. } => StatusCode::PAYMENT_REQUIRED,
            CoreError::NotOwner { .. } | CoreError::NotParty { .. } => StatusCode::FORBIDDEN,
            CoreError::UnknownArticle(_) | CoreError::UnknownBid(_) | CoreError::UnknownTx(_) => {
                StatusCode::NOT_FOUND
            }
            CoreError::NonceReused(_)
            | CoreError::BidNotOpen { .. }
            | CoreError::WrongPhase { .. }
            | CoreError::TxClosed { .. }
            | CoreError::IdTaken(_)
            | CoreError::RegistryFull
            | CoreError::QuotaExceeded { .. }
            | CoreError::TooManyBids(_) => StatusCode::CONFLICT,
            CoreError::BadManifest(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError { status, code: e.code(), message: e.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.code.to_string(), message: self.message };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The code for a status that a layer (not a handler) produced.
fn code_for_status(s: StatusCode) -> &'static str {
    match s {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Every error answer is JSON: rewrite the plain ones that axum or tower layers produce.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = status.canonical_reason().unwrap_or("error").to_string();
        let body = ErrorBody { error: code_for_status(status).to_string(), message };
        return (status, Json(body)).into_response();
    }
    resp
}

// ---------- the writer ----------

enum Job {
    Apply {
        cmd: Box<Command>,
        /// The parsed signed text, so the writer does not parse it again.
        msg: Option<Box<Message>>,
        module: Option<(Hash32, Vec<u8>)>,
        reply: oneshot::Sender<Result<Answer, CoreError>>,
    },
    /// Fire the deadlines that have passed; answered once done.
    Tick(oneshot::Sender<()>),
    /// Commit what came before and stop (shutdown).
    Stop,
}

/// Change notifications for long polls, sharded by id.
struct Notifier {
    shards: Vec<watch::Sender<u64>>,
}

impl Notifier {
    fn new() -> Notifier {
        Notifier { shards: (0..NOTIFY_SHARDS).map(|_| watch::channel(0).0).collect() }
    }
    fn shard(&self, id: &Id) -> &watch::Sender<u64> {
        let h = id.as_str().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        &self.shards[(h % NOTIFY_SHARDS as u64) as usize]
    }
    fn notify(&self, id: &Id) {
        self.shard(id).send_modify(|v| *v += 1);
    }
    fn subscribe(&self, id: &Id) -> watch::Receiver<u64> {
        self.shard(id).subscribe()
    }
}

#[derive(Default)]
struct Metrics {
    commands_committed: AtomicU64,
    commit_groups: AtomicU64,
    bids_accepted: AtomicU64,
    requests_refused: AtomicU64,
    signature_recoveries: AtomicU64,
    signature_cache_hits: AtomicU64,
    rate_limited: AtomicU64,
}

/// The writer's estimate of how fast jobs arrive: an exponential moving average over
/// commit groups of (jobs in the group ÷ time since the previous group began).
#[derive(Default)]
struct ArrivalRate {
    per_s: f64,
    last_group: Option<Instant>,
}

impl ArrivalRate {
    fn observe(&mut self, jobs: usize, group_started: Instant) {
        if let Some(last) = self.last_group {
            let dt = group_started.duration_since(last).as_secs_f64().max(1e-6);
            self.per_s = 0.8 * self.per_s + 0.2 * (jobs as f64 / dt);
        }
        self.last_group = Some(group_started);
    }

    /// Jobs expected to arrive within `window` at the current rate.
    fn expected_within(&self, window: Duration) -> f64 {
        self.per_s * window.as_secs_f64()
    }
}

/// One commit group: `first`, everything already queued, and, if `busy` (at the recent
/// rate at least one more job is expected within the window), whatever arrives within
/// `window` of now, so that one fsync covers them all. At low rates (a lone client, one
/// machine's buyer and seller) a group is never held open; nor is it when a stop job is
/// queued. At most [`COMMIT_GROUP_MAX`] jobs.
fn gather<T>(
    rx: &mpsc::Receiver<T>,
    first: T,
    is_stop: impl Fn(&T) -> bool,
    busy: bool,
    window: Duration,
    batch: &mut Vec<T>,
) {
    let window_ends = Instant::now() + window;
    batch.push(first);
    let drain = |batch: &mut Vec<T>| {
        while batch.len() < COMMIT_GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
    };
    drain(batch);
    if !busy || batch.len() >= COMMIT_GROUP_MAX || batch.iter().any(&is_stop) {
        return;
    }
    // Sleep through the window rather than wait on the channel: a receiver that waits
    // is woken by every send (a futex call on the sender's side and a context switch
    // here, per job), which cost more than the fsyncs saved.
    std::thread::sleep(window_ends.saturating_duration_since(Instant::now()));
    drain(batch);
}

/// The writer: applies commands to the core in arrival order and commits each group of
/// accepted ones in one SQLite transaction; only then are they answered and announced.
fn writer_loop(
    rx: mpsc::Receiver<Job>,
    mut store: Store,
    core: Arc<Mutex<Core>>,
    notifier: Arc<Notifier>,
    next_deadline: watch::Sender<Option<u64>>,
    metrics: Arc<Metrics>,
    commit_window: Duration,
) {
    let mut batch = Vec::with_capacity(COMMIT_GROUP_MAX);
    let mut stop = false;
    let mut arrivals = ArrivalRate::default();
    while !stop && let Ok(first) = rx.recv() {
        let started = Instant::now();
        let busy = arrivals.expected_within(commit_window) >= 1.0;
        gather(&rx, first, |j| matches!(j, Job::Stop), busy, commit_window, &mut batch);
        arrivals.observe(batch.len(), started);
        let mut rows = Vec::new();
        let mut modules = Vec::new();
        let mut replies = Vec::new();
        let mut ticks = Vec::new();
        let (changed, next) = {
            let mut core = core
                .lock()
                .expect("core lock poisoned: the exchange stopped on a broken invariant");
            for job in batch.drain(..) {
                match job {
                    Job::Stop => stop = true,
                    Job::Tick(done) => {
                        core.advance(now_ms());
                        ticks.push(done);
                    }
                    Job::Apply { cmd, msg, module, reply } => {
                        let result = match msg {
                            Some(msg) => core.apply_parsed(&cmd, *msg, now_ms()),
                            None => core.apply(&cmd, now_ms()),
                        };
                        if let Ok(applied) = &result
                            && applied.changed_state
                        {
                            rows.push((core.now_ms(), LogEntry::Command { command: *cmd }));
                            if let Some(m) = module {
                                modules.push(m);
                            }
                        }
                        replies.push((reply, result.map(|a| a.answer)));
                    }
                }
            }
            (core.take_changed(), core.next_deadline_ms())
        };
        if !rows.is_empty() {
            // The core has already applied these; if they cannot be made durable the
            // exchange must stop rather than answer from a state the disk does not hold.
            if let Err(e) = store.append(&rows, &modules) {
                tracing::error!(error = %e, "commit failed; stopping the exchange");
                panic!("commit to SQLite failed: {e}");
            }
            metrics.commands_committed.fetch_add(rows.len() as u64, Ordering::Relaxed);
            metrics.commit_groups.fetch_add(1, Ordering::Relaxed);
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        for id in &changed {
            notifier.notify(id);
        }
        for done in ticks {
            let _ = done.send(());
        }
        next_deadline.send_if_modified(|d| {
            let modified = *d != next;
            *d = next;
            modified
        });
    }
    tracing::info!("writer stopped");
}

/// Sleeps until the next deadline and asks the writer to fire it.
async fn timer_loop(
    jobs: mpsc::SyncSender<Job>,
    mut next_deadline: watch::Receiver<Option<u64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let next = *next_deadline.borrow_and_update();
        let sleep = match next {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {
                if next.is_some() {
                    // Wait until the writer has fired it, then look at the next deadline.
                    let (done, fired) = oneshot::channel();
                    if jobs.try_send(Job::Tick(done)).is_err() || fired.await.is_err() {
                        return;
                    }
                }
            }
            r = next_deadline.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

// ---------- signatures ----------

/// The exchange's signature check: the envelope's address must be a compressed-key
/// account, and its signature is checked through the shared [`KeyCache`] (a recovery for
/// an address's first request, then its cached key, then a table of multiples).
struct Signatures(KeyCache);

impl Default for Signatures {
    fn default() -> Signatures {
        Signatures(KeyCache::new(KEY_CACHE_MAX, KEY_TABLES_MAX, KEY_TABLE_AFTER_USES))
    }
}

impl Signatures {
    fn verify(&self, env: &Envelope, metrics: &Metrics) -> ApiResult<Address> {
        let unauthorized = |m: String| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", m);
        let address: Address = env.address.parse().map_err(|e| unauthorized(format!("{e}")))?;
        let sig = CompactSignature::from_base64(&env.signature)
            .map_err(|e| unauthorized(e.to_string()))?;
        if !sig.compressed {
            return Err(unauthorized(
                "accounts are compressed-key addresses; the signature's header says uncompressed"
                    .into(),
            ));
        }
        let checked = self
            .0
            .verify(&address, &message_hash(&env.message), &sig)
            .map_err(|e| unauthorized(e.to_string()))?;
        let counter = match checked {
            Checked::Table | Checked::Key => &metrics.signature_cache_hits,
            Checked::Recovered => &metrics.signature_recoveries,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(address)
    }
}

// ---------- rate limit ----------

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per client IP: `rate` requests per second, bursts up to twice that.
struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    fn allow(&self, ip: IpAddr) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let burst = self.rate * 2.0;
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= RATE_LIMIT_IPS_MAX && !buckets.contains_key(&ip) {
            // Forget buckets that have refilled: they carry no information.
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate < burst
            });
            if buckets.len() >= RATE_LIMIT_IPS_MAX {
                return false;
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

// ---------- funding quota ----------

/// The source a funding quota counts: the IP, an IPv6 address by its /64 (one site's
/// prefix: a host there can take any address in it).
fn funding_source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// How many accounts seen for the first time get the starting capital, per source and
/// [`FUNDING_WINDOW`] (PROTOCOL §3): a fixed window per source, `per_window` slots in it.
/// Shell state only: the core logs each decision in the bid command (`funded`), so
/// replay never asks it. A restart starts every window afresh.
struct FundingQuota {
    per_window: u32,
    /// source → (window start, slots taken in it)
    sources: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FundingQuota {
    /// Take a slot for `ip` if its window has one left; false if not (or if the table
    /// of sources is full of live windows: fail closed, no free money).
    fn take(&self, ip: IpAddr) -> bool {
        if self.per_window == 0 {
            return true;
        }
        let (src, now) = (funding_source(ip), Instant::now());
        let mut sources = self.sources.lock().expect("funding quota lock");
        if sources.len() >= FUNDING_IPS_MAX && !sources.contains_key(&src) {
            sources.retain(|_, (start, _)| now.duration_since(*start) < FUNDING_WINDOW);
            if sources.len() >= FUNDING_IPS_MAX {
                return false;
            }
        }
        let (start, taken) = sources.entry(src).or_insert((now, 0));
        if now.duration_since(*start) >= FUNDING_WINDOW {
            (*start, *taken) = (now, 0);
        }
        if *taken >= self.per_window {
            return false;
        }
        *taken += 1;
        true
    }

    /// Give back a slot taken for a bid that was refused (it funded nobody).
    fn give_back(&self, ip: IpAddr) {
        if self.per_window == 0 {
            return;
        }
        let mut sources = self.sources.lock().expect("funding quota lock");
        if let Some((_, taken)) = sources.get_mut(&funding_source(ip)) {
            *taken = taken.saturating_sub(1);
        }
    }
}

async fn rate_limit(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if let Some(ip) = ip
        && !st.rate.allow(ip)
    {
        st.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address; slow down",
        )
        .into_response();
    }
    next.run(req).await
}

// ---------- state and routes ----------

struct AppState {
    core: Arc<Mutex<Core>>,
    jobs: mpsc::SyncSender<Job>,
    notifier: Arc<Notifier>,
    keys: Signatures,
    reader: Mutex<Reader>,
    metrics: Arc<Metrics>,
    rate: RateLimiter,
    funding: FundingQuota,
    shutdown: watch::Receiver<bool>,
    /// One evidence upload at a time ([`tx_evidence`]).
    evidence: tokio::sync::Semaphore,
}

impl AppState {
    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().expect("core lock poisoned: the exchange stopped on a broken invariant")
    }

    async fn submit(
        &self,
        cmd: Command,
        msg: Option<Message>,
        module: Option<(Hash32, Vec<u8>)>,
    ) -> ApiResult<Answer> {
        let (reply, rx) = oneshot::channel();
        // Never blocks: every job comes from a request (at most CONCURRENT_REQUESTS_MAX at
        // once, each waiting for its answer) or from the timer (one at a time).
        self.jobs
            .try_send(Job::Apply { cmd: Box::new(cmd), msg: msg.map(Box::new), module, reply })
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the writer's queue is full; try again",
                ),
                mpsc::TrySendError::Disconnected(_) => ApiError::internal("writer is gone"),
            })?;
        let result = rx.await.map_err(|_| ApiError::internal("writer dropped the request"))?;
        match result {
            Ok(a) => Ok(a),
            Err(e) => {
                self.metrics.requests_refused.fetch_add(1, Ordering::Relaxed);
                Err(e.into())
            }
        }
    }
}

/// The body of a signed request, parsed strictly (unknown or duplicate keys refused).
fn parse_json<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "too_large", "request body is too large")
        } else {
            ApiError::bad_request("bad_request", r.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
}

fn parse_id(s: &str) -> ApiResult<Id> {
    Id::new(s).map_err(|e| ApiError::bad_request("bad_id", e.to_string()))
}

fn parse_hash(s: &str) -> ApiResult<Hash32> {
    s.parse().map_err(|e: bitwrk_protocol::hash::HashParseError| {
        ApiError::bad_request("bad_id", e.to_string())
    })
}

/// Check the envelope's signature and its message's form; the core checks the rest.
fn verify(st: &AppState, env: Envelope) -> ApiResult<(Signed, Message)> {
    let msg = Message::parse(&env.message)
        .map_err(|e| ApiError::bad_request("bad_message", e.to_string()))?;
    let signer = st.keys.verify(&env, &st.metrics)?;
    Ok((Signed { signer, text: env.message }, msg))
}

fn router(state: Arc<AppState>) -> Router {
    let evidence = Router::new()
        .route("/v1/tx/{id}/evidence", axum::routing::put(tx_evidence))
        .layer(DefaultBodyLimit::disable());
    let publish = Router::new()
        .route("/v1/articles", post(publish_article).get(list_articles))
        .layer(DefaultBodyLimit::max(PUBLISH_BODY_BYTES_MAX));
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/bids", post(place_bid))
        .route("/v1/bids/{id}", get(get_bid))
        .route("/v1/bids/{id}/cancel", post(cancel_bid))
        .route("/v1/bids/{id}/events", get(bid_events))
        .route("/v1/tx/{id}", get(get_tx).post(tx_action))
        .route("/v1/tx/{id}/events", get(tx_events))
        .route("/v1/tx/{id}/key", post(tx_key))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/ledger", get(ledger))
        .route("/v1/articles/{id}", get(article))
        .route("/v1/articles/{id}/module", get(module))
        .route("/v1/articles/{id}/book", get(book))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .merge(publish)
        .merge(evidence)
        .fallback(|| async { ApiError::not_found("no such endpoint; see GET /openapi.json") })
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn(json_errors))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(ConcurrencyLimitLayer::new(CONCURRENT_REQUESTS_MAX))
        .with_state(state)
}

pub(crate) fn info_of(core: &Core) -> Info {
    let r = core.rules();
    Info {
        exchange_id: r.exchange_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: bitwrk_protocol::message::PROTOCOL_VERSION,
        fee_bps: r.fee_bps,
        bid_lifetime_s: r.bid_lifetime_ms / 1000,
        starting_capital_sat: r.starting_capital,
        deadlines: r.deadlines.clone(),
        limits: ApiLimits {
            body_bytes_max: BODY_BYTES_MAX as u64,
            module_bytes_max: MODULE_BYTES_MAX as u64,
            valid_ahead_s_max: VALID_AHEAD_S_MAX,
            wait_ms_max: WAIT_MS_MAX,
        },
        now_ms: now_ms(),
    }
}

async fn info(State(st): State<Arc<AppState>>) -> Json<Info> {
    Json(info_of(&st.core()))
}

async fn place_bid(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let env: Envelope = parse_json(body)?;
    let (signed, msg) = verify(&st, env)?;
    // A signer seen for the first time is funded only within its source's quota. A known
    // account takes no slot; two first bids of one key at once may take two (one wasted).
    let funded = !st.core().knows_account(&signed.signer) && st.funding.take(peer.ip());
    let cmd = Command::Bid { signed, bid_id: Id::random("b"), tx_id: Id::random("t"), funded };
    let answer = st.submit(cmd, Some(msg), None).await;
    if funded && answer.is_err() {
        st.funding.give_back(peer.ip());
    }
    match answer? {
        Answer::Bid(b) => {
            st.metrics.bids_accepted.fetch_add(1, Ordering::Relaxed);
            Ok(Json(b).into_response())
        }
        other => Err(ApiError::internal(format!("bid answered with {other:?}"))),
    }
}

async fn cancel_bid(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bid = parse_id(&id)?;
    let env: Envelope = parse_json(body)?;
    let (signed, msg) = verify(&st, env)?;
    match st.submit(Command::Cancel { signed, bid }, Some(msg), None).await? {
        Answer::Bid(b) => Ok(Json(b).into_response()),
        other => Err(ApiError::internal(format!("cancel answered with {other:?}"))),
    }
}

async fn tx_action(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let tx = parse_id(&id)?;
    let env: Envelope = parse_json(body)?;
    let (signed, msg) = verify(&st, env)?;
    match st.submit(Command::Tx { signed, tx }, Some(msg), None).await? {
        Answer::Tx(t) => Ok(Json(t).into_response()),
        Answer::Receipt(r) => Ok(Json(r).into_response()),
        other => Err(ApiError::internal(format!("tx answered with {other:?}"))),
    }
}

/// `POST /v1/tx/{id}/key`: the buyer's signed read of the result key (after its receipt).
async fn tx_key(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let tx = parse_id(&id)?;
    let env: Envelope = parse_json(body)?;
    let (signed, msg) = verify(&st, env)?;
    let view = st.core().key_read(&signed.signer, &msg, &tx, now_ms())?;
    Ok(Json(view).into_response())
}

/// `PUT /v1/tx/{id}/evidence`: the ciphertext of a disputed result, raw bytes, from
/// anyone (it is content-addressed: only the bytes whose SHA256 both parties signed
/// count). Hashed while it streams in, capped at the largest result; then decrypted with
/// the committed key and checked against the manifest on the blocking pool, and the
/// verdict goes to the core as a logged command.
async fn tx_evidence(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    use futures_util::StreamExt as _;
    use sha2::Digest as _;
    let tx = parse_id(&id)?;
    let Some(dispute) = st.core().dispute(&tx) else {
        return Err(match st.core().tx(&tx) {
            None => CoreError::UnknownTx(tx).into(),
            Some(t) => match t.settlement {
                Some(settlement) => CoreError::TxClosed { tx, settlement }.into(),
                None => CoreError::WrongPhase { action: "evidence", phase: t.phase }.into(),
            },
        });
    };
    let (key, committed, article) = (dispute.key, dispute.enc_result_hash, dispute.article);
    // Only the two parties know the transaction's secret: a stranger cannot hold the
    // upload slot of someone else's dispute.
    let given = headers.get(TRANSFER_AUTH_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !transfer_auth_matches(&dispute.transfer_auth, given) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("evidence comes from the transaction's parties: send {TRANSFER_AUTH_HEADER}"),
        ));
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(n) if n <= EVIDENCE_BYTES_MAX => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("evidence over {EVIDENCE_BYTES_MAX} bytes (the largest result + tag)"),
            ));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "evidence needs a Content-Length",
            ));
        }
    }
    // Few evidence uploads at once for the whole exchange: each holds up to a GiB.
    let Ok(_permit) = st.evidence.try_acquire() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "another evidence upload is in progress; try again",
        ));
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("bad_request", e.to_string()))?;
        if (buf.len() + chunk.len()) as u64 > EVIDENCE_BYTES_MAX {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("evidence over {EVIDENCE_BYTES_MAX} bytes (the largest result + tag)"),
            ));
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
    }
    let found = Hash32(hasher.finalize().into());
    if found != committed {
        return Err(CoreError::WrongEvidence { found, committed }.into());
    }
    let manifest = st
        .core()
        .article(&article)
        .ok_or_else(|| ApiError::internal("a transaction's article is gone"))?
        .manifest;
    let tx2 = tx.clone();
    let judged = tokio::task::spawn_blocking(move || {
        bitwrk_protocol::work::check_result(&manifest, &key, &tx2, buf).map(|_| ())
    })
    .await
    .map_err(ApiError::internal)?;
    let seller_fault = judged.err().map(|f| f.to_string());
    tracing::info!(tx = %tx, seller_fault = ?seller_fault, "dispute decided by evidence");
    let cmd = Command::Verdict { tx, enc_result_hash: found, seller_fault };
    match st.submit(cmd, None, None).await? {
        Answer::Tx(t) => Ok(Json(t).into_response()),
        other => Err(ApiError::internal(format!("verdict answered with {other:?}"))),
    }
}

/// Answer at once, or (with `after_version`) when the version rises above it, or when
/// `wait_ms` has passed, whichever comes first.
async fn long_poll<T: serde::Serialize>(
    st: &AppState,
    id: &Id,
    q: Result<Query<WaitQuery>, QueryRejection>,
    read: impl Fn(&Core) -> Option<(T, u64)>,
    what: &str,
) -> ApiResult<Response> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let mut changes = st.notifier.subscribe(id);
    let mut shutdown = st.shutdown.clone();
    let (mut view, mut version) =
        read(&st.core()).ok_or_else(|| ApiError::not_found(format!("no {what} {id}")))?;
    if let Some(after) = q.after_version {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(WAIT_MS_DEFAULT).min(WAIT_MS_MAX));
        let until = tokio::time::Instant::now() + wait;
        while version <= after {
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(until) => break,
                _ = shutdown.changed() => break,
            }
            (view, version) = read(&st.core()).expect("bids and transactions are never removed");
        }
    }
    Ok(Json(view).into_response())
}

async fn get_bid(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    long_poll(
        &st,
        &id,
        q,
        |c| {
            c.bid(&id).map(|b| {
                let v = b.version;
                (b, v)
            })
        },
        "bid",
    )
    .await
}

async fn get_tx(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    long_poll(
        &st,
        &id,
        q,
        |c| {
            c.tx(&id).map(|t| {
                let v = t.version;
                (t, v)
            })
        },
        "transaction",
    )
    .await
}

/// What an event stream reads: the view as JSON, its version, and whether it is final
/// (no further change will come, so the stream ends after sending it).
type EventRead = fn(&Core, &Id) -> Option<(String, u64, bool)>;

/// A server-sent event stream of a bid's or transaction's versions above
/// `after_version` (default 0: the current one at once), until it is final, the
/// stream has been open [`SSE_STREAM_MAX`], or the exchange shuts down.
fn event_stream(
    st: Arc<AppState>,
    id: Id,
    q: Result<Query<WaitQuery>, QueryRejection>,
    read: EventRead,
    name: &'static str,
) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Query(q) = q.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let changes = st.notifier.subscribe(&id);
    if read(&st.core(), &id).is_none() {
        return Err(ApiError::not_found(format!("no {name} {id}")));
    }
    let until = tokio::time::Instant::now() + SSE_STREAM_MAX;
    let shutdown = st.shutdown.clone();
    let start = (st, id, changes, shutdown, q.after_version.unwrap_or(0), false);
    let stream = futures_util::stream::unfold(
        start,
        move |(st, id, mut changes, mut shutdown, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let (json, version, fin) = read(&st.core(), &id)?;
                if version > last {
                    let event = Event::default().event(name).id(version.to_string()).data(json);
                    return Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (st, id, changes, shutdown, version, fin),
                    ));
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep_until(until) => return None,
                    _ = shutdown.changed() => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

async fn bid_events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    event_stream(
        st,
        id,
        q,
        |c, id| {
            c.bid(id).map(|b| {
                let fin = b.state != bitwrk_protocol::api::BidState::Open;
                (serde_json::to_string(&b).expect("views serialise"), b.version, fin)
            })
        },
        "bid",
    )
}

async fn tx_events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    event_stream(
        st,
        id,
        q,
        |c, id| {
            // Final once settled and no deadline remains (terminal phase or deadline passed).
            c.tx(id).map(|t| {
                let fin = t.settlement.is_some() && t.deadline_ms.is_none();
                (serde_json::to_string(&t).expect("views serialise"), t.version, fin)
            })
        },
        "tx",
    )
}

async fn account(
    State(st): State<Arc<AppState>>,
    Path(address): Path<String>,
) -> ApiResult<Response> {
    let address: Address =
        address.parse().map_err(|e: bitwrk_protocol::identity::IdentityError| {
            ApiError::bad_request("bad_address", e.to_string())
        })?;
    Ok(Json(st.core().account(&address)).into_response())
}

async fn ledger(State(st): State<Arc<AppState>>) -> Response {
    Json(st.core().ledger_view()).into_response()
}

async fn publish_article(
    State(st): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req: PublishRequest = parse_json(body)?;
    let (signed, msg) = verify(&st, req.envelope)?;
    let Operation::Publish { module_sha256, size, .. } = msg.op.clone() else {
        return Err(ApiError::bad_request(
            "wrong_op",
            format!("this endpoint takes op=publish, the message has op={}", msg.op.name()),
        ));
    };
    let bad_module = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_module", m);
    // The manifest must name these bytes before they are worth checking (the core checks
    // the manifest fully; this only orders the answers sensibly).
    if req.manifest.runtime == Runtime::Wasm && req.manifest.module_sha256 != Some(module_sha256) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_manifest",
            "the message's module_sha256 differs from the manifest's",
        ));
    }
    let manifest_bytes = req.manifest.canonical_json().len();
    if manifest_bytes > MANIFEST_BYTES_MAX {
        // Refused before the module is checked; the core checks this too.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_manifest",
            format!(
                "the canonical manifest has {manifest_bytes} bytes, at most {MANIFEST_BYTES_MAX}"
            ),
        ));
    }
    if req.module_base64.len() > MODULE_BYTES_MAX / 3 * 4 + 4 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("modules are limited to {MODULE_BYTES_MAX} bytes"),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&req.module_base64)
        .map_err(|e| bad_module(format!("module_base64 is not base64: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(bad_module(format!(
            "the message says size={size}, the module has {} bytes",
            bytes.len()
        )));
    }
    if Hash32::of(&bytes) != module_sha256 {
        return Err(bad_module(format!(
            "the module's SHA256 is {}, the message says {module_sha256}",
            Hash32::of(&bytes)
        )));
    }
    let module = match req.manifest.runtime {
        Runtime::Wasm => {
            let check = bytes.clone();
            tokio::task::spawn_blocking(move || bitwrk_runtime::imports::check_component(&check))
                .await
                .map_err(ApiError::internal)?
                .map_err(|e| {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "module_refused", e.to_string())
                })?;
            Some((module_sha256, bytes))
        }
        Runtime::NativeBlender { .. } => None,
    };
    match st.submit(Command::Publish { signed, manifest: req.manifest }, Some(msg), module).await? {
        Answer::Article(a) => Ok(Json(a).into_response()),
        other => Err(ApiError::internal(format!("publish answered with {other:?}"))),
    }
}

/// `GET /v1/articles?after=<id>&limit=N`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticlesQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// One page of the registry in id order. The core is locked only to copy at most
/// [`ARTICLES_PAGE_MAX`] entries; they are serialised after the lock is released, so a
/// listing never holds up the writer.
async fn list_articles(
    State(st): State<Arc<AppState>>,
    query: Result<Query<ArticlesQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let after = q.after.as_deref().map(parse_hash).transpose()?;
    let limit = q.limit.unwrap_or(ARTICLES_PAGE_MAX);
    if !(1..=ARTICLES_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be 1..={ARTICLES_PAGE_MAX}"),
        ));
    }
    let page = st.core().articles_page(after.as_ref(), limit);
    Ok(Json(page).into_response())
}

async fn article(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_hash(&id)?;
    let a =
        st.core().article(&id).ok_or_else(|| ApiError::not_found(format!("no article {id}")))?;
    Ok(Json(a).into_response())
}

async fn module(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_hash(&id)?;
    let a =
        st.core().article(&id).ok_or_else(|| ApiError::not_found(format!("no article {id}")))?;
    let Some(hash) = a.manifest.module_sha256 else {
        return Err(ApiError::not_found(format!("article {id} is native and has no module")));
    };
    let st2 = st.clone();
    let bytes =
        tokio::task::spawn_blocking(move || st2.reader.lock().expect("reader lock").module(&hash))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::internal(format!("module {hash} of a published article is missing"))
            })?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    Ok(resp)
}

async fn book(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = parse_hash(&id)?;
    let b = st.core().book(&id).ok_or_else(|| ApiError::not_found(format!("no article {id}")))?;
    Ok(Json(b).into_response())
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let l = st.core().ledger_view();
    let m = &st.metrics;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, v: u64| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    };
    put("bitwrk_ledger_accounts", "gauge", "Accounts seen.", l.accounts);
    put("bitwrk_ledger_created_sat", "gauge", "All money ever created.", l.created_sat.0);
    put("bitwrk_ledger_available_sat", "gauge", "Sum of available balances.", l.available_sat.0);
    put(
        "bitwrk_ledger_blocked_sat",
        "gauge",
        "Sum of blocked money (open buy bids, escrow).",
        l.blocked_sat.0,
    );
    put("bitwrk_ledger_fees_sat", "gauge", "The fee account.", l.fees_sat.0);
    put("bitwrk_open_bids", "gauge", "Bids resting in the books.", l.open_bids);
    put("bitwrk_open_txs", "gauge", "Transactions not settled.", l.open_txs);
    put("bitwrk_bids_total", "counter", "Bids ever accepted.", l.bids_total);
    put("bitwrk_txs_total", "counter", "Transactions ever matched.", l.txs_total);
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    put(
        "bitwrk_commands_committed_total",
        "counter",
        "Commands committed to SQLite since start.",
        c(&m.commands_committed),
    );
    put(
        "bitwrk_commit_groups_total",
        "counter",
        "SQLite commits (each one group of commands).",
        c(&m.commit_groups),
    );
    put(
        "bitwrk_bid_requests_accepted_total",
        "counter",
        "Bid requests answered 200 since start.",
        c(&m.bids_accepted),
    );
    put(
        "bitwrk_requests_refused_total",
        "counter",
        "Signed requests the core refused since start.",
        c(&m.requests_refused),
    );
    put(
        "bitwrk_signature_recoveries_total",
        "counter",
        "Signatures checked by key recovery.",
        c(&m.signature_recoveries),
    );
    put(
        "bitwrk_signature_cache_hits_total",
        "counter",
        "Signatures checked with a cached key.",
        c(&m.signature_cache_hits),
    );
    put(
        "bitwrk_rate_limited_total",
        "counter",
        "Requests refused by the per-IP rate limit.",
        c(&m.rate_limited),
    );
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

// ---------- start ----------

fn rules_of(config: &Config, exchange_id: String) -> Rules {
    Rules {
        exchange_id,
        fee_bps: config.fee_bps,
        bid_lifetime_ms: config.bid_lifetime_s * 1000,
        deadlines: bitwrk_protocol::api::Deadlines {
            establishing_s: config.establishing_s,
            transmitting_s: config.transmitting_s,
            working_s: config.working_s,
            committed_s: config.committed_s,
            unverified_s: config.unverified_s,
            result_disputed_s: config.result_disputed_s,
        },
        starting_capital: bitwrk_protocol::Sat(config.starting_capital_sat),
    }
}

/// Open the database and rebuild the core from its log. Returns the store, the core, and
/// the number of log rows replayed.
fn load(config: &Config) -> anyhow::Result<(Store, Core, u64)> {
    use anyhow::Context as _;
    if let Some(dir) = config.db_path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut store = Store::open(&config.db_path)
        .with_context(|| format!("opening {}", config.db_path.display()))?;
    let exchange_id = store.exchange_id()?;
    let wanted = rules_of(config, exchange_id);
    let mut core = Core::new(wanted.clone());
    let mut logged_rules: Option<Rules> = None;
    let mut failed: Option<String> = None;
    core.set_replaying(true);
    let n = store.load(|now, entry| {
        if failed.is_some() {
            return;
        }
        match entry {
            LogEntry::Rules { rules } => {
                core.set_rules(rules.clone());
                logged_rules = Some(rules);
            }
            LogEntry::Command { command } => {
                if let Err(e) = core.apply(&command, now) {
                    failed = Some(format!("a logged command no longer applies ({e}): {command:?}"));
                }
            }
        }
    })?;
    core.set_replaying(false);
    if let Some(f) = failed {
        anyhow::bail!("replaying {}: {f}", config.db_path.display());
    }
    let _ = core.take_changed();
    if logged_rules.as_ref() != Some(&wanted) {
        core.set_rules(wanted.clone());
        store.append(&[(core.now_ms(), LogEntry::Rules { rules: wanted })], &[])?;
    }
    core.advance(now_ms());
    core.check_full();
    Ok((store, core, n))
}

/// Run the exchange on `listener` until `shutdown` completes. See [`crate::serve`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    config.validate()?;
    let cfg = config.clone();
    let (store, core, replayed) = tokio::task::spawn_blocking(move || {
        // The generator's table for cached-key verification, built now, not on a request.
        bitwrk_protocol::fast_verify::warm_up();
        load(&cfg)
    })
    .await??;
    let reader = Reader::open(&config.db_path).context("opening a reader connection")?;
    let ledger = core.ledger_view();
    let exchange_id = core.rules().exchange_id.clone();
    let next = core.next_deadline_ms();
    let core = Arc::new(Mutex::new(core));
    let notifier = Arc::new(Notifier::new());
    let metrics = Arc::new(Metrics::default());
    let (jobs, rx) = mpsc::sync_channel(WRITER_QUEUE_MAX);
    let commit_window = Duration::from_micros(config.commit_window_us);
    let (deadline_tx, deadline_rx) = watch::channel(next);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // If the writer stops on a broken invariant or a failed commit, the whole exchange
    // stops (loudly) instead of serving reads from a state it can no longer persist.
    let (writer_died_tx, writer_died) = oneshot::channel::<()>();
    let writer = {
        let (core, notifier, metrics) = (core.clone(), notifier.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("bitwrk-exchange-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    writer_loop(rx, store, core, notifier, deadline_tx, metrics, commit_window)
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let _ = writer_died_tx.send(());
                    std::panic::resume_unwind(panic);
                }
            })
            .context("starting the writer thread")?
    };
    let timer = tokio::spawn(timer_loop(jobs.clone(), deadline_rx, shutdown_rx.clone()));
    let state = Arc::new(AppState {
        core,
        jobs,
        notifier,
        keys: Signatures::default(),
        reader: Mutex::new(reader),
        metrics,
        rate: RateLimiter {
            rate: config.rate_limit_per_s as f64,
            buckets: Mutex::new(HashMap::new()),
        },
        funding: FundingQuota {
            per_window: config.funded_accounts_per_ip_per_hour,
            sources: Mutex::new(HashMap::new()),
        },
        shutdown: shutdown_rx,
        evidence: tokio::sync::Semaphore::new(EVIDENCE_UPLOADS_MAX),
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, exchange = %exchange_id, replayed, accounts = ledger.accounts, open_bids = ledger.open_bids, "exchange listening");
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                Ok(()) = writer_died => tracing::error!("the writer stopped; shutting the exchange down"),
            }
            let _ = shutdown_tx.send(true);
        })
        .await;
    timer.abort();
    let _ = timer.await;
    // Commit everything accepted so far, then stop the writer and wait for it.
    let _ = state.jobs.try_send(Job::Stop);
    drop(state);
    tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    result.context("serving HTTP")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(600);

    #[test]
    fn a_group_that_is_not_busy_takes_only_what_is_queued() {
        let (tx, rx) = mpsc::sync_channel(16);
        tx.send(2).unwrap();
        let mut batch = Vec::new();
        // The sender stays alive: waiting would hang the test for the whole window.
        gather(&rx, 1, |_| false, false, LONG, &mut batch);
        assert_eq!(batch, [1, 2]);
        drop(tx);
    }

    #[test]
    fn a_busy_group_takes_the_jobs_sent_within_its_window() {
        let (tx, rx) = mpsc::sync_channel(16);
        let (started_tx, started_rx) = mpsc::channel();
        let sender = std::thread::spawn(move || {
            // Sent once the writer is inside its window (two seconds, so that a slow
            // machine still sends in time).
            started_rx.recv().unwrap();
            for j in 2..=4 {
                tx.send(j).unwrap();
            }
        });
        let mut batch = Vec::new();
        started_tx.send(()).unwrap();
        gather(&rx, 1, |_| false, true, Duration::from_secs(2), &mut batch);
        sender.join().unwrap();
        assert_eq!(batch, [1, 2, 3, 4]);
    }

    #[test]
    fn a_queued_stop_or_a_full_group_skips_the_window() {
        let (tx, rx) = mpsc::sync_channel(COMMIT_GROUP_MAX + 8);
        tx.send(0).unwrap();
        let mut batch = Vec::new();
        gather(&rx, 7, |&j| j == 0, true, LONG, &mut batch);
        assert_eq!(batch, [7, 0]);
        for j in 0..COMMIT_GROUP_MAX + 5 {
            tx.send(j + 1).unwrap();
        }
        batch.clear();
        gather(&rx, 1, |_| false, true, LONG, &mut batch);
        assert_eq!(batch.len(), COMMIT_GROUP_MAX);
        // The rest stays queued for the next group.
        assert_eq!(rx.try_recv().unwrap(), COMMIT_GROUP_MAX);
        drop(tx);
    }

    #[test]
    fn only_a_high_arrival_rate_holds_groups_open() {
        let window = Duration::from_micros(300);
        let t0 = Instant::now();
        let mut r = ArrivalRate::default();
        r.observe(1, t0);
        assert_eq!(r.expected_within(window), 0.0);
        // One job every 10 ms (100/s): 0.03 expected in 300 µs.
        for i in 1..=50 {
            r.observe(1, t0 + Duration::from_millis(10 * i));
        }
        assert!(r.expected_within(window) < 0.05);
        // Groups of 10 every millisecond (10 000/s): about 3 expected.
        let t1 = t0 + Duration::from_millis(500);
        for i in 1..=50 {
            r.observe(10, t1 + Duration::from_millis(i));
        }
        assert!((r.expected_within(window) - 3.0).abs() < 0.1);
        // A pause of a second lowers the estimate by a fifth per group.
        r.observe(1, t1 + Duration::from_millis(1050));
        assert!(r.expected_within(window) < 2.5);
    }

    #[test]
    fn a_zero_window_never_waits() {
        let (tx, rx) = mpsc::sync_channel(16);
        let mut batch = Vec::new();
        gather(&rx, 1, |_| false, true, Duration::ZERO, &mut batch);
        assert_eq!(batch, [1]);
        drop(tx);
    }
}
