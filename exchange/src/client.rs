//! The typed client of the exchange's HTTP API (what hosts use): signs requests, keeps
//! one connection pool, long-polls for changes, checks module hashes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bitwrk_protocol::api::{
    AccountView, ArticleEntry, BidView, BookView, ErrorBody, Info, KeyView, LedgerView,
    PublishRequest, ReceiptAnswer, TxView,
};
use bitwrk_protocol::message::{Message, Operation};
use bitwrk_protocol::{Address, Envelope, Hash32, Id, Manifest, PrivateKey, Sat, Side, TxAction};

/// How long signed messages stay valid (well inside the 600 s the exchange allows, so
/// a few seconds of clock skew after the offset correction do not matter).
const VALID_FOR_S: u64 = 300;
/// Extra time over a long poll's wait before the HTTP request itself times out.
const POLL_SLACK: Duration = Duration::from_secs(15);
/// Timeout of ordinary requests (publish of a large module included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The exchange refused the request: its `error` code and message.
    #[error("exchange refused ({status}): {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach the exchange: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the exchange's answer does not decode: {0}")]
    Decode(String),
    #[error("module of article {article} has SHA256 {got}, the manifest says {expected}")]
    ModuleHash { article: Hash32, expected: Hash32, got: Hash32 },
    #[error("article {0} is native and has no module")]
    NoModule(Hash32),
    #[error("invalid exchange URL {0:?}")]
    Url(String),
}

impl ClientError {
    /// The server's error code, if the exchange answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A client bound to one exchange. Cheap to clone (shares the pool).
#[derive(Clone, Debug)]
pub struct ExchangeClient {
    http: reqwest::Client,
    base: Arc<str>,
    info: Arc<Info>,
    /// exchange clock − local clock, in ms, measured at connect.
    offset_ms: i64,
}

fn local_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl ExchangeClient {
    /// Fetch `/v1/info` once: the exchange id and the clock offset for `valid_until`.
    pub async fn connect(base_url: &str) -> Result<ExchangeClient> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Url(base_url.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()?;
        let before = local_now_ms();
        let info: Info = decode(http.get(format!("{base}/v1/info")).send().await?).await?;
        let after = local_now_ms();
        let offset_ms = info.now_ms as i64 - (before + after) / 2;
        Ok(ExchangeClient { http, base: base.into(), info: Arc::new(info), offset_ms })
    }

    /// The `/v1/info` fetched at connect.
    pub fn info(&self) -> &Info {
        &self.info
    }

    pub fn exchange_id(&self) -> &str {
        &self.info.exchange_id
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The exchange's clock now (local clock + the offset measured at connect), unix ms.
    pub fn exchange_now_ms(&self) -> u64 {
        (local_now_ms() + self.offset_ms).max(0) as u64
    }

    /// Sign an operation for this exchange with a fresh nonce.
    pub fn sign(&self, key: &PrivateKey, op: Operation) -> Envelope {
        Message::new(&self.info.exchange_id, op, self.exchange_now_ms() / 1000, VALID_FOR_S)
            .sign(key)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.http.get(self.url(path)).send().await?).await
    }

    /// Send a signed envelope (the same envelope may be sent again: it gets the first answer).
    pub async fn post_envelope<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        env: &Envelope,
    ) -> Result<T> {
        decode(self.http.post(self.url(path)).json(env).send().await?).await
    }

    pub async fn place_bid(
        &self,
        key: &PrivateKey,
        article: Hash32,
        side: Side,
        price: Sat,
    ) -> Result<BidView> {
        self.place_bid_excluding(key, article, side, price, Vec::new()).await
    }

    /// A bid that must not match the sellers in `exclude` (buy bids only; at most
    /// `BID_EXCLUDE_MAX`; sorted here into the canonical order).
    pub async fn place_bid_excluding(
        &self,
        key: &PrivateKey,
        article: Hash32,
        side: Side,
        price: Sat,
        mut exclude: Vec<Address>,
    ) -> Result<BidView> {
        exclude.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        exclude.dedup();
        let env = self.sign(key, Operation::Bid { article, side, price, exclude });
        self.post_envelope("/v1/bids", &env).await
    }

    pub async fn bid(&self, id: &Id) -> Result<BidView> {
        self.get(&format!("/v1/bids/{id}")).await
    }

    /// Long poll: returns when the bid's version rises above `after_version`, or when
    /// `wait` (capped by the exchange at `limits.wait_ms_max`) has passed.
    pub async fn wait_bid(&self, id: &Id, after_version: u64, wait: Duration) -> Result<BidView> {
        let ms = wait.as_millis() as u64;
        decode(
            self.http
                .get(self.url(&format!("/v1/bids/{id}?after_version={after_version}&wait_ms={ms}")))
                .timeout(wait + POLL_SLACK)
                .send()
                .await?,
        )
        .await
    }

    pub async fn cancel_bid(&self, key: &PrivateKey, id: &Id) -> Result<BidView> {
        let env = self.sign(key, Operation::Cancel { bid: id.clone() });
        self.post_envelope(&format!("/v1/bids/{id}/cancel"), &env).await
    }

    pub async fn tx(&self, id: &Id) -> Result<TxView> {
        self.get(&format!("/v1/tx/{id}")).await
    }

    /// Long poll on a transaction, as [`ExchangeClient::wait_bid`].
    pub async fn wait_tx(&self, id: &Id, after_version: u64, wait: Duration) -> Result<TxView> {
        let ms = wait.as_millis() as u64;
        decode(
            self.http
                .get(self.url(&format!("/v1/tx/{id}?after_version={after_version}&wait_ms={ms}")))
                .timeout(wait + POLL_SLACK)
                .send()
                .await?,
        )
        .await
    }

    pub async fn tx_action(&self, key: &PrivateKey, id: &Id, action: TxAction) -> Result<TxView> {
        let env = self.sign(key, Operation::Tx { tx: id.clone(), action });
        self.post_envelope(&format!("/v1/tx/{id}"), &env).await
    }

    /// The buyer's receipt for the committed result `enc_result_hash`; the answer carries
    /// the result key. Resending the same envelope ([`ExchangeClient::post_envelope`])
    /// gets the same answer while it is valid; later, [`ExchangeClient::result_key`].
    pub async fn receipt(
        &self,
        key: &PrivateKey,
        id: &Id,
        enc_result_hash: Hash32,
    ) -> Result<ReceiptAnswer> {
        let action = TxAction::Receipt { enc_result_hash };
        let env = self.sign(key, Operation::Tx { tx: id.clone(), action });
        self.post_envelope(&format!("/v1/tx/{id}"), &env).await
    }

    /// The buyer's signed read of the result key, after its receipt.
    pub async fn result_key(&self, key: &PrivateKey, id: &Id) -> Result<KeyView> {
        let env = self.sign(key, Operation::Key { tx: id.clone() });
        self.post_envelope(&format!("/v1/tx/{id}/key"), &env).await
    }

    /// Upload the ciphertext of a disputed result, with the parties' transfer credential
    /// (`transfer_auth` of the buyer's secret); the answer is the decided transaction.
    pub async fn upload_evidence(&self, id: &Id, auth: &Hash32, enc: Vec<u8>) -> Result<TxView> {
        let req = self
            .http
            .put(self.url(&format!("/v1/tx/{id}/evidence")))
            .header(bitwrk_protocol::transfer::TRANSFER_AUTH_HEADER, auth.to_hex())
            .body(enc);
        decode(req.send().await?).await
    }

    pub async fn account(&self, address: &Address) -> Result<AccountView> {
        self.get(&format!("/v1/accounts/{address}")).await
    }

    /// The money totals (conservation: available + blocked + fees == created).
    pub async fn ledger(&self) -> Result<LedgerView> {
        self.get("/v1/ledger").await
    }

    /// Publish an article (idempotent). Native articles: `module_bytes` is empty.
    pub async fn publish(
        &self,
        key: &PrivateKey,
        manifest: &Manifest,
        module_bytes: &[u8],
    ) -> Result<ArticleEntry> {
        let module_sha256 = Hash32::of(module_bytes);
        let op = Operation::Publish {
            article: manifest.id(),
            module_sha256,
            size: module_bytes.len() as u64,
        };
        let req = PublishRequest {
            envelope: self.sign(key, op),
            manifest: manifest.clone(),
            module_base64: base64::engine::general_purpose::STANDARD.encode(module_bytes),
        };
        decode(self.http.post(self.url("/v1/articles")).json(&req).send().await?).await
    }

    /// Every published article: `GET /v1/articles` page by page (each at most
    /// `limits::ARTICLES_PAGE_MAX`), in id order.
    pub async fn articles(&self) -> Result<Vec<ArticleEntry>> {
        let page_max = crate::limits::ARTICLES_PAGE_MAX;
        let mut all: Vec<ArticleEntry> = Vec::new();
        // Bounded: the registry holds at most ARTICLES_MAX, and each page moves `after` on.
        for _ in 0..=crate::limits::ARTICLES_MAX / page_max {
            let path = match all.last() {
                Some(last) => format!("/v1/articles?limit={page_max}&after={}", last.id),
                None => format!("/v1/articles?limit={page_max}"),
            };
            let page: Vec<ArticleEntry> = self.get(&path).await?;
            let full = page.len() == page_max;
            all.extend(page);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    pub async fn article(&self, id: &Hash32) -> Result<ArticleEntry> {
        self.get(&format!("/v1/articles/{id}")).await
    }

    /// Download an article's module and check it against the manifest's hash.
    pub async fn module(&self, id: &Hash32) -> Result<Vec<u8>> {
        let entry = self.article(id).await?;
        let expected = entry.manifest.module_sha256.ok_or(ClientError::NoModule(*id))?;
        let resp = self.http.get(self.url(&format!("/v1/articles/{id}/module"))).send().await?;
        let bytes = check_status(resp).await?.bytes().await?;
        let got = Hash32::of(&bytes);
        if got != expected {
            return Err(ClientError::ModuleHash { article: *id, expected, got });
        }
        Ok(bytes.to_vec())
    }

    pub async fn book(&self, id: &Hash32) -> Result<BookView> {
        self.get(&format!("/v1/articles/{id}/book")).await
    }
}

async fn check_status(resp: reqwest::Response) -> Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await?;
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => {
            Err(ClientError::Api { status: status.as_u16(), code: e.error, message: e.message })
        }
        Err(_) => Err(ClientError::Api {
            status: status.as_u16(),
            code: "http".into(),
            message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        }),
    }
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
    let body = check_status(resp).await?.bytes().await?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
}
