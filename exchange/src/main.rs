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
    about = "The bitwrk exchange: order books, ledger, transactions, article registry"
)]
struct Cli {
    /// Data directory (the database lives here unless --db is absolute).
    #[arg(long, env = "BITWRK_EXCHANGE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    config: bitwrk_exchange::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut config = cli.config;
    let data_dir = cli.data_dir.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".bitwrk-exchange")
    });
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
