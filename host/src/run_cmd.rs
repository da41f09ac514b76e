//! `bitwrk-host run`: both sides of a trade. The internal port (127.0.0.1) serves the
//! buying proxy and the admin UI; the external port (when `--ext-port` ≥ 0) serves the
//! transfer to buyers and the host sells the `--sell` articles. Without `--exchange` an
//! exchange runs in-process on `data_dir/exchange.sqlite`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::mandates::{MandateArg, Origin};
use crate::node::{Gate, Node};
use crate::proxy::Proxy;
use crate::seller::{Engines, SellSpec, Seller, SellerConfig};
use crate::state::HostState;
use crate::store::Store;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The exchange's URL; without it an exchange runs in-process (one machine works
    /// out of the box) on data_dir/exchange.sqlite.
    #[arg(long, env = "BITWRK_EXCHANGE")]
    pub exchange: Option<String>,
    /// Port of the embedded exchange (127.0.0.1; 0 picks a free one). Only without --exchange.
    #[arg(long, env = "BITWRK_EXCHANGE_PORT", default_value_t = 8080)]
    pub exchange_port: u16,
    /// Internal port: buying proxy and admin UI, bound to 127.0.0.1 only (0: a free one).
    #[arg(long, env = "BITWRK_INT_PORT", default_value_t = 8081)]
    pub int_port: u16,
    /// External port buyers reach this host's worker on; -1 turns selling off (0: a free one).
    #[arg(long, env = "BITWRK_EXT_PORT", default_value_t = -1, allow_negative_numbers = true)]
    pub ext_port: i32,
    /// Address the external port binds to (0.0.0.0: every interface).
    #[arg(long, env = "BITWRK_EXT_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub ext_bind: IpAddr,
    /// Where buyers reach the external port: an IP address, a host name, or `auto` (the
    /// --ext-bind address if it is one, else the address of the interface this machine
    /// reaches the outside through). Behind NAT give the public address or name.
    #[arg(long, env = "BITWRK_EXT_ADDR", default_value_t = ExtAddr::Auto, value_name = "ADDR|HOST|auto")]
    pub ext_addr: ExtAddr,
    /// Unmatched sell bids kept open per sold article.
    #[arg(long, env = "BITWRK_NUM_UNMATCHED_BIDS", default_value_t = 1)]
    pub num_unmatched_bids: usize,
    /// Sell ARTICLE (id or name) at MIN_PRICE sat or more [default price: 100]; repeatable.
    #[arg(
        long = "sell",
        env = "BITWRK_SELL",
        value_delimiter = ',',
        value_name = "ARTICLE[:MIN_PRICE]"
    )]
    pub sell: Vec<SellSpec>,
    /// Work on this many trades at once [default: the number of cores].
    #[arg(long, env = "BITWRK_WORKER_SLOTS")]
    pub worker_slots: Option<usize>,
    /// A standing permission to trade, SIDE:ARTICLE:PRICE[:trades=N][:minutes=M]; ARTICLE
    /// is a name, an id or * (any); PRICE is a buy's highest, a sell's lowest; repeatable.
    /// A seller needs one (or a click in the admin UI) before its first sell bid.
    #[arg(
        long = "mandate",
        env = "BITWRK_MANDATE",
        value_delimiter = ',',
        value_name = "SIDE:ARTICLE:PRICE[:trades=N][:minutes=M]"
    )]
    pub mandates: Vec<MandateArg>,
    /// How long a bid not covered by a mandate waits for the user's decision in the admin
    /// UI, in ms (at least 1000); then it lapses, and a seller asks again at once.
    #[arg(
        long,
        env = "BITWRK_PERMISSION_WAIT_MS",
        default_value_t = crate::state::PERMISSION_WAIT_DEFAULT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(crate::state::PERMISSION_WAIT_MIN_MS..)
    )]
    pub permission_wait_ms: u64,
    /// How long a buy not covered by a mandate waits for the user's permission, in ms;
    /// then the proxy answers 403 `permission_required` (at most --permission-wait-ms).
    #[arg(long, env = "BITWRK_BUY_PERMISSION_WAIT_MS", default_value_t = crate::limits::BUY_PERMISSION_WAIT.as_millis() as u64)]
    pub buy_permission_wait_ms: u64,
    /// Bound of the content store on disk, in bytes.
    #[arg(long, env = "BITWRK_STORE_MAX_BYTES", default_value_t = crate::limits::STORE_BYTES_DEFAULT)]
    pub store_max_bytes: u64,
    /// Sell the Blender article (blender-cycles) with this Blender executable; a bare
    /// name such as `blender` is looked up on PATH. Needs --ext-port.
    #[arg(long, env = "BITWRK_BLENDER")]
    pub blender: Option<PathBuf>,
    /// Price of one Blender tile, in sat.
    #[arg(long, env = "BITWRK_BLENDER_PRICE", default_value_t = 100)]
    pub blender_price: u64,
    /// The market is one machine or a LAN: buy from sellers whose worker_url is on a
    /// loopback, private or link-local address. Off: only public addresses (a seller
    /// could otherwise point this host at its own ports or its network). This host's
    /// own ports are refused either way.
    #[arg(long, env = "BITWRK_LAN_MARKET")]
    pub lan_market: bool,
}

/// A host that is up: where it listens and how to stop it.
pub struct RunningHost {
    pub int_addr: SocketAddr,
    /// The address the external port is bound to.
    pub ext_addr: Option<SocketAddr>,
    /// The worker URL sellers' bids tell buyers (`--ext-addr` and the bound port).
    pub worker_url: Option<String>,
    pub exchange_url: String,
    pub node: Arc<Node>,
    pub state: Arc<HostState>,
    pub shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seller: Option<Arc<Seller>>,
    /// The embedded exchange (if any) stops last, after the bids were cancelled on it.
    exchange: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl RunningHost {
    /// Stop serving and bidding (open sell bids are cancelled) and wait for the servers.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Some(s) = &self.seller {
            s.bidders_done().await;
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // The buyer's accepts still in flight (bounded: an unreachable exchange is not
        // waited for long; the seller is paid at the unverified deadline anyway).
        if tokio::time::timeout(crate::limits::SELLER_REQUEST_TIMEOUT, self.node.settled())
            .await
            .is_err()
        {
            tracing::warn!("stopping with accepts still unanswered");
        }
        if let Some((token, task)) = self.exchange {
            token.cancel();
            let _ = task.await;
        }
    }
}

/// Start an exchange in-process on `db`, listening on 127.0.0.1:`port`; returns its URL.
pub async fn start_embedded_exchange(
    db: &Path,
    port: u16,
    shutdown: CancellationToken,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("binding the embedded exchange to 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    // Loopback only: every party is this machine, so a per-IP funding quota would only
    // starve one's own hosts.
    let config = bitwrk_exchange::Config {
        db_path: db.to_path_buf(),
        funded_accounts_per_ip_per_hour: 0,
        ..bitwrk_exchange::Config::default()
    };
    let task = tokio::spawn(async move {
        if let Err(e) = bitwrk_exchange::serve(listener, config, shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "embedded exchange stopped");
        }
    });
    let url = format!("http://{addr}");
    tracing::info!(%url, db = %db.display(), "embedded exchange running");
    Ok((url, task))
}

/// Start a host from its flags. Used by `run` and, in-process, by `demo` and the bench.
pub async fn start(
    args: &RunArgs,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningHost> {
    crate::data_dir::ensure_dir(data_dir)?;
    let key = crate::data_dir::load_or_create_key(data_dir)?;
    let mut tasks = Vec::new();
    let mut embedded = None;
    let exchange_url = match &args.exchange {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let token = CancellationToken::new();
            let (url, task) = start_embedded_exchange(
                &data_dir.join("exchange.sqlite"),
                args.exchange_port,
                token.clone(),
            )
            .await?;
            embedded = Some((token, task));
            url
        }
    };
    let exchange = ExchangeClient::connect(&exchange_url)
        .await
        .with_context(|| format!("connecting to the exchange at {exchange_url}"))?;
    let store = Arc::new(Store::open(&data_dir.join("store"), args.store_max_bytes)?);
    let state = HostState::new(data_dir, key.address(), exchange.clone())?;
    state.set_permission_wait(Duration::from_millis(args.permission_wait_ms));
    state.set_buy_permission_wait(Duration::from_millis(args.buy_permission_wait_ms));
    let node = Node::new(key, exchange, store, Gate::State(state.clone()))?;
    // An embedded exchange listens on 127.0.0.1 only: its market is this machine.
    node.worker_urls.set_lan(args.lan_market || embedded.is_some());
    if embedded.is_some()
        && let Some(port) = reqwest::Url::parse(&exchange_url).ok().and_then(|u| u.port())
    {
        node.worker_urls.add_own_port(port);
    }
    for m in &args.mandates {
        let mut spec = m.spec.clone();
        if let Some(name) = &m.article_name {
            spec.article = Some(
                node.resolve_article(name).await.with_context(|| format!("--mandate {m}"))?.id,
            );
        }
        state.add_mandate(&spec, Origin::Flag).with_context(|| format!("--mandate {m}"))?;
    }
    // The internal port is bound first, so every request for permission can name the UI.
    let int_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.int_port))
        .await
        .with_context(|| format!("binding the internal port 127.0.0.1:{}", args.int_port))?;
    let int_addr = int_listener.local_addr()?;
    node.worker_urls.add_own_port(int_addr.port());
    state.set_ui_url(format!("http://{int_addr}/"));

    // External port first: its address goes into every sell bid's establish.
    let mut ext_addr = None;
    let mut told_worker_url = None;
    let mut seller = None;
    if args.ext_port >= 0 {
        let port =
            u16::try_from(args.ext_port).context("--ext-port must be -1 or a port number")?;
        let bind_ip = args.ext_bind;
        let listener = TcpListener::bind((bind_ip, port))
            .await
            .with_context(|| format!("binding the external port {bind_ip}:{port}"))?;
        let bound = listener.local_addr()?;
        node.worker_urls.add_own_port(bound.port());
        let told = advertised_host(&args.ext_addr, bind_ip)?;
        if let ExtAddr::Host(name) = &args.ext_addr
            && tokio::net::lookup_host((name.as_str(), bound.port())).await.is_err()
        {
            // Not fatal: the name may resolve where the buyers are (public DNS).
            tracing::warn!(host = %name, "--ext-addr does not resolve here; buyers must resolve it");
        }
        let worker_url = format!("http://{told}:{}/v1/work", bound.port());
        let cache_dir = data_dir.join("module-cache");
        let worker_slots = args.worker_slots.unwrap_or_else(num_cores).max(1);
        let mut sandbox_config = bitwrk_runtime::SandboxConfig::new(cache_dir);
        sandbox_config.max_concurrent_instances = u32::try_from(worker_slots).unwrap_or(u32::MAX);
        let sandbox =
            bitwrk_runtime::Sandbox::new(sandbox_config).context("starting the sandbox")?;
        let mut config = SellerConfig {
            sells: args.sell.clone(),
            worker_slots,
            unmatched_bids: args.num_unmatched_bids,
            worker_url: worker_url.clone(),
        };
        let blender = match start_blender(args, data_dir).await? {
            Some(bridge) => {
                let manifest = bridge.manifest();
                node.exchange
                    .publish(&node.key, &manifest, &[])
                    .await
                    .context("publishing the Blender article")?;
                config.sells.push(SellSpec {
                    article: manifest.id().to_hex(),
                    min_price: bitwrk_protocol::Sat(args.blender_price),
                });
                Some(bridge)
            }
            None => None,
        };
        let s = Seller::new(node.clone(), Engines { sandbox: Arc::new(sandbox), blender }, config);
        let router = s.router();
        let sd = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                axum::serve(listener, router).with_graceful_shutdown(sd.cancelled_owned()).await
            {
                tracing::error!(error = %e, "external port stopped");
            }
        }));
        tracing::info!(addr = %bound, %worker_url, "external port (worker) listening");
        ext_addr = Some(bound);
        told_worker_url = Some(worker_url);
        seller = Some(s);
    } else if !args.sell.is_empty() {
        anyhow::bail!(
            "--sell needs an external port for buyers to reach: give --ext-port (e.g. 8082)"
        );
    }
    if let Some(s) = &seller {
        s.start(shutdown.clone()).await?;
    }
    let seller = seller;

    let proxy = Proxy::new(node.clone());
    let router = proxy.router().merge(state.clone().router());
    let listener = int_listener;
    let sd = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) =
            axum::serve(listener, router).with_graceful_shutdown(sd.cancelled_owned()).await
        {
            tracing::error!(error = %e, "internal port stopped");
        }
    }));
    tracing::info!(addr = %int_addr, address = %node.key.address(), "internal port (buying proxy, admin UI) listening");
    Ok(RunningHost {
        int_addr,
        ext_addr,
        worker_url: told_worker_url,
        exchange_url,
        node,
        state,
        shutdown,
        tasks,
        seller,
        exchange: embedded,
    })
}

/// The Blender bridge for `--blender PATH`, or for `blender` on PATH; None without Blender.
async fn start_blender(
    args: &RunArgs,
    data_dir: &Path,
) -> anyhow::Result<Option<Arc<bitwrk_blender_bridge::Bridge>>> {
    let Some(given) = &args.blender else { return Ok(None) };
    // A bare name (`--blender blender`) is looked up on PATH.
    let path = if given.components().count() == 1 {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(given))
            .find(|p| p.is_file())
            .with_context(|| format!("{} not found on PATH", given.display()))?
    } else {
        given.clone()
    };
    let cfg = bitwrk_blender_bridge::BridgeConfig::new(&path, data_dir.join("blender-work"));
    let bridge = tokio::task::spawn_blocking(move || bitwrk_blender_bridge::Bridge::new(cfg))
        .await?
        .with_context(|| format!("starting the Blender bridge for {}", path.display()))?;
    tracing::info!(blender = %path.display(), version = bridge.version(), article = %bridge.manifest().id(), layers = ?bridge.active_layers(), "selling Blender");
    Ok(Some(Arc::new(bridge)))
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// `--ext-addr`: what buyers are told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAddr {
    /// The --ext-bind address if it is one, else the outbound interface's address.
    Auto,
    /// An address (never the unspecified 0.0.0.0 or ::, which no buyer can connect to).
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Host(String),
}

/// Longest DNS name (RFC 1035: 255 bytes on the wire, 253 as text).
const HOST_NAME_BYTES_MAX: usize = 253;
/// Longest label of a DNS name (RFC 1035).
const HOST_LABEL_BYTES_MAX: usize = 63;

impl std::str::FromStr for ExtAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(ExtAddr::Auto);
        }
        let unbracketed = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            if ip.is_unspecified() {
                return Err(format!(
                    "{s} means \"every interface\" when binding, but buyers cannot connect to it: \
                     give this machine's address or host name as buyers reach it, or auto \
                     (to bind every interface, that is --ext-bind {s})"
                ));
            }
            return Ok(ExtAddr::Ip(ip));
        }
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= HOST_LABEL_BYTES_MAX
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        // A name that is all digits and dots is a mistyped IPv4 address, not a host.
        let numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if name.len() <= HOST_NAME_BYTES_MAX && !numeric && name.split('.').all(label_ok) {
            Ok(ExtAddr::Host(name))
        } else {
            Err(format!("{s:?} is neither an IP address, a host name nor auto"))
        }
    }
}

impl std::fmt::Display for ExtAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtAddr::Auto => f.write_str("auto"),
            ExtAddr::Ip(ip) => write!(f, "{ip}"),
            ExtAddr::Host(h) => f.write_str(h),
        }
    }
}

/// The host part of the worker URL (an IPv6 address in brackets) for `--ext-addr`, with
/// the external port bound to `bind`.
fn advertised_host(ext_addr: &ExtAddr, bind: IpAddr) -> anyhow::Result<String> {
    let ip = match ext_addr {
        ExtAddr::Host(name) => return Ok(name.clone()),
        ExtAddr::Ip(ip) => *ip,
        ExtAddr::Auto if !bind.is_unspecified() => bind,
        ExtAddr::Auto => outbound_ip(bind).or_else(first_external_ipv4).context(
            "--ext-addr auto found no network address of this machine: give --ext-addr \
                 (an IP address or host name buyers reach this machine at; 127.0.0.1 for \
                 buyers on this machine only)",
        )?,
    };
    Ok(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    })
}

/// The address of the interface this machine's traffic to the outside leaves through: a
/// UDP socket "connected" to a documentation address (RFC 5737 / 3849) asks the kernel
/// for the route and sends nothing.
fn outbound_ip(bind: IpAddr) -> Option<IpAddr> {
    let targets: [SocketAddr; 2] =
        [([192, 0, 2, 1], 9).into(), ("2001:db8::1".parse::<IpAddr>().ok()?, 9).into()];
    // A v4 socket takes v4 buyers only; `::` takes both (dual stack), v4 first.
    targets.into_iter().filter(|t| !(bind.is_ipv4() && t.is_ipv6())).find_map(|target| {
        let local: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = std::net::UdpSocket::bind(local).ok()?;
        socket.connect(target).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
    })
}

/// This machine's first non-loopback IPv4 address (what buyers elsewhere can reach).
fn first_external_ipv4() -> Option<IpAddr> {
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = ifap;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            let loopback = ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
            if up
                && !loopback
                && !ifa.ifa_addr.is_null()
                && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(ifap);
        found
    }
}

/// The line `run` prints on stdout once it serves, for scripts and tests to read.
pub fn ready_line(h: &RunningHost) -> String {
    let ext = h.ext_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    let worker = h.worker_url.as_deref().unwrap_or("-");
    format!(
        "bitwrk-host ready int={} ext={ext} worker={worker} exchange={} address={}",
        h.int_addr,
        h.exchange_url,
        h.node.key.address()
    )
}

pub fn run(args: RunArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let host = start(&args, data_dir, shutdown.clone()).await?;
        println!("{}", ready_line(&host));
        println!("buy:   curl -F data=@FILE -L http://{}/buy/ARTICLE -o OUT", host.int_addr);
        println!("admin: http://{}/", host.int_addr);
        tokio::signal::ctrl_c().await.context("waiting for ctrl-c")?;
        tracing::info!("stopping");
        host.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `data_dir` for a named sub-host (demo, bench).
pub fn sub_dir(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.run)
    }

    #[test]
    fn permission_waits_have_defaults_and_a_floor() {
        let run = parse(&[]).expect("defaults");
        assert_eq!(run.permission_wait_ms, 300_000);
        assert_eq!(run.buy_permission_wait_ms, 60_000);
        let run = parse(&["--permission-wait-ms", "1000", "--buy-permission-wait-ms", "0"])
            .expect("the floor, and a buy that never waits");
        assert_eq!((run.permission_wait_ms, run.buy_permission_wait_ms), (1000, 0));
        assert!(parse(&["--permission-wait-ms", "999"]).is_err(), "a seller would spin");
    }

    fn check(given: &str, expected: Result<ExtAddr, &str>) {
        match (given.parse::<ExtAddr>(), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{given}"),
            (Err(e), Err(part)) => assert!(e.contains(part), "{given}: {e}"),
            (got, want) => panic!("{given}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn ext_addr_takes_auto_addresses_and_host_names() {
        check("auto", Ok(ExtAddr::Auto));
        check("192.168.1.5", Ok(ExtAddr::Ip("192.168.1.5".parse().unwrap())));
        check("[2001:db8::5]", Ok(ExtAddr::Ip("2001:db8::5".parse().unwrap())));
        check("Seller.Example.org.", Ok(ExtAddr::Host("seller.example.org".into())));
        check("localhost", Ok(ExtAddr::Host("localhost".into())));
        check("0.0.0.0", Err("--ext-bind 0.0.0.0"));
        check("::", Err("buyers cannot connect"));
        check("1.2.3", Err("neither"));
        check("-bad.example", Err("neither"));
        check("a_b.example", Err("neither"));
        check("", Err("neither"));
    }

    #[test]
    fn auto_advertises_the_bound_address_else_a_real_one() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(advertised_host(&ExtAddr::Auto, lo).unwrap(), "127.0.0.1");
        assert_eq!(advertised_host(&ExtAddr::Auto, "::1".parse().unwrap()).unwrap(), "[::1]");
        assert_eq!(advertised_host(&ExtAddr::Host("h.example".into()), lo).unwrap(), "h.example");
        // Bound to every interface: some address of this machine, never 0.0.0.0.
        if let Ok(h) = advertised_host(&ExtAddr::Auto, IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
            let ip: IpAddr = h.trim_matches(['[', ']']).parse().unwrap();
            assert!(!ip.is_unspecified() && !ip.is_loopback(), "{h}");
        }
    }
}
