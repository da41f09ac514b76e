//! The host's shared state for the admin UI: activities waiting for permission, mandates
//! (persisted), trades and workers (bounded in-memory history), and a broadcast of every
//! change for the UI's live view. The trading core reports here and asks permission here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::{Address, Hash32, Id, Sat, Side};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

use crate::mandates::{Coverage, Mandate, MandateBook, MandateError, MandateSpec, Origin};

/// Trades kept for the UI: enough for a long rendering session; older finished ones go first.
pub const TRADES_MAX: usize = 1000;
/// Phase events kept per trade (a trade has about ten phases; retries add a few).
pub const TRADE_EVENTS_MAX: usize = 64;
/// Decided activities kept for the UI (pending ones are bounded by [`PENDING_MAX`]).
pub const ACTIVITIES_DONE_MAX: usize = 200;
/// Activities waiting for the user at once: beyond this new requests are refused at
/// once rather than piling up waiting tasks no one will ever look at.
pub const PENDING_MAX: usize = 256;
/// Requests from one origin waiting for permission at once (a proxy buy's origin: its web
/// origin, or this machine's programs when it has no `Origin`). A flood of uncovered buys
/// from one origin is refused beyond this at once and leaves the rest of [`PENDING_MAX`]
/// to others; parked buys give back their proxy slot (see [`Requester`]).
pub const PARKED_PER_ORIGIN_MAX: usize = 16;
/// Worker slots shown (a host runs a handful; this only guards against a runaway caller).
pub const WORKERS_MAX: usize = 1024;
/// How long a request waits for the user's decision before it counts as forbidden. A bid
/// lives 120 s on the exchange once placed, but nothing is placed while we wait, so the
/// user gets a generous five minutes to notice the UI.
pub const PERMISSION_WAIT_DEFAULT: Duration = Duration::from_secs(300);
/// Shortest permission wait `--permission-wait-ms` takes: a seller asks again right after a
/// request lapses, so a shorter wait would fill the log and the UI's history with requests.
pub const PERMISSION_WAIT_MIN_MS: u64 = 1000;
/// Live events buffered per UI subscriber; a slower subscriber gets a fresh snapshot.
pub const EVENTS_CAPACITY: usize = 1024;
/// The mandates file in the data dir.
pub const MANDATES_FILE: &str = "mandates.json";

/// What the trading core asks permission for: one bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRequest {
    pub article: Hash32,
    pub article_name: String,
    pub side: Side,
    pub price: Sat,
}

/// Why a request was not permitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    #[error("the user forbade it")]
    ByUser,
    #[error("no decision within {0} s")]
    TimedOut(u64),
    #[error("{PENDING_MAX} activities are already waiting for permission")]
    TooManyPending,
    #[error("{PARKED_PER_ORIGIN_MAX} requests from {0} are already waiting for permission")]
    TooManyFromOrigin(String),
}

/// Who asks, for a request that may wait for the user (a proxy buy): set with
/// [`REQUESTER`] around the buy. A request that has to wait counts against its origin's
/// [`PARKED_PER_ORIGIN_MAX`] and gives back the slot it holds, so buys waiting for a click
/// never hold up the ones a mandate covers.
pub struct Requester {
    pub origin: String,
    slot: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl Requester {
    pub fn new(origin: String, slot: Option<tokio::sync::OwnedSemaphorePermit>) -> Arc<Requester> {
        Arc::new(Requester { origin, slot: Mutex::new(slot) })
    }

    fn release_slot(&self) {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

tokio::task_local! {
    /// The requester of the permission requests made inside this scope.
    pub static REQUESTER: Arc<Requester>;
}

/// Where an activity stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityState {
    /// Waiting for the user.
    Pending,
    /// Allowed, by the user or (when `mandate` is set) by a mandate.
    Permitted,
    Forbidden,
    /// Nobody decided within the wait; treated as forbidden.
    TimedOut,
    /// The requester stopped waiting (its task was cancelled).
    Withdrawn,
}

/// A request for permission as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: u64,
    pub article: Hash32,
    pub article_name: String,
    pub side: Side,
    pub price_sat: Sat,
    pub state: ActivityState,
    pub created_ms: u64,
    pub decided_ms: Option<u64>,
    /// The mandate that permitted it, if one did.
    pub mandate: Option<u64>,
}

/// One phase a trade went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeEvent {
    pub phase: String,
    pub at_ms: u64,
}

/// A trade (one bid and, once matched, its transaction) as the UI shows it.
///
/// [`HostState::trade_update`] upserts by `key`. `started_ms` is kept from the first
/// report. When `events` is empty, the stored events are kept and `(phase, updated_ms)`
/// is appended if the phase changed, so the caller may simply report the current phase;
/// a non-empty `events` replaces the stored list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeInfo {
    /// Stable key: the bid id (or the tx id for trades known only by it).
    pub key: String,
    pub article: Hash32,
    pub article_name: String,
    pub side: Side,
    pub price_sat: Sat,
    /// The exchange's fee on the trade (paid by the buyer), once matched.
    #[serde(default)]
    pub fee_sat: Sat,
    pub bid: Option<Id>,
    pub tx: Option<Id>,
    /// When permission (a click or a mandate) let the trade go ahead: the UI's "took"
    /// counts from here, not from `started_ms`, so the wait for permission is not in it.
    #[serde(default)]
    pub permitted_ms: Option<u64>,
    /// Free text: an exchange phase (`working`, ...) or a local step (`bidding`, `uploading`).
    pub phase: String,
    pub started_ms: u64,
    pub updated_ms: u64,
    pub finished: bool,
    /// How it ended, in words (e.g. "result accepted").
    pub outcome: Option<String>,
    /// What went wrong, if anything did.
    pub error: Option<String>,
    #[serde(default)]
    pub events: Vec<TradeEvent>,
}

/// One selling slot of this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub slot: u32,
    pub article: Hash32,
    pub article_name: String,
    pub busy: bool,
    /// The transaction it works on, when busy.
    pub tx: Option<Id>,
    /// When the current state began.
    pub started_ms: Option<u64>,
}

/// A change, pushed to the UI (`/api/events`, event name = `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UiEvent {
    Activity {
        activity: Activity,
    },
    Trade {
        trade: TradeInfo,
    },
    Worker {
        worker: WorkerInfo,
    },
    /// The whole list after any change (it is short).
    Mandates {
        mandates: Vec<Mandate>,
    },
}

/// The whole state the UI shows, sent first on `/api/events` and again after a lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub activities: Vec<Activity>,
    pub trades: Vec<TradeInfo>,
    pub workers: Vec<WorkerInfo>,
    pub mandates: Vec<Mandate>,
}

impl UiEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            UiEvent::Activity { .. } => "activity",
            UiEvent::Trade { .. } => "trade",
            UiEvent::Worker { .. } => "worker",
            UiEvent::Mandates { .. } => "mandates",
        }
    }
}

/// Errors of the state's user-facing operations (the API maps them to 4xx/5xx).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no {0}")]
    NotFound(String),
    #[error("activity {0} is no longer pending")]
    NotPending(u64),
    #[error(transparent)]
    Mandate(#[from] MandateError),
    #[error("could not save mandates: {0}")]
    Persist(String),
}

#[derive(Default)]
struct Trades {
    by_key: HashMap<String, TradeInfo>,
    /// Keys, oldest first.
    order: VecDeque<String>,
}

struct Inner {
    mandates: MandateBook,
    pending: BTreeMap<u64, (Activity, oneshot::Sender<Result<(), Forbidden>>)>,
    /// The origin of pending activities made under a [`REQUESTER`] (pruned when one parks).
    parked_origins: HashMap<u64, String>,
    /// Decided activities, oldest first.
    done: VecDeque<Activity>,
    next_activity: u64,
    trades: Trades,
    workers: BTreeMap<u32, WorkerInfo>,
}

/// Everything the UI shows and the trading core reports to. Shared as `Arc<HostState>`.
pub struct HostState {
    pub address: Address,
    pub exchange: ExchangeClient,
    mandates_path: PathBuf,
    permission_wait_ms: AtomicU64,
    /// How long a buy waits for the user before it answers `permission_required`.
    buy_permission_wait_ms: AtomicU64,
    /// The admin UI's address, once the internal port is bound: named in every request
    /// for permission, so the user knows where to give it.
    ui_url: Mutex<Option<String>>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<UiEvent>,
}

/// Wall-clock now in unix ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HostState {
    /// Load the mandates from `data_dir/mandates.json` (none if the file is missing). A file
    /// that is there but unreadable is an error and is left as it is.
    pub fn new(
        data_dir: &Path,
        address: Address,
        exchange: ExchangeClient,
    ) -> anyhow::Result<Arc<HostState>> {
        let mandates_path = data_dir.join(MANDATES_FILE);
        let mandates = match std::fs::read_to_string(&mandates_path) {
            Ok(text) => MandateBook::from_json(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a valid mandates file ({e}); fix or remove it",
                    mandates_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MandateBook::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", mandates_path.display()));
            }
        };
        tracing::info!(count = mandates.mandates.len(), path = %mandates_path.display(), "mandates loaded");
        let (events, _) = broadcast::channel(EVENTS_CAPACITY);
        Ok(Arc::new(HostState {
            address,
            exchange,
            mandates_path,
            permission_wait_ms: AtomicU64::new(PERMISSION_WAIT_DEFAULT.as_millis() as u64),
            buy_permission_wait_ms: AtomicU64::new(
                crate::limits::BUY_PERMISSION_WAIT.as_millis() as u64
            ),
            ui_url: Mutex::new(None),
            inner: Mutex::new(Inner {
                mandates,
                pending: BTreeMap::new(),
                parked_origins: HashMap::new(),
                done: VecDeque::new(),
                next_activity: 1,
                trades: Trades::default(),
                workers: BTreeMap::new(),
            }),
            events,
        }))
    }

    /// How long [`request_permission`](Self::request_permission) waits for the user
    /// (default [`PERMISSION_WAIT_DEFAULT`]).
    pub fn set_permission_wait(&self, wait: Duration) {
        self.permission_wait_ms.store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long a buy waits for the user's permission (default
    /// [`BUY_PERMISSION_WAIT`](crate::limits::BUY_PERMISSION_WAIT)); never longer than the
    /// permission wait itself.
    pub fn set_buy_permission_wait(&self, wait: Duration) {
        self.buy_permission_wait_ms.store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// See [`set_buy_permission_wait`](Self::set_buy_permission_wait).
    pub fn buy_permission_wait(&self) -> Duration {
        Duration::from_millis(self.buy_permission_wait_ms.load(Ordering::Relaxed))
    }

    /// Where the admin UI is (`http://127.0.0.1:8081/`), for the permission hints.
    pub fn set_ui_url(&self, url: String) {
        *self.ui_url.lock().unwrap_or_else(|p| p.into_inner()) = Some(url);
    }

    /// What to do about a request waiting for permission, in words: where to permit it
    /// and the `--mandate` flag that would have covered it (article by name).
    pub fn permission_hint(&self, req: &ActivityRequest) -> String {
        let ui = self
            .ui_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the admin UI".to_string());
        let limit = match req.side {
            Side::Buy => "at most",
            Side::Sell => "at least",
        };
        format!(
            "{side}ing {name} for {limit} {price} sat needs your permission: permit it at {ui} \
             or start the host with --mandate {side}:{name}:{price}",
            side = req.side,
            name = req.article_name,
            price = req.price.0,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, e: UiEvent) {
        // No subscriber is fine: nobody is looking.
        let _ = self.events.send(e);
    }

    /// Live updates for the UI.
    pub fn subscribe(&self) -> broadcast::Receiver<UiEvent> {
        self.events.subscribe()
    }

    /// Everything the UI shows, taken under the same lock that orders the events: every
    /// change after this snapshot arrives as an event on `rx` after it, so a view that
    /// applies the snapshot and then the events never goes back to an older state.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Self::snapshot_locked(&inner)
    }

    /// A subscription and the snapshot to start it from, taken atomically.
    pub fn subscribe_with_snapshot(&self) -> (Snapshot, broadcast::Receiver<UiEvent>) {
        let inner = self.lock();
        let rx = self.events.subscribe();
        (Self::snapshot_locked(&inner), rx)
    }

    fn snapshot_locked(inner: &Inner) -> Snapshot {
        Snapshot {
            activities: Self::activities_locked(inner),
            trades: Self::trades_locked(inner),
            workers: Self::workers_locked(inner),
            mandates: Self::mandates_locked(inner),
        }
    }

    /// Ask permission for one bid. Returns at once when a mandate covers it (using up one
    /// of the mandate's trades); otherwise shows it as a pending activity and waits until
    /// the user permits or forbids it, a new mandate covers it, or the wait (5 minutes by
    /// default) runs out, which counts as forbidden (`Forbidden::TimedOut`). Dropping the
    /// future withdraws the activity.
    pub async fn request_permission(&self, req: ActivityRequest) -> Result<(), Forbidden> {
        self.request_permission_within(req, None).await
    }

    /// [`request_permission`](Self::request_permission), waiting for the user at most
    /// `cap` (when given) instead of the whole permission wait.
    pub async fn request_permission_within(
        &self,
        req: ActivityRequest,
        cap: Option<Duration>,
    ) -> Result<(), Forbidden> {
        let now = now_ms();
        let cov = Coverage { article: req.article, side: req.side, price_sat: req.price };
        let rx = {
            let mut inner = self.lock();
            let id = inner.next_activity;
            inner.next_activity += 1;
            let mut act = Activity {
                id,
                article: req.article,
                article_name: req.article_name,
                side: req.side,
                price_sat: req.price,
                state: ActivityState::Pending,
                created_ms: now,
                decided_ms: None,
                mandate: None,
            };
            if let Some(mandate) = inner.mandates.try_use(&cov, now) {
                act.state = ActivityState::Permitted;
                act.decided_ms = Some(now);
                act.mandate = Some(mandate);
                tracing::info!(activity = id, mandate, side = %act.side, price = act.price_sat.0, "permitted by mandate");
                // What a restart must not forget (a counted mandate's remaining trades) is
                // on disk before the trade goes ahead; the plain use count of an unlimited
                // mandate is saved with the next change (no fsync per trade for it).
                if inner.mandates.use_must_persist(mandate) {
                    self.save_mandates_logged(&inner);
                }
                self.finish_activity(&mut inner, act);
                self.emit_mandates(&inner);
                return Ok(());
            }
            if inner.pending.len() >= PENDING_MAX {
                act.state = ActivityState::Forbidden;
                act.decided_ms = Some(now);
                tracing::warn!(activity = id, "too many pending activities; refused");
                self.finish_activity(&mut inner, act);
                return Err(Forbidden::TooManyPending);
            }
            if let Ok(requester) = REQUESTER.try_with(Arc::clone) {
                let Inner { pending, parked_origins, .. } = &mut *inner;
                parked_origins.retain(|id, _| pending.contains_key(id));
                let parked = parked_origins.values().filter(|o| **o == requester.origin).count();
                if parked >= PARKED_PER_ORIGIN_MAX {
                    act.state = ActivityState::Forbidden;
                    act.decided_ms = Some(now);
                    tracing::warn!(activity = id, origin = %requester.origin, "too many requests from one origin waiting; refused");
                    self.finish_activity(&mut inner, act);
                    return Err(Forbidden::TooManyFromOrigin(requester.origin.clone()));
                }
                parked_origins.insert(id, requester.origin.clone());
                requester.release_slot();
            }
            let (tx, rx) = oneshot::channel();
            let hint = self.permission_hint(&ActivityRequest {
                article: act.article,
                article_name: act.article_name.clone(),
                side: act.side,
                price: act.price_sat,
            });
            tracing::warn!(activity = id, side = %act.side, price = act.price_sat.0, article = %act.article, "waiting for permission: {hint}");
            self.emit(UiEvent::Activity { activity: act.clone() });
            inner.pending.insert(id, (act, tx));
            (id, rx)
        };
        let (id, mut rx) = rx;
        let mut guard = Withdraw { state: self, id, armed: true };
        let wait_ms = self.permission_wait_ms.load(Ordering::Relaxed);
        let wait_ms = cap.map_or(wait_ms, |c| wait_ms.min(c.as_millis() as u64));
        let res = match tokio::time::timeout(Duration::from_millis(wait_ms), &mut rx).await {
            Ok(Ok(decision)) => decision,
            // The sender is only dropped after sending; treat the impossible as forbidden.
            Ok(Err(_)) => Err(Forbidden::ByUser),
            Err(_elapsed) => {
                let mut inner = self.lock();
                match inner.pending.remove(&id) {
                    Some((mut act, _tx)) => {
                        act.state = ActivityState::TimedOut;
                        act.decided_ms = Some(now_ms());
                        tracing::info!(activity = id, wait_ms, "no decision in time; forbidden");
                        self.finish_activity(&mut inner, act);
                        Err(Forbidden::TimedOut(wait_ms / 1000))
                    }
                    // Decided in the same instant: take that decision.
                    None => rx.try_recv().unwrap_or(Err(Forbidden::TimedOut(wait_ms / 1000))),
                }
            }
        };
        guard.armed = false;
        res
    }

    /// Move a decided activity to the history and tell the UI.
    fn finish_activity(&self, inner: &mut Inner, act: Activity) {
        self.emit(UiEvent::Activity { activity: act.clone() });
        inner.done.push_back(act);
        while inner.done.len() > ACTIVITIES_DONE_MAX {
            inner.done.pop_front();
        }
    }

    fn decide(
        &self,
        inner: &mut Inner,
        id: u64,
        state: ActivityState,
        mandate: Option<u64>,
    ) -> Option<Activity> {
        let (mut act, tx) = inner.pending.remove(&id)?;
        act.state = state;
        act.decided_ms = Some(now_ms());
        act.mandate = mandate;
        let answer =
            if state == ActivityState::Permitted { Ok(()) } else { Err(Forbidden::ByUser) };
        // The requester may have just gone away; its guard records nothing more then.
        let _ = tx.send(answer);
        self.finish_activity(inner, act.clone());
        Some(act)
    }

    /// The user permits pending activity `id`. With `mandate`, also create that mandate
    /// (like BitWrk's dialog); it then covers later activities, and other pending ones.
    pub fn permit(&self, id: u64, mandate: Option<MandateSpec>) -> Result<Activity, StateError> {
        let mut inner = self.lock();
        if !inner.pending.contains_key(&id) {
            return Err(self.missing_activity(&inner, id));
        }
        if let Some(spec) = &mandate {
            self.add_mandate_locked(&mut inner, spec, Origin::User)?;
        }
        let act =
            self.decide(&mut inner, id, ActivityState::Permitted, None).expect("checked pending");
        tracing::info!(activity = id, "permitted by the user");
        if mandate.is_some() {
            self.apply_mandates_to_pending(&mut inner);
        }
        Ok(act)
    }

    /// The user forbids pending activity `id`.
    pub fn forbid(&self, id: u64) -> Result<Activity, StateError> {
        let mut inner = self.lock();
        let act = self
            .decide(&mut inner, id, ActivityState::Forbidden, None)
            .ok_or_else(|| self.missing_activity(&inner, id))?;
        tracing::info!(activity = id, "forbidden by the user");
        Ok(act)
    }

    fn missing_activity(&self, inner: &Inner, id: u64) -> StateError {
        if inner.done.iter().any(|a| a.id == id) {
            StateError::NotPending(id)
        } else {
            StateError::NotFound(format!("activity {id}"))
        }
    }

    /// Pending activities (oldest first), then decided ones (newest first).
    pub fn activities(&self) -> Vec<Activity> {
        Self::activities_locked(&self.lock())
    }

    fn activities_locked(inner: &Inner) -> Vec<Activity> {
        inner
            .pending
            .values()
            .map(|(a, _)| a.clone())
            .chain(inner.done.iter().rev().cloned())
            .collect()
    }

    /// Add a mandate (from the API or a `--mandate` flag). A user mandate is saved before
    /// this returns; pending activities it covers are permitted at once.
    pub fn add_mandate(&self, spec: &MandateSpec, origin: Origin) -> Result<Mandate, StateError> {
        let mut inner = self.lock();
        let m = self.add_mandate_locked(&mut inner, spec, origin)?;
        self.apply_mandates_to_pending(&mut inner);
        Ok(m)
    }

    fn add_mandate_locked(
        &self,
        inner: &mut Inner,
        spec: &MandateSpec,
        origin: Origin,
    ) -> Result<Mandate, StateError> {
        let before = inner.mandates.clone();
        let m = inner.mandates.add(spec, origin, now_ms())?;
        if let Err(e) = self.save_mandates(inner) {
            inner.mandates = before;
            return Err(e);
        }
        tracing::info!(mandate = m.id, spec = %spec, ?origin, "mandate added");
        self.emit_mandates(inner);
        Ok(m)
    }

    /// Revoke mandate `id`.
    pub fn revoke_mandate(&self, id: u64) -> Result<(), StateError> {
        let mut inner = self.lock();
        let before = inner.mandates.clone();
        if !inner.mandates.revoke(id) {
            return Err(StateError::NotFound(format!("mandate {id}")));
        }
        if let Err(e) = self.save_mandates(&inner) {
            inner.mandates = before;
            return Err(e);
        }
        tracing::info!(mandate = id, "mandate revoked");
        self.emit_mandates(&inner);
        Ok(())
    }

    /// Mandates in force now, oldest first.
    pub fn mandates(&self) -> Vec<Mandate> {
        Self::mandates_locked(&self.lock())
    }

    fn mandates_locked(inner: &Inner) -> Vec<Mandate> {
        inner.mandates.live(now_ms()).cloned().collect()
    }

    /// Permit every pending activity a mandate now covers (after a mandate was added).
    fn apply_mandates_to_pending(&self, inner: &mut Inner) {
        let now = now_ms();
        let ids: Vec<u64> = inner.pending.keys().copied().collect();
        let mut used = false;
        for id in ids {
            let (a, _) = &inner.pending[&id];
            let cov = Coverage { article: a.article, side: a.side, price_sat: a.price_sat };
            if let Some(m) = inner.mandates.try_use(&cov, now) {
                used = true;
                tracing::info!(
                    activity = id,
                    mandate = m,
                    "pending activity permitted by new mandate"
                );
                self.decide(inner, id, ActivityState::Permitted, Some(m));
            }
        }
        if used {
            self.save_mandates_logged(inner);
            self.emit_mandates(inner);
        }
    }

    fn emit_mandates(&self, inner: &Inner) {
        self.emit(UiEvent::Mandates { mandates: Self::mandates_locked(inner) });
    }

    /// Write mandates.json atomically (temp file, fsync, rename).
    fn save_mandates(&self, inner: &Inner) -> Result<(), StateError> {
        let text = inner.mandates.to_json();
        let tmp = self.mandates_path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.mandates_path)
        };
        write().map_err(|e| StateError::Persist(format!("{}: {e}", self.mandates_path.display())))
    }

    /// Save after a mandate was used: the trade goes ahead either way, so a failed write
    /// is logged (the count is right in memory and is saved with the next change).
    fn save_mandates_logged(&self, inner: &Inner) {
        if let Err(e) = self.save_mandates(inner) {
            tracing::error!(error = %e, "saving mandates after use failed");
        }
    }

    /// Report a trade (upsert by `key`, see [`TradeInfo`]).
    pub fn trade_update(&self, mut t: TradeInfo) {
        let mut inner = self.lock();
        let trades = &mut inner.trades;
        if let Some(old) = trades.by_key.get(&t.key) {
            t.started_ms = old.started_ms;
            if t.events.is_empty() {
                t.events = old.events.clone();
            }
        }
        if t.events.last().is_none_or(|e| e.phase != t.phase) {
            t.events.push(TradeEvent { phase: t.phase.clone(), at_ms: t.updated_ms });
        }
        if t.events.len() > TRADE_EVENTS_MAX {
            // Keep the first (how it began) and the latest ones.
            let cut = t.events.len() - TRADE_EVENTS_MAX;
            t.events.drain(1..=cut);
        }
        if trades.by_key.insert(t.key.clone(), t.clone()).is_none() {
            trades.order.push_back(t.key.clone());
            while trades.order.len() > TRADES_MAX {
                let pos = trades
                    .order
                    .iter()
                    .position(|k| trades.by_key.get(k).is_some_and(|t| t.finished))
                    .unwrap_or(0);
                if let Some(k) = trades.order.remove(pos) {
                    trades.by_key.remove(&k);
                }
            }
        }
        // Under the lock, so events go out in the order of the changes (see `snapshot`).
        self.emit(UiEvent::Trade { trade: t });
    }

    /// Trades, newest first.
    pub fn trades(&self) -> Vec<TradeInfo> {
        Self::trades_locked(&self.lock())
    }

    fn trades_locked(inner: &Inner) -> Vec<TradeInfo> {
        inner
            .trades
            .order
            .iter()
            .rev()
            .filter_map(|k| inner.trades.by_key.get(k).cloned())
            .collect()
    }

    /// Report a worker slot's state (upsert by `slot`).
    pub fn worker_update(&self, w: WorkerInfo) {
        let mut inner = self.lock();
        if !inner.workers.contains_key(&w.slot) && inner.workers.len() >= WORKERS_MAX {
            tracing::warn!(slot = w.slot, "too many worker slots; not shown");
            return;
        }
        inner.workers.insert(w.slot, w.clone());
        // Under the lock, so events of one slot go out in the order of the changes.
        self.emit(UiEvent::Worker { worker: w });
    }

    /// Worker slots by slot id.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        Self::workers_locked(&self.lock())
    }

    fn workers_locked(inner: &Inner) -> Vec<WorkerInfo> {
        inner.workers.values().cloned().collect()
    }

    /// Articles this host has dealt with (trades, workers, activities, mandates), by id.
    pub fn known_articles(&self) -> BTreeMap<Hash32, String> {
        let inner = self.lock();
        let mut out = BTreeMap::new();
        for t in inner.trades.by_key.values() {
            out.insert(t.article, t.article_name.clone());
        }
        for w in inner.workers.values() {
            out.insert(w.article, w.article_name.clone());
        }
        for a in inner.pending.values().map(|(a, _)| a).chain(inner.done.iter()) {
            out.insert(a.article, a.article_name.clone());
        }
        out
    }

    /// The web UI and its JSON API (see docs/PROTOCOL.md).
    pub fn router(self: Arc<Self>) -> axum::Router {
        crate::api::router(self)
    }
}

/// Withdraws a pending activity when `request_permission`'s future is dropped.
struct Withdraw<'a> {
    state: &'a HostState,
    id: u64,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut inner = self.state.lock();
        if let Some((mut act, _tx)) = inner.pending.remove(&self.id) {
            act.state = ActivityState::Withdrawn;
            act.decided_ms = Some(now_ms());
            tracing::info!(activity = self.id, "requester stopped waiting; withdrawn");
            self.state.finish_activity(&mut inner, act);
        }
    }
}
