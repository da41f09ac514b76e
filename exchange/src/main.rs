//! `bitwrk-exchange`: flags, logging, then [`bitwrk_exchange::serve`].

/// mimalloc: glibc malloc/free took ~12 % of the exchange's request threads.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "bitwrk-exchange",
    version,
    about = "The bitwrk exchange: order books, ledger, transactions, article registry",
    help_expected = true
)]
struct Cli {
    /// Data directory (the database lives here unless --db is absolute).
    #[arg(long, env = "BITWRK_EXCHANGE_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    #[command(flatten)]
    config: bitwrk_exchange::Config,
}

/// `~/.bitwrk-exchange` (`./.bitwrk-exchange` without `HOME`).
fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".bitwrk-exchange")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    let cli = Cli::parse();
    let mut config = cli.config;
    let data_dir = cli.data_dir;
    if config.db_path.is_relative() {
        config.db_path = data_dir.join(&config.db_path);
    }
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    // Tests and scripts read the bound address (with --listen 127.0.0.1:0) from here.
    println!("listening on http://{}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    bitwrk_exchange::serve(listener, config, shutdown).await
}

/// Colour codes in the logs only when stderr is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>): a log redirected to a file or a pipe stays plain text.
fn log_colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every flag has a description (`help_expected`), and clap's own checks pass.
    #[test]
    fn every_flag_is_described() {
        super::Cli::command().debug_assert();
    }
}
