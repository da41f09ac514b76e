//! The admin web UI in a real headless Chromium, driven over the DevTools protocol: a
//! pending activity is permitted (and forbidden) by clicking the page's buttons, mandates
//! are made in the permit dialog, trades update live over SSE, and a full trade through
//! `bitwrk-host run` finishes after the user's click. Also the API's local-only guard.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_host::mandates::Origin;
use bitwrk_host::state::{
    ActivityRequest, ActivityState, Forbidden, HostState, TradeInfo, UiEvent, WorkerInfo,
};
use bitwrk_protocol::{Hash32, PrivateKey, Sat, Side};

use crate::harness;

/// How long one wait in the browser may take (page load, an element appearing).
const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// A minimal Chrome DevTools Protocol client over one page's websocket.
pub(crate) mod cdp {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use anyhow::{Context as _, bail};
    use futures_util::{SinkExt as _, StreamExt as _};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    use tokio::sync::{Mutex, broadcast, mpsc, oneshot};
    use tokio_tungstenite::tungstenite::Message;

    use super::BROWSER_WAIT;

    /// Where Chromium is: `BITWRK_CHROMIUM`, else /usr/bin/chromium. `None` when missing.
    /// With `CI` set a missing browser is a failure, never a skip.
    pub fn find_chromium() -> Option<PathBuf> {
        let p = std::env::var_os("BITWRK_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/bin/chromium".into());
        if p.exists() {
            return Some(p);
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set and Chromium is missing at {}",
            p.display()
        );
        eprintln!(
            "SKIP: Chromium not found at {} (set BITWRK_CHROMIUM); not CI, so skipping",
            p.display()
        );
        None
    }

    /// A headless Chromium with a fresh profile, killed on drop.
    pub struct Browser {
        child: tokio::process::Child,
        ws_base: String,
        _profile: tempfile::TempDir,
    }

    impl Browser {
        pub async fn launch(exe: &Path) -> anyhow::Result<Browser> {
            let profile = tempfile::tempdir()?;
            let mut child = tokio::process::Command::new(exe)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--remote-debugging-port=0",
                    "--window-size=1400,1000",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            let stderr = child.stderr.take().expect("piped");
            let mut lines = BufReader::new(stderr).lines();
            // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/UUID"
            let ws = tokio::time::timeout(BROWSER_WAIT, async {
                let mut seen = Vec::new();
                while let Some(line) = lines.next_line().await? {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        return Ok(url.trim().to_string());
                    }
                    seen.push(line);
                }
                bail!("chromium exited before DevTools was up:\n{}", seen.join("\n"))
            })
            .await
            .context("chromium did not report its DevTools URL in time")??;
            // Keep draining stderr so the browser never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let ws_base = ws.split("/devtools/").next().context("DevTools URL")?.to_string();
            Ok(Browser { child, ws_base, _profile: profile })
        }

        /// The first page target (the `about:blank` tab).
        pub async fn page(&self) -> anyhow::Result<Page> {
            let http_base = self.ws_base.replacen("ws://", "http://", 1);
            let list: Vec<Value> =
                reqwest::get(format!("{http_base}/json/list")).await?.json().await?;
            let ws_url = list
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .context("no page target")?
                .to_string();
            Page::connect(&ws_url).await
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.start_kill();
        }
    }

    type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

    /// One page over its own websocket: commands by id, events broadcast.
    pub struct Page {
        out: mpsc::Sender<String>,
        pending: Pending,
        events: broadcast::Sender<Value>,
        next_id: AtomicU64,
    }

    impl Page {
        async fn connect(ws_url: &str) -> anyhow::Result<Page> {
            let (ws, _) =
                tokio_tungstenite::connect_async(ws_url).await.context("DevTools websocket")?;
            let (mut sink, mut stream) = ws.split();
            let (out, mut out_rx) = mpsc::channel::<String>(64);
            let pending: Pending = Arc::default();
            let (events, _) = broadcast::channel(1024);
            tokio::spawn(async move {
                while let Some(text) = out_rx.recv().await {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
            });
            let (p2, e2) = (pending.clone(), events.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    if let Some(id) = v["id"].as_u64() {
                        if let Some(tx) = p2.lock().await.remove(&id) {
                            let _ = tx.send(v);
                        }
                    } else {
                        let _ = e2.send(v);
                    }
                }
            });
            let page = Page { out, pending, events, next_id: AtomicU64::new(1) };
            page.call("Page.enable", json!({})).await?;
            page.call("Runtime.enable", json!({})).await?;
            page.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await?;
            Ok(page)
        }

        /// Send a command and wait for its answer's `result`.
        pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.pending.lock().await.insert(id, tx);
            let msg = json!({"id": id, "method": method, "params": params}).to_string();
            self.out.send(msg).await.context("DevTools connection closed")?;
            let v = tokio::time::timeout(BROWSER_WAIT, rx)
                .await
                .with_context(|| format!("{method}: no answer"))?
                .context("DevTools connection closed")?;
            if let Some(e) = v.get("error") {
                bail!("{method}: {e}");
            }
            Ok(v["result"].clone())
        }

        /// Load `url` and wait for its load event.
        pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
            let mut ev = self.events.subscribe();
            self.call("Page.navigate", json!({"url": url})).await?;
            tokio::time::timeout(BROWSER_WAIT, async {
                loop {
                    let e = ev.recv().await?;
                    if e["method"] == "Page.loadEventFired" {
                        return anyhow::Ok(());
                    }
                }
            })
            .await
            .with_context(|| format!("{url} did not load"))?
        }

        /// Evaluate `expr` in the page (promises awaited), returning its JSON value.
        pub async fn eval(&self, expr: &str) -> anyhow::Result<Value> {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
                )
                .await?;
            if let Some(ex) = r.get("exceptionDetails") {
                bail!("page threw: {ex}");
            }
            Ok(r["result"]["value"].clone())
        }

        /// Wait until `document.querySelector(selector)` exists; the page itself watches
        /// its DOM (MutationObserver), so this wakes on the change, with no polling.
        pub async fn wait_for(&self, selector: &str) -> anyhow::Result<()> {
            let sel = serde_json::to_string(selector)?;
            let ms = BROWSER_WAIT.as_millis();
            let expr = format!(
                r#"new Promise((resolve, reject) => {{
                    const found = () => document.querySelector({sel});
                    if (found()) return resolve(true);
                    const obs = new MutationObserver(() => {{ if (found()) {{ obs.disconnect(); resolve(true); }} }});
                    obs.observe(document, {{subtree: true, childList: true, attributes: true, characterData: true}});
                    setTimeout(() => {{ obs.disconnect(); reject(new Error("timed out waiting for " + {sel})); }}, {ms});
                }})"#
            );
            self.eval(&expr).await.with_context(|| format!("waiting for {selector}"))?;
            Ok(())
        }

        /// A real mouse click (trusted input events) in the middle of `selector`.
        pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
            let sel = serde_json::to_string(selector)?;
            let r = self
                .eval(&format!(
                    "(() => {{ const e = document.querySelector({sel}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); \
                     const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
                ))
                .await?;
            let (Some(x), Some(y)) = (r[0].as_f64(), r[1].as_f64()) else {
                bail!("nothing to click at {selector}")
            };
            for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
                self.call(
                    "Input.dispatchMouseEvent",
                    json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
                )
                .await?;
            }
            Ok(())
        }

        /// Text of the first element matching `selector`.
        pub async fn text(&self, selector: &str) -> anyhow::Result<String> {
            let sel = serde_json::to_string(selector)?;
            let v =
                self.eval(&format!("document.querySelector({sel})?.textContent ?? null")).await?;
            v.as_str().map(str::to_string).with_context(|| format!("no {selector}"))
        }

        /// Save a PNG of the whole page.
        pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
            use base64::Engine as _;
            let r = self
                .call(
                    "Page.captureScreenshot",
                    json!({"format": "png", "captureBeyondViewport": true}),
                )
                .await?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["data"].as_str().context("screenshot data")?)?;
            std::fs::write(path, data)?;
            Ok(())
        }
    }
}

/// An in-process exchange on 127.0.0.1:0 (the real one, from the exchange crate).
async fn start_exchange(
    dir: &std::path::Path,
) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let config =
        bitwrk_exchange::Config { db_path: dir.join("exchange.sqlite"), ..Default::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = bitwrk_exchange::serve(listener, config, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Ok((url, stop))
}

/// A `HostState` with a new key over a real in-process exchange, both in `dir`; the
/// exchange stops when the returned sender is dropped.
async fn fresh_state(
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<HostState>, tokio::sync::oneshot::Sender<()>)> {
    let (ex_url, stop) = start_exchange(dir).await?;
    let state = HostState::new(
        dir,
        PrivateKey::generate().address(),
        ExchangeClient::connect(&ex_url).await?,
    )?;
    Ok((state, stop))
}

/// Serve `state`'s UI on 127.0.0.1:0; returns its base URL.
async fn serve_ui(state: Arc<HostState>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, state.router()).await;
    });
    Ok(url)
}

/// Wait for the state to show a pending activity; returns its id.
async fn next_pending(
    events: &mut tokio::sync::broadcast::Receiver<UiEvent>,
) -> anyhow::Result<u64> {
    tokio::time::timeout(BROWSER_WAIT, async {
        loop {
            if let UiEvent::Activity { activity } = events.recv().await?
                && activity.state == ActivityState::Pending
            {
                return anyhow::Ok(activity.id);
            }
        }
    })
    .await
    .context("no pending activity appeared")?
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

const ARTICLE: Hash32 = Hash32([0x5a; 32]);

fn request(side: Side, price: u64) -> ActivityRequest {
    ActivityRequest { article: ARTICLE, article_name: "raytrace".into(), side, price: Sat(price) }
}

/// The UI against a `HostState` in this process: permit and forbid by clicking, make a
/// mandate in the permit dialog and see it cover the next request, live trade updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_permits_forbids_and_makes_mandates_in_chromium() -> anyhow::Result<()> {
    let Some(chromium) = cdp::find_chromium() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let (ex_url, _stop_exchange) = start_exchange(dir.path()).await?;
    let key = PrivateKey::generate();
    let state = HostState::new(dir.path(), key.address(), ExchangeClient::connect(&ex_url).await?)?;
    let mut events = state.subscribe();
    let ui = serve_ui(state.clone()).await?;

    let browser = cdp::Browser::launch(&chromium).await?;
    let page = browser.page().await?;
    page.navigate(&format!("{ui}/")).await?;
    page.wait_for("#live.on").await?;
    // The account comes from the real exchange: a new account's starting capital.
    page.wait_for("#available:not(:empty)").await?;
    page.wait_for("#address:not(:empty)").await?;
    assert_eq!(page.text("#address").await?, key.address().to_string());
    assert_eq!(page.text("#available").await?, "100,000,000 sat");
    assert_eq!(page.text("#blocked").await?, "0 sat");
    assert_eq!(
        page.text("#record").await?,
        "bought 0, sold 0; disputes won 0, lost 0; faults as seller 0; lapsed 0"
    );

    // 1. A buy waits; the user clicks Permit; request_permission returns Ok.
    let s = state.clone();
    let first = tokio::spawn(async move { s.request_permission(request(Side::Buy, 1000)).await });
    let id = next_pending(&mut events).await?;
    let card = format!(r#"#activities [data-activity-id="{id}"]"#);
    page.wait_for(&format!("{card} button[data-action=permit]")).await?;
    assert!(page.text(&card).await?.contains("Buy raytrace for 1,000 sat"));
    page.click(&format!("{card} button[data-action=permit]")).await?;
    assert_eq!(tokio::time::timeout(BROWSER_WAIT, first).await??, Ok(()));
    page.wait_for(&format!(
        r#"#activity-history-body tr[data-activity-id="{id}"][data-state=permitted]"#
    ))
    .await?;

    // 2. A sell waits; the user clicks Forbid.
    let s = state.clone();
    let second = tokio::spawn(async move { s.request_permission(request(Side::Sell, 50)).await });
    let id = next_pending(&mut events).await?;
    let card = format!(r#"#activities [data-activity-id="{id}"]"#);
    page.wait_for(&format!("{card} button[data-action=forbid]")).await?;
    page.click(&format!("{card} button[data-action=forbid]")).await?;
    assert_eq!(tokio::time::timeout(BROWSER_WAIT, second).await??, Err(Forbidden::ByUser));

    // 3. Permit with "from now on ... for 2 trades": a mandate appears and covers the next
    //    buy at once (no pending card), and a third is asked again.
    let s = state.clone();
    let third = tokio::spawn(async move { s.request_permission(request(Side::Buy, 900)).await });
    let id = next_pending(&mut events).await?;
    let card = format!(r#"#activities [data-activity-id="{id}"]"#);
    page.wait_for(&format!("{card} input.remember")).await?;
    page.click(&format!("{card} input.remember")).await?;
    page.eval(&format!(r#"document.querySelector('{card} input.m-trades').value = "2""#)).await?;
    page.click(&format!("{card} button[data-action=permit]")).await?;
    assert_eq!(tokio::time::timeout(BROWSER_WAIT, third).await??, Ok(()));
    page.wait_for("#mandates tr[data-mandate-id]").await?;
    let mandates = state.mandates();
    assert_eq!(mandates.len(), 1, "{mandates:?}");
    assert_eq!(
        (mandates[0].price_sat, mandates[0].trades_left, mandates[0].article),
        (Sat(900), Some(2), Some(ARTICLE))
    );
    assert_eq!(
        state.request_permission(request(Side::Buy, 800)).await,
        Ok(()),
        "covered by the mandate"
    );
    assert_eq!(state.mandates()[0].trades_left, Some(1));
    assert!(
        std::fs::read_to_string(dir.path().join("mandates.json"))?.contains("\"trades_left\": 1")
    );
    let s = state.clone();
    let over = tokio::spawn(async move { s.request_permission(request(Side::Buy, 901)).await });
    let id = next_pending(&mut events).await?; // above the mandate's price: asks
    page.wait_for(&format!(r#"#activities [data-activity-id="{id}"]"#)).await?;

    // 4. A mandate added in the form covers the waiting request.
    page.eval("document.querySelector('#mandate-form [name=price]').value = '5000'").await?;
    page.click("#mandate-form button[type=submit]").await?;
    assert_eq!(tokio::time::timeout(BROWSER_WAIT, over).await??, Ok(()));
    page.wait_for(&format!(
        r#"#activity-history-body tr[data-activity-id="{id}"][data-state=permitted]"#
    ))
    .await?;
    page.wait_for("#mandates tr[data-mandate-id] + tr[data-mandate-id]").await?;

    // 5. Revoke the first mandate by clicking; the list shrinks to one.
    page.click("#mandates tr[data-mandate-id='1'] button[data-action=revoke]").await?;
    page.wait_for("#mandates:not(:has(tr[data-mandate-id='1']))").await?;
    assert_eq!(state.mandates().iter().map(|m| m.id).collect::<Vec<_>>(), vec![2]);

    // 6. Trades and workers update live (SSE), without reloading the page.
    let now = bitwrk_host::state::now_ms();
    let mut t = TradeInfo {
        key: "b-ui-1".into(),
        article: ARTICLE,
        article_name: "raytrace".into(),
        side: Side::Buy,
        price_sat: Sat(1000),
        fee_sat: Sat(30),
        bid: Some("b-ui-1".parse()?),
        tx: None,
        // Permitted 200 ms after it asked: "took" counts from then.
        permitted_ms: Some(now + 200),
        phase: "bidding".into(),
        started_ms: now,
        updated_ms: now,
        finished: false,
        outcome: None,
        error: None,
        events: vec![],
    };
    state.trade_update(t.clone());
    page.wait_for(r#"#trades tr[data-trade-key="b-ui-1"][data-phase=bidding]"#).await?;
    for (i, phase) in
        ["establishing", "transmitting", "working", "unverified", "finished"].iter().enumerate()
    {
        t.phase = phase.to_string();
        t.tx = Some("t-ui-1".parse()?);
        t.updated_ms = now + 100 * (i as u64 + 1);
        t.finished = *phase == "finished";
        t.outcome = t.finished.then(|| "result accepted".into());
        state.trade_update(t.clone());
    }
    page.wait_for(r#"#trades tr[data-trade-key="b-ui-1"][data-finished=true]"#).await?;
    let row = page.text(r#"#trades tr[data-trade-key="b-ui-1"]"#).await?;
    assert!(row.contains("fee 30 sat"), "the fee is shown: {row}");
    // Finished at now + 500: it took 300 ms since the permission, not 500 ms.
    assert!(row.contains("300 ms") && !row.contains("500 ms"), "took: {row}");
    assert_eq!(state.trades()[0].events.len(), 6, "every phase recorded once");
    state.worker_update(WorkerInfo {
        slot: 0,
        article: ARTICLE,
        article_name: "raytrace".into(),
        busy: true,
        tx: Some("t-ui-2".parse()?),
        started_ms: Some(now),
    });
    page.wait_for(r#"#workers tr[data-slot="0"][data-busy=true]"#).await?;

    // A pending one for the picture (a sell: the buy mandate covers buys).
    let s = state.clone();
    let _waiting = tokio::spawn(async move { s.request_permission(request(Side::Sell, 70)).await });
    let id = next_pending(&mut events).await?;
    page.wait_for(&format!(r#"#activities [data-activity-id="{id}"]"#)).await?;
    page.wait_for(".book").await?;
    let shot = screenshot_path("ui-state.png");
    page.screenshot(&shot).await?;
    eprintln!("screenshot: {}", shot.display());

    // Mandates survive a restart (the user one; flag mandates are not saved).
    state.add_mandate(&"sell:*:10".parse()?, Origin::Flag)?;
    let again = HostState::new(dir.path(), key.address(), ExchangeClient::connect(&ex_url).await?)?;
    assert_eq!(again.mandates().iter().map(|m| m.id).collect::<Vec<_>>(), vec![2]);
    Ok(())
}

/// State-changing requests from foreign pages and rebinding host names are refused; the
/// UI's own page needs its token; scripts without browser headers keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_foreign_origins_and_hosts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (state, _stop) = fresh_state(dir.path()).await?;
    let ui = serve_ui(state.clone()).await?;
    let http = reqwest::Client::new();
    let spec = serde_json::json!({"side": "buy", "article": null, "price_sat": 5});
    let post = |origin: Option<&str>, token: Option<&str>| {
        let mut r = http.post(format!("{ui}/api/mandates")).json(&spec);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(t) = token {
            r = r.header(bitwrk_host::guard::TOKEN_HEADER, t);
        }
        r.send()
    };
    let refused = async |r: reqwest::Response, code: &str| -> anyhow::Result<()> {
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["error"], code, "{body}");
        Ok(())
    };
    let session: serde_json::Value =
        http.get(format!("{ui}/api/session")).send().await?.error_for_status()?.json().await?;
    let token = session["token"].as_str().context("a token")?.to_string();
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    refused(post(Some("http://evil.example"), None).await?, "forbidden_origin").await?;
    refused(post(Some("http://evil.example"), Some(&token)).await?, "forbidden_origin").await?;
    refused(post(Some("null"), None).await?, "forbidden_origin").await?;
    // Another port of this machine is another origin.
    refused(post(Some("http://127.0.0.1:1"), Some(&token)).await?, "forbidden_origin").await?;
    let cross = http
        .post(format!("{ui}/api/mandates"))
        .header("sec-fetch-site", "cross-site")
        .json(&spec)
        .send()
        .await?;
    refused(cross, "forbidden_origin").await?;
    // The UI's own origin, but without (or with a wrong) token: refused.
    refused(post(Some(&ui), None).await?, "forbidden_token").await?;
    refused(post(Some(&ui), Some("00".repeat(16).as_str())).await?, "forbidden_token").await?;
    assert!(state.mandates().is_empty());
    let rebound =
        http.get(format!("{ui}/api/mandates")).header("host", "evil.example:8081").send().await?;
    refused(rebound, "forbidden_host").await?;
    assert_eq!(post(Some(&ui), Some(&token)).await?.status(), 201);
    assert_eq!(post(None, None).await?.status(), 201, "scripts without Origin may");
    assert_eq!(state.mandates().len(), 2);
    // Bad input gets a clear 400 and changes nothing.
    let bad = http.post(format!("{ui}/api/mandates")).body("{\"side\":\"hold\"}").send().await?;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await?;
    assert_eq!(body["error"], "bad_request");
    let missing = http.post(format!("{ui}/api/activities/99/permit")).send().await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(state.mandates().len(), 2);
    Ok(())
}

/// The whole path: `bitwrk-host run` without a buy mandate, a real seller and exchange; a
/// buy waits for permission, the user clicks Permit in Chromium, and the page shows the
/// trade finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_in_chromium_lets_a_real_buy_finish() -> anyhow::Result<()> {
    let Some(chromium) = cdp::find_chromium() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let _seller =
        harness::seller("seller", &dir.path().join("seller"), &ex.url, &["wordcount:100"], 1)?;
    let buyer = harness::host("buyer", &dir.path().join("buyer"), &ex.url, &[])?;

    let browser = cdp::Browser::launch(&chromium).await?;
    let page = browser.page().await?;
    page.navigate(&format!("{}/", buyer.int_url)).await?;
    page.wait_for("#live.on").await?;

    let int_url = buyer.int_url.clone();
    let buy = tokio::spawn(async move {
        harness::buy(
            &int_url,
            "wordcount",
            vec![("text", b"one two two three three three".to_vec())],
            None,
        )
        .await
    });
    let card = "#activities [data-activity-id] button[data-action=permit]";
    page.wait_for(card).await?;
    assert!(!buy.is_finished(), "the buy must wait for permission");
    page.click(card).await?;
    page.wait_for("#activity-history-body tr[data-state=permitted]").await?;
    let bought = tokio::time::timeout(Duration::from_secs(300), buy)
        .await
        .context("buy did not finish")???;
    if bought.status != 303 && bought.status != 200 {
        bail!(
            "buy failed: {} {}\n{}",
            bought.status,
            String::from_utf8_lossy(&bought.body),
            buyer.proc.tail()
        );
    }
    page.wait_for("#trades tr[data-finished=true]").await?;
    let row = page.text("#trades tr[data-finished=true]").await?;
    assert!(row.contains("wordcount"), "{row}");
    // The balance follows without a reload: the buyer paid price + fee.
    page.wait_for("#available[data-sat]:not([data-sat='100000000'])").await?;
    page.screenshot(&screenshot_path("ui-trade.png")).await?;
    Ok(())
}

/// No decision within the wait counts as forbidden; a requester that gives up withdraws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_requests_time_out_and_cancelled_ones_withdraw() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (state, _stop) = fresh_state(dir.path()).await?;
    let mut events = state.subscribe();
    state.set_permission_wait(Duration::from_millis(300));
    assert_eq!(state.request_permission(request(Side::Buy, 10)).await, Err(Forbidden::TimedOut(0)));
    assert_eq!(state.activities()[0].state, ActivityState::TimedOut);

    state.set_permission_wait(Duration::from_secs(600));
    let s = state.clone();
    let waiting = tokio::spawn(async move { s.request_permission(request(Side::Buy, 20)).await });
    let id = loop {
        let id = next_pending(&mut events).await?;
        if id == 2 {
            break id;
        }
    };
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    let act = state.activities().into_iter().find(|a| a.id == id).context("activity 2")?;
    assert_eq!(act.state, ActivityState::Withdrawn);
    assert!(state.permit(id, None).is_err(), "a withdrawn activity cannot be permitted");
    Ok(())
}

/// `/api/events` starts with a snapshot that already holds what is pending, and every
/// change after it follows as an event: a page that applies them in order cannot lose a
/// pending activity to a reload racing the live stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_start_with_a_snapshot_and_changes_follow_it() -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    let dir = tempfile::tempdir()?;
    let (state, _stop) = fresh_state(dir.path()).await?;
    let mut events = state.subscribe();
    let s = state.clone();
    let waiting = tokio::spawn(async move { s.request_permission(request(Side::Buy, 7)).await });
    let id = next_pending(&mut events).await?;

    let ui = serve_ui(state.clone()).await?;
    let resp = reqwest::get(format!("{ui}/api/events")).await?;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    // The next complete server-sent event as (name, JSON data); keep-alives are skipped.
    let mut next_event = async || -> anyhow::Result<(String, serde_json::Value)> {
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !name.is_empty() {
                    return Ok((name, serde_json::from_str(&data)?));
                }
                continue;
            }
            let chunk = tokio::time::timeout(BROWSER_WAIT, body.next())
                .await
                .context("no event in time")?
                .context("event stream ended")??;
            buf.push_str(std::str::from_utf8(&chunk)?);
        }
    };
    let (name, snap) = next_event().await?;
    assert_eq!(name, "snapshot");
    let pending = &snap["activities"][0];
    assert_eq!((pending["id"].as_u64(), pending["state"].as_str()), (Some(id), Some("pending")));
    for list in ["trades", "workers", "mandates"] {
        assert!(snap[list].is_array(), "snapshot lacks {list}: {snap}");
    }

    state.permit(id, None)?;
    let (name, ev) = next_event().await?;
    assert_eq!(name, "activity");
    assert_eq!(ev["activity"]["id"].as_u64(), Some(id));
    assert_eq!(ev["activity"]["state"], "permitted");
    assert_eq!(waiting.await?, Ok(()));
    Ok(())
}

/// A host restarted under an open UI page has a new token: the page's next change is
/// refused once for the old token, fetches the new one and goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_follows_a_restarted_host_to_its_new_token() -> anyhow::Result<()> {
    let Some(chromium) = cdp::find_chromium() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let host_dir = dir.path().join("host");
    let first = harness::host("host", &host_dir, &ex.url, &[])?;
    let port = first.int_url.rsplit(':').next().context("int port")?.to_string();
    let browser = cdp::Browser::launch(&chromium).await?;
    let page = browser.page().await?;
    page.navigate(&format!("{}/", first.int_url)).await?;
    page.wait_for("#live.on").await?;
    let add_mandate = async |price: &str| -> anyhow::Result<()> {
        page.eval(&format!(
            "document.querySelector('#mandate-form [name=price]').value = '{price}'"
        ))
        .await?;
        page.click("#mandate-form button[type=submit]").await
    };
    add_mandate("111").await?;
    page.wait_for("#mandates tr[data-mandate-id]").await?;

    drop(first);
    page.wait_for("#live.off").await?;
    let args: Vec<String> = vec![
        "--data-dir".into(),
        host_dir.display().to_string(),
        "run".into(),
        "--exchange".into(),
        ex.url.clone(),
        "--int-port".into(),
        port,
    ];
    let second = harness::host_with_args("host-again", &args)?;
    page.wait_for("#live.on").await?;
    add_mandate("222").await?;
    page.wait_for("#mandates tr[data-mandate-id] + tr[data-mandate-id]").await?;
    let mandates: serde_json::Value =
        reqwest::get(format!("{}/api/mandates", second.int_url)).await?.json().await?;
    let prices: Vec<u64> = mandates
        .as_array()
        .context("mandates")?
        .iter()
        .filter_map(|m| m["price_sat"].as_u64())
        .collect();
    assert_eq!(prices, vec![111, 222]);
    Ok(())
}
