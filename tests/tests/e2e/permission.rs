//! Permissions as a newcomer meets them (issue 11): the README's seller recipe sells word
//! for word, and without its mandate the seller says what to permit and keeps asking; a
//! sell mandate for N trades gives N sales however often its bids expire; an uncovered
//! proxy buy answers `permission_required` in time; bad prices are refused up front.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::harness::{self, Host, buy};

/// The README's seller command line, without the leading `bitwrk-host`.
fn readme_seller_args() -> anyhow::Result<Vec<String>> {
    let root = bitwrk_host::local_articles::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("bitwrk-host run ") && l.contains("--sell "))
        .context("README has no seller command line")?;
    let command = line.split('#').next().unwrap_or_default();
    let mut words = command.split_whitespace().map(str::to_string);
    assert_eq!(words.next().as_deref(), Some("bitwrk-host"));
    Ok(words.collect())
}

/// `args` with the value after `flag` replaced; the flag must be there.
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[i + 1] = value.to_string();
}

/// The README seller line made runnable in a test: its own exchange, free ports, a temp
/// data dir, and `--ext-addr 127.0.0.1` so buyers reach it on loopback (the README's
/// default advertises this machine's network address, which a test must not use).
/// Every other word is the README's.
fn seller_from_readme(exchange: &str, dir: &Path, mandate: bool, extra: &[&str]) -> Vec<String> {
    let mut args = readme_seller_args().expect("README seller line");
    let line = args.join(" ");
    assert!(
        line.contains("--sell wordcount:100 --mandate sell:wordcount:100"),
        "the README's seller changed: {line}"
    );
    set_flag(&mut args, "--exchange", exchange);
    set_flag(&mut args, "--ext-port", "0");
    set_flag(&mut args, "--int-port", "0");
    set_flag(&mut args, "--data-dir", &dir.display().to_string());
    if !mandate {
        let i = args.iter().position(|a| a == "--mandate").expect("--mandate");
        args.drain(i..i + 2);
    }
    args.extend(["--ext-addr", "127.0.0.1"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn get_json(url: &str) -> anyhow::Result<Value> {
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

/// Poll `check` until it gives `Some`, for at most [`harness::EVENT_TIMEOUT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let end = Instant::now() + harness::EVENT_TIMEOUT;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < end, "{what}: not within {:?}", harness::EVENT_TIMEOUT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The host's activities in one state, on one side.
async fn activities(host: &Host, side: &str, state: &str) -> anyhow::Result<Vec<Value>> {
    let all = get_json(&format!("{}/api/activities", host.int_url)).await?;
    Ok(all
        .as_array()
        .context("activities")?
        .iter()
        .filter(|a| a["side"] == side && a["state"] == state)
        .cloned()
        .collect())
}

const WORDS: &[u8] = b"one two two three three three";

fn assert_counts(got: &harness::Bought, host: &Host) {
    assert_eq!(got.status, 303, "{}\n{}", String::from_utf8_lossy(&got.body), host.proc.tail());
    let counts: Value = serde_json::from_slice(&got.body).expect("counts JSON");
    assert_eq!(counts["counts"]["three"], 3, "{counts}");
}

/// The README's seller sells as written; without its `--mandate` it logs the UI URL and
/// the exact flag, asks at once, asks again when nobody answered (not minutes later), the
/// UI says it waits for permission to sell, and a mandate given in the UI's API lets it sell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_seller_sells_and_without_a_mandate_keeps_asking() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let buyer = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;

    // Word for word (but for ports, dirs and the loopback address): it sells.
    let args = seller_from_readme(&ex.url, &dir.path().join("seller"), true, &[]);
    let seller = harness::host_with_args("seller", &args)?;
    let got = buy(&buyer.int_url, "wordcount", vec![("data", WORDS.to_vec())], None).await?;
    assert_counts(&got, &buyer);
    // A market of its own for the rest: the first seller's bid rests in this one's book.
    drop((seller, buyer));
    let ex = harness::exchange(&dir.path().join("exchange2"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let buyer = harness::buyer(&dir.path().join("buyer2"), &ex.url, 1000)?;

    // Without the mandate: a warning naming the UI and the flag, at once.
    let wait = "1000";
    let args = seller_from_readme(
        &ex.url,
        &dir.path().join("seller2"),
        false,
        &["--permission-wait-ms", wait],
    );
    let seller = harness::host_with_args("seller2", &args)?;
    // The first ask may come before the ready line the harness waited for.
    let asked = seller.proc.wait_logged("waiting for permission")?;
    assert!(asked.contains("WARN"), "{asked}");
    assert!(asked.contains(&format!("{}/", seller.int_url)), "names the UI: {asked}");
    assert!(asked.contains("--mandate sell:wordcount:100"), "names the flag: {asked}");
    // Nobody answers: it asks again right after the wait, with a new activity.
    let t = Instant::now();
    seller.proc.wait_line("asking again")?;
    seller.proc.wait_line("waiting for permission")?;
    assert!(t.elapsed() < Duration::from_secs(30), "asked again after {:?}", t.elapsed());
    let lapsed = activities(&seller, "sell", "timed_out").await?;
    assert!(!lapsed.is_empty(), "the first request lapsed");
    let pending = eventually("a pending sell", || async {
        let p = activities(&seller, "sell", "pending").await?;
        Ok((!p.is_empty()).then_some(p))
    })
    .await?;
    assert_eq!(pending[0]["article_name"], "wordcount");
    assert_eq!(pending[0]["price_sat"], 100);

    // The UI says so (in a real browser, when there is one).
    if let Some(chromium) = crate::ui::cdp::find_chromium() {
        let browser = crate::ui::cdp::Browser::launch(&chromium).await?;
        let page = browser.page().await?;
        page.navigate(&format!("{}/", seller.int_url)).await?;
        page.wait_for("#live.on").await?;
        let text = page
            .eval(&format!(
                r#"new Promise((resolve, reject) => {{
                    const el = document.getElementById("no-workers");
                    const ok = () => el.textContent.includes("Waiting for your permission to sell wordcount");
                    if (ok()) return resolve(el.textContent);
                    const obs = new MutationObserver(() => {{ if (ok()) {{ obs.disconnect(); resolve(el.textContent); }} }});
                    obs.observe(el, {{subtree: true, childList: true, characterData: true}});
                    setTimeout(() => {{ obs.disconnect(); reject(new Error(el.textContent)); }}, {});
                }})"#,
                harness::EVENT_TIMEOUT.as_millis()
            ))
            .await?;
        assert!(text.as_str().is_some_and(|t| t.contains("permit it")), "{text}");
    }

    // A mandate made through the admin API (a script: no browser headers) lets it sell.
    let spec = serde_json::json!({"side": "sell", "article": null, "price_sat": 100});
    let made = reqwest::Client::new()
        .post(format!("{}/api/mandates", seller.int_url))
        .json(&spec)
        .send()
        .await?;
    assert_eq!(made.status(), 201);
    let got = buy(&buyer.int_url, "wordcount", vec![("data", WORDS.to_vec())], None).await?;
    assert_counts(&got, &buyer);
    Ok(())
}

/// A sell mandate for N trades gives N sales: bids that expire unmatched are placed again
/// under the same permission, and only a match uses one. Then the seller asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_mandate_for_n_trades_gives_n_sales() -> anyhow::Result<()> {
    const TRADES: u64 = 2;
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &["--bid-lifetime-s", "1"])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let mandate = format!("sell:wordcount:100:trades={TRADES}");
    let seller = harness::host(
        "seller",
        &dir.path().join("seller"),
        &ex.url,
        &[
            "--ext-port",
            "0",
            "--ext-addr",
            "127.0.0.1",
            "--worker-slots",
            "1",
            "--sell",
            "wordcount:100",
            "--mandate",
            &mandate,
        ],
    )?;
    // Several bids expire unmatched before anyone buys.
    for _ in 0..3 {
        seller.proc.wait_line("placing another under the same permission")?;
    }
    let mandates = get_json(&format!("{}/api/mandates", seller.int_url)).await?;
    assert_eq!(mandates[0]["trades_left"], TRADES - 1, "one permission taken: {mandates}");
    assert_eq!(mandates[0]["used"], 1, "{mandates}");

    let buyer = harness::buyer(&dir.path().join("buyer"), &ex.url, 1000)?;
    for _ in 0..TRADES {
        let got = buy(&buyer.int_url, "wordcount", vec![("data", WORDS.to_vec())], None).await?;
        assert_counts(&got, &buyer);
    }
    // The mandate is spent on sales only; the seller now asks, and says how to permit.
    let asked = seller.proc.wait_line("waiting for permission")?;
    assert!(asked.contains("--mandate sell:wordcount:100"), "{asked}");
    let mandates = get_json(&format!("{}/api/mandates", seller.int_url)).await?;
    assert_eq!(mandates, serde_json::json!([]), "spent after {TRADES} sales");
    let sold = eventually("the sales settle on the seller", || async {
        let trades = get_json(&format!("{}/api/trades", seller.int_url)).await?;
        let sells: Vec<Value> = trades
            .as_array()
            .context("trades")?
            .iter()
            .filter(|t| t["side"] == "sell" && t["tx"].is_string())
            .cloned()
            .collect();
        Ok((sells.len() as u64 == TRADES && sells.iter().all(|t| t["finished"] == true))
            .then_some(sells))
    })
    .await?;
    assert_eq!(sold.len() as u64, TRADES);
    let permitted = activities(&seller, "sell", "permitted").await?;
    assert_eq!(permitted.len() as u64, TRADES, "one permission per sale: {permitted:?}");
    Ok(())
}

/// A buy no mandate covers answers 403 `permission_required` (JSON, naming what to permit)
/// once the buy permission wait is over; a bad `?price=` is a JSON 400 before the article
/// is looked up on the exchange and before a mandate is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncovered_buy_answers_permission_required_in_time() -> anyhow::Result<()> {
    /// The buy permission wait given to the host, and how late its answer may come.
    const WAIT_MS: u64 = 1000;
    const ANSWER_WITHIN: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let buyer = harness::host(
        "buyer",
        &dir.path().join("buyer"),
        &ex.url,
        &[
            "--mandate",
            "buy:wordcount:10:trades=5",
            "--buy-permission-wait-ms",
            &WAIT_MS.to_string(),
        ],
    )?;
    let http = reqwest::Client::new();
    let post = |path: String| {
        http.post(format!("{}{path}", buyer.int_url))
            .header("content-type", "text/plain")
            .body(WORDS.to_vec())
            .send()
    };

    // Above the mandate's price: nobody permits it, and the answer comes in time.
    let t = Instant::now();
    let resp = post("/buy/wordcount?price=500".into()).await?;
    let took = t.elapsed();
    assert_eq!(resp.status(), 403);
    assert!(took >= Duration::from_millis(WAIT_MS), "answered before the wait: {took:?}");
    assert!(took < ANSWER_WITHIN, "answered after {took:?}");
    let body: Value = resp.json().await?;
    assert_eq!(body["error"], "permission_required", "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("--mandate buy:wordcount:500"), "{msg}");
    assert!(msg.contains(&format!("{}/", buyer.int_url)), "{msg}");
    assert_eq!(activities(&buyer, "buy", "timed_out").await?.len(), 1);

    // Bad prices: JSON 400, before the exchange (an unknown article is not even looked up)
    // and before any mandate (a price of 0 would be under this one's 10 sat).
    for path in [
        "/buy/wordcount?price=abc",
        "/buy/wordcount?price=0",
        "/buy/no-such-article?price=abc",
        "/buy/no-such-article?price=0",
        "/buy/wordcount?price=-5",
    ] {
        let resp = post(path.into()).await?;
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.with_context(|| format!("{path}: JSON"))?;
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
    }
    let all = get_json(&format!("{}/api/activities", buyer.int_url)).await?;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "no activity for a bad price: {all}");
    let mandates = get_json(&format!("{}/api/mandates", buyer.int_url)).await?;
    assert_eq!(
        (mandates[0]["trades_left"].as_u64(), mandates[0]["used"].as_u64()),
        (Some(5), Some(0))
    );
    Ok(())
}

/// Buys waiting for permission are capped per origin and give back their proxy slot: a
/// flood of uncovered buys (more than the proxy serves at once) does not hold up a buy
/// that a mandate covers, and the requests beyond the cap are refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_buys_do_not_hold_up_covered_ones() -> anyhow::Result<()> {
    use bitwrk_host::limits::BUY_CONCURRENT_MAX;
    use bitwrk_host::state::PARKED_PER_ORIGIN_MAX;
    let flood = BUY_CONCURRENT_MAX + PARKED_PER_ORIGIN_MAX;
    let dir = tempfile::tempdir()?;
    let ex = harness::exchange(&dir.path().join("exchange"), &[])?;
    harness::publish(&ex.url, &["wordcount"]).await?;
    let _seller = harness::seller("seller", &dir.path().join("s"), &ex.url, &["wordcount:100"], 1)?;
    let buyer = harness::host(
        "buyer",
        &dir.path().join("buyer"),
        &ex.url,
        &["--mandate", "buy:wordcount:1000"],
    )?;

    // Above the mandate's price: each of these waits for a click nobody gives.
    let (done_tx, mut done) = tokio::sync::mpsc::channel(flood);
    let http = reqwest::Client::new();
    for _ in 0..flood {
        let (http, url, done_tx) = (http.clone(), buyer.int_url.clone(), done_tx.clone());
        tokio::spawn(async move {
            let r = http
                .post(format!("{url}/buy/wordcount?price=5000"))
                .header("content-type", "text/plain")
                .body(WORDS.to_vec())
                .send()
                .await;
            let answer = match r {
                Ok(r) => (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default()),
                Err(e) => (0, Value::String(e.to_string())),
            };
            let _ = done_tx.send(answer).await;
        });
    }
    // All but the cap are refused at once, saying why.
    for _ in 0..flood - PARKED_PER_ORIGIN_MAX {
        let (status, body) = tokio::time::timeout(harness::EVENT_TIMEOUT, done.recv())
            .await
            .context("a refusal")?
            .context("channel")?;
        assert_eq!(status, 403, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("already waiting")), "{body}");
    }
    let parked = activities(&buyer, "buy", "pending").await?;
    assert_eq!(parked.len(), PARKED_PER_ORIGIN_MAX);

    // The user's own covered buy goes through while they wait.
    let got = buy(&buyer.int_url, "wordcount", vec![("data", WORDS.to_vec())], None).await?;
    assert_counts(&got, &buyer);
    assert_eq!(activities(&buyer, "buy", "pending").await?.len(), PARKED_PER_ORIGIN_MAX);
    assert!(done.try_recv().is_err(), "the parked ones still wait");
    Ok(())
}
