//! `bitwrk-host`: flags and a call into the library.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bitwrk-host", version, about = "bitwrk host: buy and sell computing power")]
struct Cli {
    /// Where the key, content store and settings live.
    #[arg(long, global = true, env = "BITWRK_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show, sign and verify with the account key.
    #[command(subcommand)]
    Identity(bitwrk_host::identity_cmd::IdentityCmd),
}

fn main() -> std::process::ExitCode {
    bitwrk_host::init_logging();
    let cli = Cli::parse();
    let data_dir = bitwrk_host::data_dir::resolve(cli.data_dir);
    let result = match cli.command {
        Command::Identity(cmd) => bitwrk_host::identity_cmd::run(cmd, &data_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
