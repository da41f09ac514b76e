//! One host's shared trading context: its key, exchange client, content store, article
//! cache, UI state, and the `Gate` through which every bid asks permission and every
//! trade reports. `run`, `buy`, `demo`, the tests and the bench all build one of these.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::api::ArticleEntry;
use bitwrk_protocol::{Hash32, PrivateKey, Sat, Side};

use tokio_util::task::TaskTracker;

use crate::state::{ActivityRequest, Forbidden, HostState, TradeInfo, WorkerInfo};
use crate::store::Store;

/// Who decides whether a bid may be placed, and who hears about trades.
#[derive(Clone)]
pub enum Gate {
    /// The running host: mandates and the admin UI decide; trades show in the UI.
    State(Arc<HostState>),
    /// A one-off command (`bitwrk-host buy`): the user's own invocation, with its price,
    /// is the permission; progress goes to the terminal instead of a UI.
    Command,
}

impl Gate {
    pub async fn request_permission(&self, req: ActivityRequest) -> Result<(), Forbidden> {
        match self {
            Gate::State(s) => s.request_permission(req).await,
            Gate::Command => Ok(()),
        }
    }

    /// [`Gate::request_permission`] for a buy: waits for the user at most the host's buy
    /// permission wait (`--buy-permission-wait-ms`), so a buyer gets an answer in time.
    pub async fn request_buy_permission(&self, req: ActivityRequest) -> Result<(), Forbidden> {
        match self {
            Gate::State(s) => {
                let wait = s.buy_permission_wait();
                s.request_permission_within(req, Some(wait)).await
            }
            Gate::Command => Ok(()),
        }
    }

    /// Where and how the user permits `req` (see [`HostState::permission_hint`]).
    pub fn permission_hint(&self, req: &ActivityRequest) -> String {
        match self {
            Gate::State(s) => s.permission_hint(req),
            Gate::Command => "the command line is the permission".to_string(),
        }
    }

    pub fn trade_update(&self, t: TradeInfo) {
        if let Gate::State(s) = self {
            s.trade_update(t);
        }
    }

    pub fn worker_update(&self, w: WorkerInfo) {
        if let Gate::State(s) = self {
            s.worker_update(w);
        }
    }
}

/// The shared context of one host.
pub struct Node {
    pub key: PrivateKey,
    pub exchange: ExchangeClient,
    pub store: Arc<Store>,
    pub gate: Gate,
    /// HTTP client for talking to sellers (connection pooling across trades). Its
    /// resolver applies [`Node::worker_urls`] to every name it connects to.
    pub http: reqwest::Client,
    /// Which sellers' `worker_url`s this host connects to (`--lan-market`, own ports).
    pub worker_urls: Arc<crate::worker_url::WorkerUrlPolicy>,
    /// Buyer `accept`s sent after the result was handed over (see [`Node::settled`]).
    pub settling: TaskTracker,
    settled_lock: tokio::sync::Mutex<()>,
    articles: Mutex<HashMap<Hash32, Arc<ArticleEntry>>>,
}

impl Node {
    pub fn new(
        key: PrivateKey,
        exchange: ExchangeClient,
        store: Arc<Store>,
        gate: Gate,
    ) -> anyhow::Result<Arc<Node>> {
        let worker_urls = Arc::new(crate::worker_url::WorkerUrlPolicy::default());
        let http = reqwest::Client::builder()
            .dns_resolver(crate::worker_url::CheckedResolver(worker_urls.clone()))
            .connect_timeout(crate::limits::SELLER_REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Arc::new(Node {
            key,
            exchange,
            store,
            gate,
            http,
            worker_urls,
            settling: TaskTracker::new(),
            settled_lock: tokio::sync::Mutex::new(()),
            articles: Mutex::new(HashMap::new()),
        }))
    }

    /// Wait until every `accept` sent so far in the background has been answered (the
    /// buyer's trades are settled on the exchange): before reading balances, before exit.
    pub async fn settled(&self) {
        let _one = self.settled_lock.lock().await;
        self.settling.close();
        self.settling.wait().await;
        self.settling.reopen();
    }

    /// An article's registry entry by id (cached: an id names one immutable manifest).
    pub async fn article(&self, id: &Hash32) -> anyhow::Result<Arc<ArticleEntry>> {
        if let Some(e) = self.articles.lock().expect("article cache lock").get(id) {
            return Ok(e.clone());
        }
        let entry =
            self.exchange.article(id).await.with_context(|| format!("looking up article {id}"))?;
        anyhow::ensure!(
            entry.manifest.id() == *id,
            "the exchange answered article {id} with another manifest"
        );
        let entry = Arc::new(entry);
        let mut cache = self.articles.lock().expect("article cache lock");
        if cache.len() >= crate::limits::ARTICLE_CACHE_MAX {
            cache.clear();
        }
        cache.insert(*id, entry.clone());
        Ok(entry)
    }

    /// Resolve `ARTICLE` as given on a command line or URL: a 64-hex id, or a name, which
    /// means the newest published version of that name.
    pub async fn resolve_article(&self, name_or_id: &str) -> anyhow::Result<Arc<ArticleEntry>> {
        if let Ok(id) = name_or_id.parse::<Hash32>() {
            return self.article(&id).await;
        }
        let list = self.exchange.articles().await.context("listing the exchange's articles")?;
        let best = list
            .into_iter()
            .filter(|e| e.manifest.name == name_or_id)
            .max_by(|a, b| {
                let va = semver::Version::parse(&a.manifest.version).ok();
                let vb = semver::Version::parse(&b.manifest.version).ok();
                va.cmp(&vb).then(a.published_ms.cmp(&b.published_ms))
            })
            .with_context(|| {
                format!("no article named {name_or_id:?} is published on the exchange")
            })?;
        let entry = Arc::new(best);
        self.articles.lock().expect("article cache lock").insert(entry.id, entry.clone());
        Ok(entry)
    }
}

/// Report shape shared by buyer and seller: one trade, updated as it moves.
pub struct TradeReport {
    gate: Gate,
    info: TradeInfo,
}

impl TradeReport {
    pub fn new(
        gate: Gate,
        key: String,
        article: &ArticleEntry,
        side: Side,
        price: Sat,
    ) -> TradeReport {
        let now = crate::state::now_ms();
        TradeReport {
            gate,
            info: TradeInfo {
                key,
                article: article.id,
                article_name: article.manifest.name.clone(),
                side,
                price_sat: price,
                fee_sat: Sat::ZERO,
                bid: None,
                tx: None,
                permitted_ms: None,
                phase: "asking permission".into(),
                started_ms: now,
                updated_ms: now,
                finished: false,
                outcome: None,
                error: None,
                events: Vec::new(),
            },
        }
    }

    pub fn info(&mut self) -> &mut TradeInfo {
        &mut self.info
    }

    /// Permission was given: the trade's time counts from now.
    pub fn permitted(&mut self) {
        self.info.permitted_ms = Some(crate::state::now_ms());
    }

    /// Move to `phase` and report.
    pub fn phase(&mut self, phase: impl Into<String>) {
        self.info.phase = phase.into();
        self.send();
    }

    pub fn finish(&mut self, outcome: Option<String>, error: Option<String>) {
        self.info.finished = true;
        self.info.phase = if error.is_some() { "failed".into() } else { "done".into() };
        self.info.outcome = outcome;
        self.info.error = error;
        self.send();
    }

    pub fn send(&mut self) {
        self.info.updated_ms = crate::state::now_ms();
        self.gate.trade_update(self.info.clone());
    }
}

impl Drop for TradeReport {
    /// A trade dropped before it finished (its buyer went away) is shown as ended.
    fn drop(&mut self) {
        if !self.info.finished {
            self.finish(
                None,
                Some("abandoned: the request was dropped before the trade ended".into()),
            );
        }
    }
}
