//! The buying proxy on the internal port (127.0.0.1): `POST /buy/{article}` turns a
//! multipart form (or a raw body) into a trade; `GET /file/{sha256}` serves the content
//! store. Merged with the admin UI's router by `run`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use bitwrk_protocol::api::ErrorBody;
use bitwrk_protocol::{Hash32, Sat};
use tokio::sync::Semaphore;

use crate::buyer::{BuyError, BuyRequest, buy};
use crate::limits::{BUY_BODY_BYTES_MAX, BUY_CONCURRENT_MAX};
use crate::node::Node;
use crate::state::{REQUESTER, Requester};

/// Media types of recent outputs, so `/file/{sha256}` answers with the right one.
const MEDIA_TYPES_MAX: usize = 4096;

pub struct Proxy {
    node: Arc<Node>,
    /// Buys being served (reading inputs, trading); a buy waiting for permission gives its
    /// slot back (see [`crate::state::Requester`]).
    buys: Arc<Semaphore>,
    media_types: Mutex<(HashMap<Hash32, String>, VecDeque<Hash32>)>,
}

/// `{"outputs": [...], "tx": ..., "price_sat": ..., "fee_sat": ...}` for articles with
/// several outputs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct BuyAnswer {
    pub outputs: Vec<OutputRef>,
    pub tx: String,
    pub price_sat: u64,
    pub fee_sat: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct OutputRef {
    pub name: String,
    pub sha256: Hash32,
    pub url: String,
    pub size: u64,
    pub media_type: String,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: code.into(), message: message.into() })).into_response()
}

fn buy_error(e: BuyError) -> Response {
    let status = match &e {
        BuyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        BuyError::Forbidden(_) | BuyError::PermissionRequired(_) => StatusCode::FORBIDDEN,
        BuyError::WorkRejected(..) => StatusCode::UNPROCESSABLE_ENTITY,
        BuyError::NoSeller => StatusCode::SERVICE_UNAVAILABLE,
        BuyError::Exchange(_) | BuyError::GaveUp { .. } => StatusCode::BAD_GATEWAY,
        BuyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if let BuyError::Internal(m) = &e {
        tracing::error!(error = %m, "buy failed internally");
        return error(status, e.code(), "internal error");
    }
    error(status, e.code(), e.to_string())
}

impl Proxy {
    pub fn new(node: Arc<Node>) -> Arc<Proxy> {
        Arc::new(Proxy {
            node,
            buys: Arc::new(Semaphore::new(BUY_CONCURRENT_MAX)),
            media_types: Mutex::new((HashMap::new(), VecDeque::new())),
        })
    }

    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/buy/{article}", post(buy_handler))
            .route("/file/{sha256}", get(file_handler))
            .layer(DefaultBodyLimit::max(BUY_BODY_BYTES_MAX))
            .layer(axum::middleware::from_fn(crate::guard::local_only))
            .with_state(self.clone())
    }

    fn remember(&self, h: Hash32, media_type: &str) {
        let mut m = self.media_types.lock().expect("media types lock");
        if m.0.insert(h, media_type.to_string()).is_none() {
            m.1.push_back(h);
            if m.1.len() > MEDIA_TYPES_MAX
                && let Some(old) = m.1.pop_front()
            {
                m.0.remove(&old);
            }
        }
    }
}

/// The query is taken as text and parsed here, so a bad one gets a JSON answer.
#[derive(serde::Deserialize)]
struct BuyQuery {
    price: Option<String>,
}

/// `price` as a whole number of sat, at least 1 (the exchange refuses a bid at 0): a bad
/// price is refused here, before the user is asked to permit it or the exchange is asked.
#[allow(clippy::result_large_err)] // an axum answer, built once per bad request
fn parse_price(text: &str) -> Result<Sat, Response> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err(error(StatusCode::BAD_REQUEST, "bad_request", "price must be at least 1 sat")),
        Ok(p) => Ok(Sat(p)),
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("price must be a whole number of sat, not {text:?}"),
        )),
    }
}

async fn buy_handler(
    State(proxy): State<Arc<Proxy>>,
    Path(article): Path<String>,
    q: Result<Query<BuyQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
    };
    let mut price = match q.price.as_deref().map(parse_price).transpose() {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Ok(slot) = proxy.buys.clone().acquire_owned().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "busy", "shutting down");
    };
    let entry = match proxy.node.resolve_article(&article).await {
        Ok(e) => e,
        Err(e) => return error(StatusCode::NOT_FOUND, "unknown_article", format!("{e:#}")),
    };
    let m = &entry.manifest;
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        let mut mp = match Multipart::from_request(req, &()).await {
            Ok(mp) => mp,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
        };
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
            };
            let name = field.name().unwrap_or_default().to_string();
            let data = match field.bytes().await {
                Ok(d) => d,
                Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
            };
            if name == "price" {
                match parse_price(&String::from_utf8_lossy(&data)) {
                    Ok(p) => price = Some(p),
                    Err(r) => return r,
                }
                continue;
            }
            // BitWrk's single `data` field names the one input of a one-input article.
            let name = if name == "data" && m.inputs.len() == 1 && m.input("data").is_none() {
                m.inputs[0].name.clone()
            } else {
                name
            };
            inputs.push((name, data.to_vec()));
        }
    } else {
        if m.inputs.len() != 1 {
            let names: Vec<&str> = m.inputs.iter().map(|d| d.name.as_str()).collect();
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "{} takes several inputs {names:?}: send them as multipart/form-data fields",
                    m.name
                ),
            );
        }
        let body = match Bytes::from_request(req, &()).await {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
        };
        inputs.push((m.inputs[0].name.clone(), body.to_vec()));
    }
    // Parked requests are counted per origin: a web origin (only this host's own page gets
    // past the guard) or this machine's programs.
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("programs without an Origin")
        .to_string();
    let requester = Requester::new(origin, Some(slot));
    let bought = REQUESTER
        .scope(
            requester,
            buy(&proxy.node, BuyRequest { article: entry.clone(), inputs, price }, None),
        )
        .await;
    let out = match bought {
        Ok(o) => o,
        Err(e) => return buy_error(e),
    };
    for o in &out.outputs {
        proxy.remember(o.hash, &o.media_type);
    }
    // How the trade went, for scripts and the demo (a 303 carries no body).
    let trade_headers = [
        ("x-bitwrk-tx", out.tx.to_string()),
        ("x-bitwrk-attempts", out.attempts.to_string()),
        ("x-bitwrk-price-sat", out.price.0.to_string()),
        ("x-bitwrk-fee-sat", out.fee.0.to_string()),
        ("x-bitwrk-sent-bytes", out.chunk_bytes_sent.to_string()),
        ("x-bitwrk-input-bytes", out.input_bytes.to_string()),
    ];
    if out.outputs.len() == 1 {
        return (trade_headers, Redirect::to(&format!("/file/{}", out.outputs[0].hash)))
            .into_response();
    }
    let answer = Json(BuyAnswer {
        outputs: out
            .outputs
            .iter()
            .map(|o| OutputRef {
                name: o.name.clone(),
                sha256: o.hash,
                url: format!("/file/{}", o.hash),
                size: o.data.len() as u64,
                media_type: o.media_type.clone(),
            })
            .collect(),
        tx: out.tx.to_string(),
        price_sat: out.price.0,
        fee_sat: out.fee.0,
    });
    (trade_headers, answer).into_response()
}

async fn file_handler(State(proxy): State<Arc<Proxy>>, Path(sha256): Path<String>) -> Response {
    let Ok(h) = sha256.parse::<Hash32>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "give the file's SHA256 as 64 lowercase hex chars",
        );
    };
    let store = proxy.node.store.clone();
    let data = match tokio::task::spawn_blocking(move || store.get(&h)).await {
        Ok(Ok(d)) => d,
        Ok(Err(crate::store::StoreError::Missing(_))) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no file {h} in this host's store"),
            );
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the store failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        }
        Err(e) => {
            tracing::error!(error = %e, "store task failed");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        }
    };
    let media_type = proxy
        .media_types
        .lock()
        .expect("media types lock")
        .0
        .get(&h)
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".into());
    // Never active content on the admin origin: a safe type or a sandboxed download.
    // `insert`, not `extend`: the body's default Content-Type is replaced, not added to.
    let mut resp = data.into_response();
    let h = resp.headers_mut();
    for (name, value) in crate::guard::file_headers(&media_type) {
        h.insert(name, value);
    }
    resp
}
