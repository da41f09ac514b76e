//! bitwrk-host as a library: every subcommand is a module with one job; `main.rs` is glue.

pub mod api;
pub mod article_cmd;
pub mod buy_cmd;
pub mod buyer;
pub mod crypto;
pub mod data_dir;
pub mod dedupe;
pub mod demo;
pub mod guard;
pub mod identity_cmd;
pub mod limits;
pub mod local_articles;
pub mod mandates;
pub mod node;
pub mod pack;
pub mod proxy;
pub mod run_cmd;
pub mod seller;
pub mod state;
pub mod store;
pub mod worker_url;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
