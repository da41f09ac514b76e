//! The admin web UI's HTTP surface: the static page and the `/api/...` JSON routes and
//! SSE stream it uses (docs/PROTOCOL.md). Thin: the logic lives in `state`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitwrk_protocol::Hash32;
use bitwrk_protocol::api::ErrorBody;
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::mandates::{MandateSpec, Origin};
use crate::state::{HostState, StateError, now_ms};

/// Largest request body: the biggest is a mandate spec, a few hundred bytes.
pub const API_BODY_BYTES_MAX: usize = 16 * 1024;
/// Open `/api/events` streams at once: one per open browser tab; more is a runaway client.
pub const SSE_CLIENTS_MAX: usize = 32;
/// A call through to the exchange (account, book, articles) gives up after this.
pub const EXCHANGE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

#[derive(Clone)]
struct Api {
    state: Arc<HostState>,
    sse: Arc<Semaphore>,
}

/// The UI and API router for `state` (see [`HostState::router`]).
pub fn router(state: Arc<HostState>) -> Router {
    let api = Api { state, sse: Arc::new(Semaphore::new(SSE_CLIENTS_MAX)) };
    let token: Arc<str> = crate::guard::new_token().into();
    let session = SessionView { token: token.to_string() };
    Router::new()
        .route("/", get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }))
        .route("/style.css", get(|| async { static_file("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/api/info", get(info))
        .route("/api/session", get(move || async move { Json(session.clone()) }))
        .route("/api/account", get(account))
        .route("/api/activities", get(activities))
        .route("/api/activities/{id}/permit", post(permit))
        .route("/api/activities/{id}/forbid", post(forbid))
        .route("/api/trades", get(trades))
        .route("/api/workers", get(workers))
        .route("/api/mandates", get(mandates).post(add_mandate))
        .route("/api/mandates/{id}", axum::routing::delete(revoke_mandate))
        .route("/api/articles", get(articles))
        .route("/api/articles/{id}/book", get(book))
        .route("/api/events", get(events))
        // No router-wide fallback: the run command merges this router with the proxy's.
        .route(
            "/api/{*rest}",
            axum::routing::any(|| async {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
            }),
        )
        .layer(DefaultBodyLimit::max(API_BODY_BYTES_MAX))
        .layer(middleware::from_fn_with_state(token, crate::guard::api_token))
        .layer(middleware::from_fn(crate::guard::local_only))
        .with_state(api)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

/// An API error: `{"error": code, "message": text}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: ErrorBody { error: code.to_string(), message: message.into() } }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn exchange(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "exchange_error",
            format!("the exchange did not answer: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        match &e {
            StateError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StateError::NotPending(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_pending", e.to_string())
            }
            StateError::Mandate(_) => ApiError::bad_request(e.to_string()),
            StateError::Persist(_) => {
                tracing::error!(error = %e, "api: saving mandates failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the host's log)",
                )
            }
        }
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `GET /api/session`: the token the UI sends on state-changing calls
/// ([`crate::guard::TOKEN_HEADER`]); only a same-origin page can read it.
#[derive(Serialize, Clone)]
struct SessionView {
    token: String,
}

#[derive(Serialize)]
struct InfoView {
    address: String,
    now_ms: u64,
    version: &'static str,
}

async fn info(State(api): State<Api>) -> Json<InfoView> {
    Json(InfoView {
        address: api.state.address.to_string(),
        now_ms: now_ms(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

async fn with_timeout<T, E: std::fmt::Display>(
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(EXCHANGE_CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::exchange(e)),
        Err(_) => Err(ApiError::exchange(format!(
            "no answer within {} s",
            EXCHANGE_CALL_TIMEOUT.as_secs()
        ))),
    }
}

async fn account(State(api): State<Api>) -> ApiResult<bitwrk_protocol::api::AccountView> {
    let s = &api.state;
    Ok(Json(with_timeout(s.exchange.account(&s.address)).await?))
}

async fn activities(State(api): State<Api>) -> Json<Vec<crate::state::Activity>> {
    Json(api.state.activities())
}

fn parse_id(s: &str, what: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("{what} id must be a number, not {s:?}")))
}

/// Body of `POST /api/activities/{id}/permit` (optional).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PermitBody {
    /// Also create this mandate.
    #[serde(default)]
    mandate: Option<MandateSpec>,
}

/// Parse an optional JSON body: empty is the default value.
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

async fn permit(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<crate::state::Activity> {
    let id = parse_id(&id, "activity")?;
    let b: PermitBody = optional_json(&body)?;
    Ok(Json(api.state.permit(id, b.mandate)?))
}

async fn forbid(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<crate::state::Activity> {
    let id = parse_id(&id, "activity")?;
    Ok(Json(api.state.forbid(id)?))
}

async fn trades(State(api): State<Api>) -> Json<Vec<crate::state::TradeInfo>> {
    Json(api.state.trades())
}

async fn workers(State(api): State<Api>) -> Json<Vec<crate::state::WorkerInfo>> {
    Json(api.state.workers())
}

async fn mandates(State(api): State<Api>) -> Json<Vec<crate::mandates::Mandate>> {
    Json(api.state.mandates())
}

async fn add_mandate(
    State(api): State<Api>,
    body: Bytes,
) -> Result<(StatusCode, Json<crate::mandates::Mandate>), ApiError> {
    let spec: MandateSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad mandate: {e}")))?;
    Ok((StatusCode::CREATED, Json(api.state.add_mandate(&spec, Origin::User)?)))
}

async fn revoke_mandate(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id, "mandate")?;
    api.state.revoke_mandate(id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of `GET /api/articles`.
#[derive(Serialize)]
struct ArticleView {
    id: Hash32,
    name: String,
    version: Option<String>,
    /// Published on the exchange (false: only seen in this host's trades).
    published: bool,
}

async fn articles(State(api): State<Api>) -> ApiResult<Vec<ArticleView>> {
    let published = with_timeout(api.state.exchange.articles()).await?;
    let mut out: Vec<ArticleView> = published
        .into_iter()
        .map(|a| ArticleView {
            id: a.id,
            name: a.manifest.name.clone(),
            version: Some(a.manifest.version.to_string()),
            published: true,
        })
        .collect();
    for (id, name) in api.state.known_articles() {
        if !out.iter().any(|a| a.id == id) {
            out.push(ArticleView { id, name, version: None, published: false });
        }
    }
    Ok(Json(out))
}

async fn book(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> ApiResult<bitwrk_protocol::api::BookView> {
    let id: Hash32 = id
        .parse()
        .map_err(|e: bitwrk_protocol::hash::HashParseError| ApiError::bad_request(e.to_string()))?;
    Ok(Json(with_timeout(api.state.exchange.book(&id)).await?))
}

/// `GET /api/events`: server-sent events. First `snapshot` (everything the UI shows,
/// taken atomically with the subscription), then one event per change (event name = kind,
/// data = the JSON of `UiEvent`); a client that fell behind gets a fresh `snapshot`.
/// Every change after a snapshot arrives after it, so a view never goes back in time.
async fn events(
    State(api): State<Api>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = api.sse.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("at most {SSE_CLIENTS_MAX} live views at once"),
        )
    })?;
    let (first, rx) = api.state.subscribe_with_snapshot();
    let state = api.state.clone();
    let snapshot_event = |s: &crate::state::Snapshot| {
        Event::default().event("snapshot").json_data(s).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "ui events: snapshot not serialisable");
            Event::default().event("snapshot").data("{}")
        })
    };
    let hello = futures_util::stream::once(std::future::ready(snapshot_event(&first)));
    let stream = hello
        .chain(BroadcastStream::new(rx).map(move |r| {
            // The permit lives as long as the stream.
            let _held = &permit;
            match r {
                Ok(ev) => Event::default()
                    .event(ev.kind())
                    .json_data(&ev)
                    .unwrap_or_else(|_| snapshot_event(&state.snapshot())),
                Err(BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "ui events: subscriber lagged; new snapshot");
                    snapshot_event(&state.snapshot())
                }
            }
        }))
        .map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
