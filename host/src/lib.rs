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

/// The exchange `publish` and `buy` talk to without `--exchange`: the one `bitwrk-exchange`
/// listens on by default, on this machine.
pub const EXCHANGE_URL_DEFAULT: &str = "http://127.0.0.1:8080";

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), coloured only on a terminal.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .try_init();
}

/// Colour codes in the logs only when stderr is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>): a log redirected to a file or a pipe stays plain text.
pub fn log_colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
