//! The internal port serves its own user only: every route (UI, `/api`, `/buy`, `/file`)
//! refuses foreign `Host` headers (DNS rebinding) and cross-site browser requests
//! (`Origin`, `Sec-Fetch-Site`); state-changing `/api` calls from a browser carry the UI
//! token; `/file` never serves active content. Programs without a browser (curl, scripts,
//! the Blender add-on) send none of the browser headers and keep working.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bitwrk_protocol::api::ErrorBody;

/// The header the UI sends its token in on `/api` POST and DELETE.
pub const TOKEN_HEADER: &str = "x-bitwrk-token";
/// Random bytes in a UI token (hex in the page): 128 bits cannot be guessed.
const TOKEN_BYTES: usize = 16;
/// Media types `/file` serves as they are: none of them runs script in a browser.
/// Anything else (text/html, image/svg+xml, XML, PDF...) is a download.
pub const FILE_SAFE_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "application/octet-stream",
    "image/gif",
    "image/jpeg",
    "image/png",
    "image/webp",
    "text/csv",
    "text/plain",
];
/// The CSP on every `/file` answer: even opened directly, a result runs no script, loads
/// nothing and has an opaque origin.
pub const FILE_CSP: &str = "sandbox; default-src 'none'";

/// A fresh random UI token (hex).
pub fn new_token() -> String {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

fn refuse(code: &str, message: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(ErrorBody { error: code.into(), message: message.into() }))
        .into_response()
}

/// Middleware for every internal route: a local `Host`, and a browser request only from
/// this very origin (or typed by the user: `Sec-Fetch-Site: none`). A top-level
/// navigation to the UI page `/` from elsewhere is allowed (a link to the UI); pages can
/// not be framed.
pub async fn local_only(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_local_host(host) {
        tracing::warn!(host, uri = %req.uri(), "internal port: refused a request for a non-local Host");
        return refuse("forbidden_host", "only http://localhost or 127.0.0.1 may use this port");
    }
    let ui_link = req.method() == Method::GET
        && req.uri().path() == "/"
        && headers.get("sec-fetch-dest").is_some_and(|v| v.as_bytes() == b"document");
    if !ui_link && let Some(why) = cross_site(headers, host) {
        tracing::warn!(why, method = %req.method(), uri = %req.uri(), "internal port: refused a cross-site request");
        return refuse("forbidden_origin", why);
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// Middleware for `/api`: a state-changing request from a browser (it has an `Origin`
/// or `Sec-Fetch-*` header) must carry the token the UI got from `GET /api/session`. A
/// foreign page cannot read that answer (no CORS, and a rebound host name is refused).
pub async fn api_token(
    State(token): State<std::sync::Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let h = req.headers();
    let browser = h.contains_key(header::ORIGIN) || h.contains_key("sec-fetch-site");
    if !safe && browser {
        let given = h.get(TOKEN_HEADER).map(HeaderValue::as_bytes).unwrap_or_default();
        if !constant_time_eq(given, token.as_bytes()) {
            tracing::warn!(method = %req.method(), uri = %req.uri(), "api: refused a browser request without the UI token");
            return refuse(
                "forbidden_token",
                "a browser request that changes state needs the UI's token",
            );
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request is cross-site, if it is: an `Origin` other than `http://{host}`, or a
/// `Sec-Fetch-Site` other than `same-origin` / `none`. Other ports on localhost are
/// other origins (the browser calls them `same-site`): refused too.
fn cross_site(headers: &HeaderMap, host: &str) -> Option<&'static str> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host));
        if !own {
            return Some("requests are accepted from this host's own pages only (Origin)");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Some("requests are accepted from this host's own pages only (Sec-Fetch-Site)");
    }
    None
}

/// Whether a `Host` header value names this machine.
pub fn is_local_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:port
        match rest.split_once(']') {
            Some((name, rest))
                if rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port) =>
            {
                return name == "::1";
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1"
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The headers `/file` answers with for a stored output declared as `media_type`: the
/// type itself when it is on [`FILE_SAFE_MEDIA_TYPES`], else a download.
pub fn file_headers(media_type: &str) -> Vec<(header::HeaderName, HeaderValue)> {
    let essence = media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mut h = vec![
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(FILE_CSP)),
    ];
    match FILE_SAFE_MEDIA_TYPES.iter().find(|t| **t == essence) {
        Some(t) => h.push((header::CONTENT_TYPE, HeaderValue::from_static(t))),
        None => {
            h.push((header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")));
            h.push((header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment")));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cross(origin: Option<&str>, site: Option<&str>, host: &str, refused: bool) {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        if let Some(s) = site {
            h.insert("sec-fetch-site", s.parse().unwrap());
        }
        assert_eq!(cross_site(&h, host).is_some(), refused, "{origin:?} {site:?} {host}");
    }

    #[test]
    fn only_the_own_origin_passes() {
        check_cross(None, None, "127.0.0.1:8081", false);
        check_cross(Some("http://127.0.0.1:8081"), Some("same-origin"), "127.0.0.1:8081", false);
        check_cross(None, Some("none"), "localhost:8081", false);
        check_cross(Some("http://127.0.0.1:9999"), None, "127.0.0.1:8081", true);
        check_cross(Some("http://evil.example"), None, "127.0.0.1:8081", true);
        check_cross(Some("null"), None, "127.0.0.1:8081", true);
        check_cross(None, Some("same-site"), "127.0.0.1:8081", true);
        check_cross(None, Some("cross-site"), "127.0.0.1:8081", true);
    }

    #[test]
    fn local_hosts() {
        for h in ["localhost", "localhost:8081", "127.0.0.1:1", "[::1]:8081", "LOCALHOST"] {
            assert!(is_local_host(h), "{h}");
        }
        for h in ["evil.example", "127.0.0.1.evil:80", "[::2]:1", "localhost:x", ""] {
            assert!(!is_local_host(h), "{h}");
        }
    }

    #[test]
    fn active_types_are_downloads() {
        let get = |t: &str, n: header::HeaderName| {
            file_headers(t).into_iter().find(|(k, _)| *k == n).map(|(_, v)| v)
        };
        for t in ["text/html", "image/svg+xml", "TEXT/HTML; charset=utf-8", "application/xhtml+xml"]
        {
            assert_eq!(get(t, header::CONTENT_TYPE).unwrap(), "application/octet-stream");
            assert_eq!(get(t, header::CONTENT_DISPOSITION).unwrap(), "attachment");
            assert_eq!(get(t, header::CONTENT_SECURITY_POLICY).unwrap(), FILE_CSP);
        }
        assert_eq!(get("image/png", header::CONTENT_TYPE).unwrap(), "image/png");
        assert_eq!(get("text/plain; charset=utf-8", header::CONTENT_TYPE).unwrap(), "text/plain");
        assert!(get("image/png", header::CONTENT_DISPOSITION).is_none());
        assert_eq!(get("image/png", header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
    }
}
