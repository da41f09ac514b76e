//! A hostile web page against a running host (issue 13, items 1 and 2): a page served from
//! a foreign origin (127.0.0.2) in real headless Chromium submits a form and fetches to the
//! host's `/buy`, POSTs `/api/mandates`, tries to read the UI token and frames a result
//! declared `text/html`; the user opening that result directly runs no script either. The
//! host's state is checked afterwards: no mandate made, no trade. Programs without a
//! browser (curl, scripts, the Blender add-on) keep buying and fetching results.

use anyhow::Context as _;
use axum::response::Html;
use bitwrk_protocol::{Hash32, Manifest, PrivateKey};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness;
use crate::ui::cdp;

/// How long the hostile page waits for one of its frames to load before it goes on (a
/// refused frame may never fire `load`); bounds the page's whole run.
const FRAME_WAIT_MS: u64 = 5000;

/// The attacker's article: the runtime's echo test guest, its output declared `text/html`.
fn html_article() -> anyhow::Result<(Manifest, Vec<u8>)> {
    let path = bitwrk_host::local_articles::wasm_dir().join("hostile_echo.wasm");
    let module = std::fs::read(&path)
        .with_context(|| format!("{} (cargo build-articles)", path.display()))?;
    let text = format!(
        "name = \"page\"\nversion = \"1.0.0\"\nruntime = \"wasm\"\nmodule_sha256 = \"{}\"\n\
         [[inputs]]\nname = \"text\"\nmedia_type = \"text/plain\"\nmax_bytes = 65536\n\
         [[outputs]]\nname = \"echo\"\nmedia_type = \"text/html\"\nmax_bytes = 65536\n\
         [[outputs]]\nname = \"probe\"\nmedia_type = \"text/plain\"\nmax_bytes = 4096\n\
         [limits]\nfuel = 10000000000\nmemory_bytes = 67108864\nwall_ms = 20000\n",
        Hash32::of(&module)
    );
    Ok((Manifest::from_toml(&text)?, module))
}

/// What the attacker's result does if a browser runs it on the admin origin: read the UI
/// token, make an unlimited buy mandate, and mark the page.
const PAYLOAD: &str = r#"<!doctype html><title>result</title><script>
(async () => {
  document.title = "pwned";
  const s = await (await fetch("/api/session")).json();
  await fetch("/api/mandates", {method: "POST",
    headers: {"Content-Type": "application/json", "X-Bitwrk-Token": s.token},
    body: JSON.stringify({side: "buy", article: null, price_sat: 99999})});
})();
</script>"#;

/// The hostile page: every attack, then a report of what the page saw to its own server.
fn attack_page(target: &str, file_sha: &str) -> String {
    format!(
        r#"<!doctype html><title>cheap renders</title><body><script>
const T = "{target}";
const results = {{}};
const inFrame = (name, start) => new Promise((resolve) => {{
  const f = document.createElement("iframe");
  f.name = name;
  f.onload = () => resolve("loaded");
  setTimeout(() => resolve("no load event"), {FRAME_WAIT_MS});
  document.body.appendChild(f);
  start(f);
}});
const formTo = (frame, action, enctype, fields) => {{
  const form = document.createElement("form");
  form.method = "POST"; form.action = action; form.enctype = enctype; form.target = frame;
  for (const [k, v] of Object.entries(fields)) {{
    const t = document.createElement("textarea"); t.name = k; t.value = v; form.appendChild(t);
  }}
  document.body.appendChild(form);
  form.submit();
}};
const tryFetch = async (key, url, opts) => {{
  try {{ const r = await fetch(url, opts); results[key] = "answered " + r.type + " " + r.status; }}
  catch (e) {{ results[key] = "blocked"; }}
}};
(async () => {{
  results.form_buy = await inFrame("f1", () =>
    formTo("f1", T + "/buy/wordcount", "multipart/form-data", {{data: "csrf csrf csrf"}}));
  results.form_mandate = await inFrame("f2", () =>
    formTo("f2", T + "/api/mandates", "text/plain", {{'{{"side":"buy","article":null,"price_sat":99999,"x":"': '"}}'}}));
  await tryFetch("fetch_buy", T + "/buy/wordcount",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: "no cors"}});
  await tryFetch("fetch_mandate", T + "/api/mandates",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
      body: JSON.stringify({{side: "buy", article: null, price_sat: 99999}})}});
  await tryFetch("read_session", T + "/api/session", {{}});
  await tryFetch("read_file", T + "/file/{file_sha}", {{}});
  results.file_frame = await inFrame("f3", (f) => {{ f.src = T + "/file/{file_sha}"; }});
  await fetch("/report", {{method: "POST", body: JSON.stringify(results)}});
}})();
</script></body>"#
    )
}

/// Serve the hostile page on 127.0.0.2 (another origin, and another site, than the host's
/// 127.0.0.1); the page's report arrives on the returned channel.
async fn hostile_server(page: String) -> anyhow::Result<(String, mpsc::Receiver<Value>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .context("binding 127.0.0.2 (a second loopback address)")?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = mpsc::channel(4);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let page = page.clone();
                async move { Html(page) }
            }),
        )
        .route(
            "/report",
            axum::routing::post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
                    let _ = tx.send(v).await;
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, rx))
}

async fn get_json(url: &str) -> anyhow::Result<Value> {
    Ok(reqwest::get(url).await?.error_for_status()?.json().await?)
}

/// What the host's admin API says: (mandate prices, traded article names).
async fn host_state(int_url: &str) -> anyhow::Result<(Vec<u64>, Vec<String>)> {
    let mandates = get_json(&format!("{int_url}/api/mandates")).await?;
    let trades = get_json(&format!("{int_url}/api/trades")).await?;
    let prices = mandates
        .as_array()
        .context("mandates")?
        .iter()
        .filter_map(|m| m["price_sat"].as_u64())
        .collect();
    let names = trades
        .as_array()
        .context("trades")?
        .iter()
        .filter_map(|t| t["article_name"].as_str().map(str::to_string))
        .collect();
    Ok((prices, names))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_page_cannot_buy_mandate_or_run_script_on_the_host() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    let client = harness::publish(&ex.url, &["wordcount"]).await?;
    let (manifest, module) = html_article()?;
    client.publish(&PrivateKey::generate(), &manifest, &module).await?;
    let _seller = harness::seller(
        "seller",
        &dir.path().join("seller"),
        &ex.url,
        &["wordcount:100", "page:100"],
        2,
    )?;
    // The victim has a standing mandate: a forged buy would not even need a click.
    let victim = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    let int = victim.int_url.clone();
    let http = reqwest::Client::new();

    // The user's own script buys the attacker's article (no browser headers: it works).
    let resp = http
        .post(format!("{int}/buy/page"))
        .header("content-type", "text/plain")
        .body(PAYLOAD)
        .send()
        .await?;
    assert_eq!(resp.status(), 200, "{}", victim.proc.tail());
    let answer: Value = resp.json().await?;
    let echo = answer["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "echo"))
        .context("the echo output")?;
    assert_eq!(echo["media_type"], "text/html");
    let file_url = format!("{int}{}", echo["url"].as_str().context("url")?);
    let sha = echo["sha256"].as_str().context("sha256")?.to_string();

    // `/file` never serves it as a page: a sandboxed download, not sniffed.
    let got = http.get(&file_url).send().await?;
    assert_eq!(got.status(), 200);
    let h = |n: &str| got.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(h("content-type"), "application/octet-stream");
    assert_eq!(h("content-disposition"), "attachment");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert!(
        h("content-security-policy").starts_with("sandbox"),
        "{}",
        h("content-security-policy")
    );
    assert_eq!(got.bytes().await?.as_ref(), PAYLOAD.as_bytes(), "curl still gets the bytes");

    // Without a browser: foreign Host (DNS rebinding), Origin and Sec-Fetch-Site are
    // refused on /buy and /file as on /api.
    let forged: [(&str, &str); 3] = [
        ("host", "evil.example:8081"),
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    for (name, value) in forged {
        let buy = http
            .post(format!("{int}/buy/wordcount"))
            .header("content-type", "text/plain")
            .header(name, value)
            .body("forged forged")
            .send()
            .await?;
        assert_eq!(buy.status(), 403, "/buy with {name}: {value}");
        let body: Value = buy.json().await?;
        assert!(body["error"].as_str().is_some_and(|e| e.starts_with("forbidden_")), "{body}");
        let file = http.get(&file_url).header(name, value).send().await?;
        assert_eq!(file.status(), 403, "/file with {name}: {value}");
    }
    assert_eq!(host_state(&int).await?, (vec![1000], vec!["page".to_string()]));

    let Some(chromium) = cdp::find_chromium() else { return Ok(()) };
    let (evil, mut reports) = hostile_server(attack_page(&int, &sha)).await?;
    let browser = cdp::Browser::launch(&chromium).await?;
    let page = browser.page().await?;
    page.navigate(&format!("{evil}/")).await?;
    let report = tokio::time::timeout(harness::EVENT_TIMEOUT, reports.recv())
        .await
        .context("the hostile page did not report")?
        .context("report channel closed")?;
    eprintln!("hostile page saw: {report}");
    // The page could not read the token or the result (CORS and the guard).
    assert_eq!(report["read_session"], "blocked", "{report}");
    assert_eq!(report["read_file"], "blocked", "{report}");
    // Every request it sent reached the host and was refused there.
    victim.proc.wait_line("method=POST uri=/api/mandates")?;
    // The host's state after all of it: no new mandate, no trade but the user's own.
    assert_eq!(host_state(&int).await?, (vec![1000], vec!["page".to_string()]));

    // The user opens the result in the browser (typed: no foreign origin). It is a
    // download: the admin origin never shows it as a page, so its script never runs.
    // Downloads go nowhere (older Chromium names this on the page, newer on the browser).
    let deny = json!({"behavior": "deny"});
    if page.call("Page.setDownloadBehavior", deny.clone()).await.is_err()
        && let Err(e) = page.call("Browser.setDownloadBehavior", deny).await
    {
        eprintln!("downloads not denied ({e}): the result may land in the download folder");
    }
    let nav = page.call("Page.navigate", json!({"url": file_url})).await?;
    eprintln!("opening the result: {nav}");
    let here = page.eval("[location.href, document.title]").await?;
    assert_ne!(here[0], file_url.as_str(), "the result became a page: {here}");
    assert_ne!(here[1], "pwned", "{here}");
    // The admin UI on the same origin still works, with its token (a mandate made there).
    page.navigate(&format!("{int}/")).await?;
    page.wait_for("#live.on").await?;
    page.eval("document.querySelector('#mandate-form [name=price]').value = '777'").await?;
    page.click("#mandate-form button[type=submit]").await?;
    page.wait_for("#mandates tr[data-mandate-id] + tr[data-mandate-id]").await?;
    let (prices, trades) = host_state(&int).await?;
    assert_eq!(prices, vec![1000, 777], "only the user's mandates");
    assert_eq!(trades, vec!["page".to_string()]);
    let title = page.eval("document.title").await?;
    assert_ne!(title, "pwned");
    Ok(())
}
