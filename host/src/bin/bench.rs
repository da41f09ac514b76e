//! `bitwrk-host-bench`: the trading core's figures in one run, in-process on loopback
//! (embedded exchange, one seller host, one buyer host):
//! - trade overhead: buy-to-result minus the bare sandbox run of the same work, p50/p99;
//! - trades/s with parallel buyers;
//! - a 50 MB input re-sent with 1 % edited: bytes on the wire / input size.
//!
//! `cargo build-articles && cargo run --release -p bitwrk-host --bin bitwrk-host-bench`

use std::net::{IpAddr, Ipv4Addr};

/// mimalloc instead of glibc's malloc: a host allocates per request (HTTP, JSON) on many
/// threads, where glibc's allocator took about a tenth of the CPU in the host bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_host::buyer::{BuyRequest, Progress, buy};
use bitwrk_host::run_cmd::{RunArgs, start};
use bitwrk_protocol::Sat;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "bitwrk-host-bench",
    about = "Trade overhead, throughput and transfer savings of bitwrk-host",
    help_expected = true
)]
struct Args {
    /// Sequential trades for the latency figures.
    #[arg(long, default_value_t = 300)]
    trades: usize,
    /// Trades for the throughput figure.
    #[arg(long, default_value_t = 1000)]
    parallel_trades: usize,
    /// Buyers in flight at once for the throughput figure.
    #[arg(long, default_value_t = 32)]
    buyers: usize,
    /// The seller's worker slots (and open sell bids).
    #[arg(long, default_value_t = 32)]
    slots: usize,
    /// Size of the re-sent input, bytes.
    #[arg(long, default_value_t = 50_000_000)]
    resend_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(bitwrk_host::log_colours())
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

/// CPU seconds (user + system) this process has used so far (Linux /proc, 1/100 s ticks).
fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (tick(11) + tick(12)) / 100.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let shutdown = CancellationToken::new();
    let exchange_shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let exchange_url = format!("http://{}", listener.local_addr()?);
    // Short bid lifetime keeps the book small; the rate limit and the funding quota are
    // per IP and every host here is 127.0.0.1, so they are off.
    let config = bitwrk_exchange::Config {
        db_path: dir.path().join("exchange.sqlite"),
        bid_lifetime_s: 30,
        rate_limit_per_s: 0,
        funded_accounts_per_ip_per_hour: 0,
        ..bitwrk_exchange::Config::default()
    };
    let sd = exchange_shutdown.clone();
    let exchange = tokio::spawn(async move {
        if let Err(e) = bitwrk_exchange::serve(listener, config, sd.cancelled_owned()).await {
            eprintln!("exchange: {e:#}");
        }
    });

    let (manifest, module) = bitwrk_host::local_articles::load("wordcount")?;
    // The re-send figure needs an article that takes a 50 MB input and answers in a few
    // bytes (wordcount takes 4 MiB): `checksum` (64 MiB in, ~140 B out).
    let (big, big_module) = bitwrk_host::local_articles::load("checksum")?;
    let client = ExchangeClient::connect(&exchange_url).await?;
    let publisher = bitwrk_protocol::PrivateKey::generate();
    client.publish(&publisher, &manifest, &module).await?;
    client.publish(&publisher, &big, &big_module).await?;

    let host_args = |sell: Vec<String>, mandate: &str| RunArgs {
        exchange: Some(exchange_url.clone()),
        exchange_port: 0,
        int_port: 0,
        ext_port: if sell.is_empty() { -1 } else { 0 },
        ext_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ext_addr: bitwrk_host::run_cmd::ExtAddr::Auto,
        num_unmatched_bids: args.slots,
        sell: sell.iter().map(|s| s.parse().expect("valid")).collect(),
        worker_slots: Some(args.slots),
        mandates: vec![mandate.parse().expect("valid")],
        store_max_bytes: 1 << 30,
        blender: None,
        blender_price: 100,
        permission_wait_ms: bitwrk_host::state::PERMISSION_WAIT_DEFAULT.as_millis() as u64,
        buy_permission_wait_ms: bitwrk_host::limits::BUY_PERMISSION_WAIT.as_millis() as u64,
        // Every host of the bench is on 127.0.0.1.
        lan_market: true,
    };
    let seller = start(
        &host_args(vec![format!("{}:100", manifest.id()), format!("{}:100", big.id())], "sell:*:0"),
        &dir.path().join("seller"),
        shutdown.clone(),
    )
    .await?;
    let buyer =
        start(&host_args(vec![], "buy:*:1000"), &dir.path().join("buyer"), shutdown.clone())
            .await?;
    let node = buyer.node.clone();
    let article = node.article(&manifest.id()).await?;
    let big_article = node.article(&big.id()).await?;

    // The bare sandbox run of the same work.
    let text = b"the quick brown fox jumps over the lazy dog ".repeat(20);
    let sandbox = bitwrk_runtime::Sandbox::new(bitwrk_runtime::SandboxConfig::new(
        dir.path().join("bare-cache"),
    ))?;
    let loaded = sandbox.load(&manifest, &module)?;
    // The sandbox blocks (it runs its own executor): off the async threads.
    let mut bare = tokio::task::block_in_place(|| -> anyhow::Result<Vec<Duration>> {
        let mut bare = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            sandbox.run(&loaded, vec![("text".into(), text.clone())])?;
            bare.push(t.elapsed());
        }
        Ok(bare)
    })?;
    bare.sort();
    let bare_p50 = pct(&bare, 0.5);

    // Warm-up: the seller loads the module, connections open.
    for _ in 0..5 {
        buy(
            &node,
            BuyRequest {
                article: article.clone(),
                inputs: vec![("text".into(), text.clone())],
                price: Some(Sat(100)),
            },
            None,
        )
        .await?;
    }

    // Sequential latency.
    let mut lat = Vec::with_capacity(args.trades);
    let mut steps: Vec<(String, Vec<Duration>)> = Vec::new();
    for i in 0..args.trades {
        // Vary the text so every trade carries new work (and a new chunk).
        let mut t = text.clone();
        t.extend_from_slice(format!(" trade{i}").as_bytes());
        let t0 = Instant::now();
        let out = buy(
            &node,
            BuyRequest {
                article: article.clone(),
                inputs: vec![("text".into(), t)],
                price: Some(Sat(100)),
            },
            None,
        )
        .await?;
        lat.push(t0.elapsed());
        let mut prev = Duration::ZERO;
        for (name, at) in out.steps {
            let slot = match steps.iter_mut().find(|(n, _)| *n == name) {
                Some(s) => s,
                None => {
                    steps.push((name, Vec::new()));
                    steps.last_mut().expect("just pushed")
                }
            };
            slot.1.push(at.saturating_sub(prev));
            prev = at;
        }
    }
    lat.sort();
    // Where a sequential trade's time goes: the median time from the previous step to
    // each step of the buyer (the step names are the buyer's, see buyer.rs).
    let breakdown: Vec<String> = steps
        .iter_mut()
        .map(|(name, d)| {
            d.sort();
            format!("{name} {:.2}", ms(pct(d, 0.5)))
        })
        .collect();
    let over: Vec<Duration> = lat.iter().map(|d| d.saturating_sub(bare_p50)).collect();

    // Throughput with parallel buyers.
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(args.buyers));
    let t0 = Instant::now();
    let cpu0 = process_cpu_s();
    let mut tasks = Vec::new();
    for i in 0..args.parallel_trades {
        let (node, article, text, done, failed, sem) = (
            node.clone(),
            article.clone(),
            text.clone(),
            done.clone(),
            failed.clone(),
            sem.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.expect("open");
            let mut t = text;
            t.extend_from_slice(format!(" par{i}").as_bytes());
            match buy(
                &node,
                BuyRequest { article, inputs: vec![("text".into(), t)], price: Some(Sat(100)) },
                None,
            )
            .await
            {
                Ok(_) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failed.lock().expect("lock").push(e.to_string()),
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    // Count until every accept is committed too, not just until the results are in.
    node.settled().await;
    let par_wall = t0.elapsed();
    let par_cpu = process_cpu_s() - cpu0;
    let ok = done.load(Ordering::Relaxed);
    let tps = ok as f64 / par_wall.as_secs_f64();

    // 50 MB re-sent with 1 % edited (in one place).
    let mut big_text = Vec::with_capacity(args.resend_bytes);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big_text.len() < args.resend_bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big_text.extend_from_slice(format!("w{} ", x % 5000).as_bytes());
    }
    big_text.truncate(args.resend_bytes);
    let wire = Arc::new(AtomicU64::new(0));
    let send = |data: Vec<u8>| {
        let wire = wire.clone();
        let node = node.clone();
        let big_article = big_article.clone();
        async move {
            wire.store(0, Ordering::Relaxed);
            let w = wire.clone();
            let progress = move |p: Progress| {
                if let Progress::Wire { bytes } = p {
                    w.store(bytes, Ordering::Relaxed);
                }
            };
            let r = buy(
                &node,
                BuyRequest {
                    article: big_article,
                    inputs: vec![("data".into(), data)],
                    price: Some(Sat(100)),
                },
                Some(&progress),
            )
            .await;
            (r.map(|_| ()).map_err(|e| e.to_string()), wire.load(Ordering::Relaxed))
        }
    };
    let (r1, wire1) = send(big_text.clone()).await;
    let mut edited = big_text.clone();
    let start_at = edited.len() / 2;
    let n = edited.len() / 100;
    for b in &mut edited[start_at..start_at + n] {
        *b = b'#';
    }
    let (r2, wire2) = send(edited).await;

    println!(
        "bitwrk-host bench (in-process, loopback; {} cores)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "bare sandbox run of the work (wordcount, {} B): p50 {:.3} ms",
        text.len(),
        ms(bare_p50)
    );
    println!(
        "trade latency ({} sequential trades): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().context("no trades")?)
    );
    println!("  median ms to each buyer step: {}", breakdown.join(", "));
    println!(
        "trade overhead (latency - bare run): p50 {:.2} ms (target <= 5), p99 {:.2} ms (target <= 25)",
        ms(pct(&over, 0.5)),
        ms(pct(&over, 0.99))
    );
    println!(
        "throughput: {ok} trades in {:.2} s with {} parallel buyers = {tps:.0} trades/s (target >= 300); {} failed",
        par_wall.as_secs_f64(),
        args.buyers,
        failed.lock().expect("lock").len()
    );
    println!(
        "  CPU of the whole process (exchange, seller, buyer, load): {:.2} ms per trade = {:.0} trades per CPU-second ({:.2} of {} cores busy)",
        1000.0 * par_cpu / ok.max(1) as f64,
        ok as f64 / par_cpu,
        par_cpu / par_wall.as_secs_f64(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if let Some(e) = failed.lock().expect("lock").first() {
        println!("  first failure: {e}");
    }
    println!(
        "re-send of {} MB with 1 % edited: first send {} B on the wire ({:.3} of input; outcome {:?}), re-send {} B = {:.4} of input (target <= 0.03; outcome {:?})",
        args.resend_bytes / 1_000_000,
        wire1,
        wire1 as f64 / args.resend_bytes as f64,
        r1,
        wire2,
        wire2 as f64 / args.resend_bytes as f64,
        r2
    );
    node.settled().await;
    let l = client.ledger().await?;
    let conserved = l.available_sat.0 + l.blocked_sat.0 + l.fees_sat.0 == l.created_sat.0;
    println!(
        "ledger: created {} = available {} + blocked {} + fees {}: {}",
        l.created_sat.0,
        l.available_sat.0,
        l.blocked_sat.0,
        l.fees_sat.0,
        if conserved { "conserved" } else { "NOT conserved" }
    );
    seller.stop().await;
    buyer.stop().await;
    exchange_shutdown.cancel();
    let _ = exchange.await;
    // A figure from a failed trade is no figure: the bench fails if any measured trade
    // did (the sequential ones already stopped it at the first failure).
    let par_failed = failed.lock().expect("lock").len();
    anyhow::ensure!(par_failed == 0, "{par_failed} of the parallel trades failed");
    r1.map_err(|e| anyhow::anyhow!("the first send of the re-send figure failed: {e}"))?;
    r2.map_err(|e| anyhow::anyhow!("the re-send failed: {e}"))?;
    anyhow::ensure!(conserved, "money was not conserved");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every flag has a description (`help_expected`), and clap's own checks pass.
    #[test]
    fn every_flag_is_described() {
        super::Args::command().debug_assert();
    }
}
