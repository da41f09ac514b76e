//! `bitwrk-host`: flags and a call into the library.

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a host allocates per request (HTTP, JSON) on many
/// threads, where glibc's allocator took about a tenth of the CPU in the host bench.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "bitwrk-host",
    version,
    about = "bitwrk host: buy and sell computing power",
    help_expected = true
)]
struct Cli {
    /// Where the key, content store and settings live [default: ~/.bitwrk-host].
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
    /// Build and run articles locally, in exactly the sellers' sandbox.
    #[command(subcommand)]
    Article(bitwrk_host::article_cmd::ArticleCmd),
    /// Publish an article to an exchange's registry (signed, idempotent).
    Publish(bitwrk_host::article_cmd::PublishArgs),
    /// Run the host: the local buying proxy, selling, the web UI.
    Run(bitwrk_host::run_cmd::RunArgs),
    /// Buy one run of an article from the shell.
    Buy(bitwrk_host::buy_cmd::BuyArgs),
    /// One-machine demo: exchange, a seller and a buyer trade raytraced tiles.
    Demo(bitwrk_host::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    bitwrk_host::init_logging();
    let cli = Cli::parse();
    let data_dir = bitwrk_host::data_dir::resolve(cli.data_dir);
    let result = match cli.command {
        Command::Identity(cmd) => bitwrk_host::identity_cmd::run(cmd, &data_dir),
        Command::Article(cmd) => bitwrk_host::article_cmd::run(cmd, &data_dir),
        Command::Publish(args) => bitwrk_host::article_cmd::publish(args, &data_dir),
        Command::Run(args) => bitwrk_host::run_cmd::run(args, &data_dir),
        Command::Buy(args) => bitwrk_host::buy_cmd::run(args, &data_dir),
        Command::Demo(args) => bitwrk_host::demo::run(args, &data_dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
