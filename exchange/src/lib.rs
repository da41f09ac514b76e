//! bitwrk-exchange: the marketplace's exchange. Order books with price-time priority,
//! the ledger with escrow, the transaction phase machine and the article registry
//! ([`core`], no IO), behind an HTTP API ([`server`], axum) that stores every accepted
//! request in SQLite before it answers ([`store`]). [`client`] is the typed client the
//! hosts use. The wire description is docs/PROTOCOL.md.

pub mod client;
pub mod core;
pub mod limits;
mod openapi;
mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Every setting of the exchange; the binary's flags (and `BITWRK_EXCHANGE_*` env vars).
/// `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Config {
    /// Address to listen on (the binary binds it; `serve` takes a bound listener).
    #[arg(long, env = "BITWRK_EXCHANGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// SQLite database. A relative path is taken inside the data dir.
    #[arg(long = "db", env = "BITWRK_EXCHANGE_DB", default_value = DB_FILE)]
    pub db_path: PathBuf,
    /// Fee in basis points of the price (300 = 3 %), charged to the buyer.
    #[arg(long, env = "BITWRK_EXCHANGE_FEE_BPS", default_value_t = 300)]
    pub fee_bps: u32,
    /// How long an unmatched bid rests in the book.
    #[arg(long, env = "BITWRK_EXCHANGE_BID_LIFETIME_S", default_value_t = 120)]
    pub bid_lifetime_s: u64,
    /// Deadline of `establishing` (both sides send `establish`), from the match.
    #[arg(long, env = "BITWRK_EXCHANGE_ESTABLISHING_S", default_value_t = 60)]
    pub establishing_s: u64,
    /// Deadline of `transmitting`, counted from the previous deadline.
    #[arg(long, env = "BITWRK_EXCHANGE_TRANSMITTING_S", default_value_t = 120)]
    pub transmitting_s: u64,
    /// Deadline of `working`, counted from the previous deadline.
    #[arg(long, env = "BITWRK_EXCHANGE_WORKING_S", default_value_t = 300)]
    pub working_s: u64,
    /// Deadline of `committed` (the buyer signs its receipt), counted from the previous
    /// deadline. Past it the buyer lapsed and pays the seller a share.
    #[arg(long, env = "BITWRK_EXCHANGE_COMMITTED_S", default_value_t = 120)]
    pub committed_s: u64,
    /// Deadline of `unverified`, counted from the previous deadline.
    #[arg(long, env = "BITWRK_EXCHANGE_UNVERIFIED_S", default_value_t = 900)]
    pub unverified_s: u64,
    /// Deadline of `result_disputed`, counted from the previous deadline.
    #[arg(long, env = "BITWRK_EXCHANGE_RESULT_DISPUTED_S", default_value_t = 900)]
    pub result_disputed_s: u64,
    /// Virtual capital every new account starts with.
    #[arg(long, env = "BITWRK_EXCHANGE_STARTING_CAPITAL_SAT", default_value_t = 100_000_000)]
    pub starting_capital_sat: u64,
    /// Accounts seen for the first time that get the starting capital, per source IP
    /// (IPv6: per /64) and hour; later ones start at 0. 0 funds every new account.
    #[arg(long, env = "BITWRK_EXCHANGE_FUNDED_ACCOUNTS_PER_IP_PER_HOUR", default_value_t = limits::FUNDED_ACCOUNTS_PER_IP_PER_HOUR_DEFAULT)]
    pub funded_accounts_per_ip_per_hour: u32,
    /// Requests per second per client IP (bursts of twice that); 0 switches it off.
    #[arg(long, env = "BITWRK_EXCHANGE_RATE_LIMIT_PER_S", default_value_t = limits::RATE_LIMIT_PER_S_DEFAULT)]
    pub rate_limit_per_s: u32,
    /// Group commit: while requests keep coming from several clients, the writer holds a
    /// commit open this long (microseconds) for more of them, so that one fsync covers
    /// many requests. 0 commits whatever has arrived at once. A lone client never waits.
    #[arg(long, env = "BITWRK_EXCHANGE_COMMIT_WINDOW_US", default_value_t = limits::COMMIT_WINDOW_US_DEFAULT)]
    pub commit_window_us: u64,
}

/// The database's file name inside a data dir.
pub const DB_FILE: &str = "exchange.sqlite";

impl Default for Config {
    fn default() -> Self {
        let d = bitwrk_protocol::api::Deadlines::default();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db_path: PathBuf::from(DB_FILE),
            fee_bps: 300,
            bid_lifetime_s: 120,
            establishing_s: d.establishing_s,
            transmitting_s: d.transmitting_s,
            working_s: d.working_s,
            committed_s: d.committed_s,
            unverified_s: d.unverified_s,
            result_disputed_s: d.result_disputed_s,
            starting_capital_sat: 100_000_000,
            funded_accounts_per_ip_per_hour: limits::FUNDED_ACCOUNTS_PER_IP_PER_HOUR_DEFAULT,
            rate_limit_per_s: limits::RATE_LIMIT_PER_S_DEFAULT,
            commit_window_us: limits::COMMIT_WINDOW_US_DEFAULT,
        }
    }
}

impl Config {
    /// Check every setting is within its limits (see [`limits`]).
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.fee_bps <= crate::limits::FEE_BPS_MAX,
            "--fee-bps must be at most 10000 (100 %)"
        );
        anyhow::ensure!(
            (1..=crate::limits::DURATION_S_MAX).contains(&self.bid_lifetime_s),
            "--bid-lifetime-s must be 1..={}",
            crate::limits::DURATION_S_MAX
        );
        for (flag, v) in [
            ("--establishing-s", self.establishing_s),
            ("--transmitting-s", self.transmitting_s),
            ("--working-s", self.working_s),
            ("--committed-s", self.committed_s),
            ("--unverified-s", self.unverified_s),
            ("--result-disputed-s", self.result_disputed_s),
        ] {
            anyhow::ensure!(
                (1..=crate::limits::DURATION_S_MAX).contains(&v),
                "{flag} must be 1..={}",
                crate::limits::DURATION_S_MAX
            );
        }
        anyhow::ensure!(
            self.commit_window_us <= crate::limits::COMMIT_WINDOW_US_MAX,
            "--commit-window-us must be at most {}",
            crate::limits::COMMIT_WINDOW_US_MAX
        );
        anyhow::ensure!(
            self.starting_capital_sat <= crate::limits::PRICE_SAT_MAX,
            "--starting-capital-sat must be at most {}",
            crate::limits::PRICE_SAT_MAX
        );
        Ok(())
    }
}

/// Run the exchange on a bound listener until `shutdown` completes: rebuild the state
/// from `config.db_path`, serve the HTTP API, commit everything accepted, return.
/// (`config.listen` is not used here; the caller bound the listener.)
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    server::serve(listener, config, shutdown).await
}
