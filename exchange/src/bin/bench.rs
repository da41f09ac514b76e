//! `bitwrk-exchange-bench`: start an exchange in-process (fresh temp database), drive
//! signed bids over HTTP from concurrent clients for a fixed time, and print accepted
//! bids/s, p50/p99 latency, and the bare signature-check rate (recover + address) of
//! this machine in the same run, with the ratio of the two.
//!
//! `cargo run --profile dist -p bitwrk-exchange --bin bitwrk-exchange-bench -- --seconds 10 --clients 32`

/// mimalloc: glibc malloc/free took ~12 % of the exchange's request threads.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitwrk_exchange::Config;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::identity::{CompactSignature, message_hash};
use bitwrk_protocol::message::Operation;
use bitwrk_protocol::{Address, Envelope, Manifest, PrivateKey, Sat, Side};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "bitwrk-exchange-bench",
    about = "Throughput of signed bids over HTTP vs the bare signature check",
    help_expected = true
)]
struct Args {
    /// How long to drive bids.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent HTTP clients (each its own account).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Bids signed in advance per client (signing is not what is measured); a client
    /// that runs out stops early.
    #[arg(long, default_value_t = 4000)]
    bids_per_client: usize,
    /// The exchange's group-commit window (its `--commit-window-us`).
    #[arg(long, default_value_t = bitwrk_exchange::limits::COMMIT_WINDOW_US_DEFAULT)]
    commit_window_us: u64,
}

const ARTICLE_TOML: &str = r#"
name = "bench"
version = "1.0.0"
runtime = "native:blender-3.4"
[[inputs]]
name = "scene"
media_type = "application/x-blender"
max_bytes = 1000
[[outputs]]
name = "image"
media_type = "image/png"
max_bytes = 1000
[limits]
fuel = 1
memory_bytes = 65536
wall_ms = 1000
"#;

/// The check the exchange must do for an unknown key: recover, derive the address, compare.
fn bare_check(env: &Envelope, address: &Address) -> bool {
    let Ok(sig) = CompactSignature::from_base64(&env.signature) else { return false };
    sig.recover_address(&message_hash(&env.message)).is_ok_and(|a| &a == address)
}

/// CPU seconds (user + system) used so far by the threads of this process whose name
/// starts with one of `prefixes` (Linux: /proc/self/task/*/stat, in 1/100 s ticks).
fn threads_cpu_s(prefixes: &[&str]) -> f64 {
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return f64::NAN };
    let main_tid = std::process::id().to_string();
    for t in tasks.flatten() {
        if t.file_name().to_str() == Some(main_tid.as_str()) {
            // The bench's main thread drives the load generator's runtime; its name is
            // the truncated binary name, which looks like the exchange's writer's.
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        if !prefixes.iter().any(|p| comm.starts_with(p)) {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / USER_HZ
}

/// Linux reports thread CPU time in USER_HZ ticks, 100 per second on every mainstream build.
const USER_HZ: f64 = 100.0;

/// Names of the exchange's threads: the server runtime's and the SQLite writer's.
const SERVER_THREADS: &[&str] = &["xchg-server", "bitwrk-exchange"];
/// The writer alone (its name, `bitwrk-exchange-writer`, is cut to 15 bytes by Linux).
const WRITER_THREAD: &[&str] = &["bitwrk-exchange"];
const BARE_THREAD: &str = "bare-check";

/// Bare checks on `threads` threads for about `secs` seconds: (checks per wall second,
/// checks per CPU second).
fn bare_rate(envs: &[(Envelope, Address)], threads: usize, secs: f64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let counts: Vec<(u64, f64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(BARE_THREAD.into())
                    .spawn_scoped(s, move || {
                        let mut n = 0u64;
                        let mut i = t;
                        while !stop.load(Ordering::Relaxed) {
                            let (env, addr) = &envs[i % envs.len()];
                            assert!(bare_check(env, addr));
                            n += 1;
                            i += threads;
                        }
                        (n, threads_cpu_s_self())
                    })
                    .expect("spawning a bench thread")
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let n: u64 = counts.iter().map(|c| c.0).sum();
    let cpu: f64 = counts.iter().map(|c| c.1).sum();
    (n as f64 / start.elapsed().as_secs_f64(), n as f64 / cpu)
}

/// CPU seconds the calling thread has used.
fn threads_cpu_s_self() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return f64::NAN };
    let Some(close) = stat.rfind(')') else { return f64::NAN };
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (t(11) + t(12)) as f64 / USER_HZ
}

/// One keep-alive HTTP/1.1 connection: send a prepared request, read status and body.
struct HttpConn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl HttpConn {
    async fn connect(addr: &str) -> anyhow::Result<HttpConn> {
        let s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(HttpConn { stream: tokio::io::BufReader::new(s) })
    }

    async fn roundtrip(&mut self, req: &[u8]) -> anyhow::Result<u16> {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
        self.stream.get_mut().write_all(req).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The exchange runs on its own runtime (2 workers, like the shipped binary on this
    // machine) so that its CPU time can be told apart from the load generator's.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("xchg-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    client_rt.block_on(run(args, server_rt))
}

async fn run(args: Args, server_rt: tokio::runtime::Runtime) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let config = Config {
        db_path: dir.path().join("bench.sqlite"),
        // Every client is 127.0.0.1: no per-IP rate or funding quota.
        rate_limit_per_s: 0,
        funded_accounts_per_ip_per_hour: 0,
        commit_window_us: args.commit_window_us,
        ..Config::default()
    };
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let url = format!("http://{}", std_listener.local_addr()?);
    let listener = {
        let _in_server_rt = server_rt.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(bitwrk_exchange::serve(listener, config.clone(), async {
        let _ = stop_rx.await;
    }));
    let c = ExchangeClient::connect(&url).await?;
    let manifest = Manifest::from_toml(ARTICLE_TOML)?;
    let publisher = PrivateKey::generate();
    c.publish(&publisher, &manifest, &[]).await?;
    let article = manifest.id();

    // Sign everything first, on all cores: the run measures the exchange, not the signer.
    eprintln!("signing {} bids for {} clients…", args.clients * args.bids_per_client, args.clients);
    let keys: Vec<PrivateKey> = (0..args.clients).map(|_| PrivateKey::generate()).collect();
    let mut per_client: Vec<Vec<Envelope>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (c, key, n) = (c.clone(), key.clone(), args.bids_per_client);
        per_client.push(
            tokio::task::spawn_blocking(move || {
                (0..n)
                    .map(|j| {
                        // Buyers and sellers alternate at crossing prices: most bids trade.
                        let side = if (i + j).is_multiple_of(2) { Side::Buy } else { Side::Sell };
                        let price = Sat(100 + ((i * 31 + j * 7) % 50) as u64);
                        c.sign(&key, Operation::Bid { article, side, price, exclude: Vec::new() })
                    })
                    .collect()
            })
            .await?,
        );
    }

    // Requests are serialised in advance too, and sent by a minimal HTTP/1.1 keep-alive
    // client (one connection per client), so that the load generator's own cost, which
    // shares this machine's cores with the exchange, stays small.
    let addr = url.trim_start_matches("http://").to_string();
    let requests: Vec<Vec<Vec<u8>>> = per_client
        .iter()
        .map(|envs| {
            envs.iter()
                .map(|env| {
                    let body = serde_json::to_vec(env).expect("envelope serialises");
                    let mut req = format!(
                        "POST /v1/bids HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    req.extend_from_slice(&body);
                    req
                })
                .collect()
        })
        .collect();
    let sample: Vec<(Envelope, Address)> = per_client
        .iter()
        .zip(&keys)
        .flat_map(|(envs, k)| envs.iter().take(64).map(move |e| (e.clone(), k.address())))
        .collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (bare_before, bare_before_cpu) = bare_rate(&sample, 1, 2.0);
    eprintln!("driving bids for {} s…", args.seconds);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let cpu_before = threads_cpu_s(SERVER_THREADS);
    let writer_before = threads_cpu_s(WRITER_THREAD);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for reqs in requests {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(&addr).await?;
            let mut lat = Vec::with_capacity(reqs.len());
            let mut refused = 0u64;
            for req in reqs {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                if conn.roundtrip(&req).await? == 200 {
                    lat.push(t.elapsed());
                } else {
                    refused += 1;
                }
            }
            anyhow::Ok((lat, refused))
        }));
    }
    let mut lat = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (l, r) = t.await??;
        lat.extend(l);
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu_s = threads_cpu_s(SERVER_THREADS) - cpu_before;
    let writer_cpu_s = threads_cpu_s(WRITER_THREAD) - writer_before;
    lat.sort_unstable();
    let accepted = lat.len();
    let rate = accepted as f64 / elapsed;
    let ledger = c.ledger().await?;
    let metrics = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (committed, groups) =
        (counter("bitwrk_commands_committed_total"), counter("bitwrk_commit_groups_total"));
    anyhow::ensure!(
        ledger.available_sat.0 + ledger.blocked_sat.0 + ledger.fees_sat.0 == ledger.created_sat.0,
        "money not conserved: {ledger:?}"
    );
    let _ = stop_tx.send(());
    server.await??;
    server_rt.shutdown_background();

    // Restart on the same database: the time to rebuild the state from the log.
    let restart = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    bitwrk_exchange::serve(listener, config, async {}).await?;
    let restart_ms = restart.elapsed().as_secs_f64() * 1e3;

    // The physical limit, measured on the same machine right before and right after the
    // drive (other processes' load changes; the two are averaged).
    let (bare_after, bare_after_cpu) = bare_rate(&sample, 1, 2.0);
    let bare_1 = (bare_before + bare_after) / 2.0;
    let bare_1_cpu = (bare_before_cpu + bare_after_cpu) / 2.0;
    let (bare_all, _) = bare_rate(&sample, cores, 2.0);
    let per_cpu = accepted as f64 / server_cpu_s;

    println!(
        "machine                          {cores} cores (shared: other processes take their share)"
    );
    println!("clients                          {}", args.clients);
    println!("duration                         {elapsed:.2} s");
    println!(
        "accepted bids                    {accepted} ({refused} refused), {} trades matched",
        ledger.txs_total
    );
    println!("accepted bids/s                  {rate:.0}");
    println!(
        "latency p50 / p99                {:.2} ms / {:.2} ms",
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "exchange CPU during the run      {:.2} cores, {:.0} us per bid",
        server_cpu_s / elapsed,
        1e6 / per_cpu
    );
    println!(
        "  of which the writer thread     {:.0} us per bid (core, SQLite, fsync)",
        writer_cpu_s * 1e6 / accepted as f64
    );
    println!("accepted bids per exchange CPU-s {per_cpu:.0}");
    println!(
        "SQLite commits                   {groups:.0}, {:.1} commands per commit",
        committed / groups
    );
    println!("restart, replaying {} log rows  {restart_ms:.0} ms", accepted + 2);
    println!(
        "bare signature checks/s          {bare_1:.0} (1 thread), {bare_all:.0} ({cores} threads)"
    );
    println!("bare checks per CPU-s            {bare_1_cpu:.0}");
    println!("ratio (wall)  bids/s : bare/s    {:.2} (vs {cores} threads)", rate / bare_all);
    println!("ratio (CPU)   bids : checks      {:.2} per CPU second", per_cpu / bare_1_cpu);
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
