//! `bitwrk-host buy ARTICLE --input NAME=@FILE... -o OUT`: one trade from the shell, with
//! a progress display. The command itself (with its price) is the user's permission.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::Sat;
use indicatif::{ProgressBar, ProgressStyle};

use crate::buyer::{BuyRequest, Progress, buy};
use crate::node::{Gate, Node};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct BuyArgs {
    /// The article: its id (64 hex) or its name (the newest version).
    pub article: String,
    /// An input, NAME=@FILE (a file) or NAME=TEXT (the text itself); repeatable. An
    /// article with one input also takes plain @FILE.
    #[arg(long = "input", short = 'i', value_name = "NAME=@FILE")]
    pub inputs: Vec<String>,
    /// Where to write the output; with several outputs, a directory (one file per output).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Highest price in sat [default: the lowest ask in the book, 1000 sat when it has none].
    #[arg(long)]
    pub price: Option<u64>,
    /// The exchange's URL.
    #[arg(long, env = "BITWRK_EXCHANGE", default_value = crate::EXCHANGE_URL_DEFAULT)]
    pub exchange: String,
    /// Bound of the content store on disk, in bytes.
    #[arg(long, env = "BITWRK_STORE_MAX_BYTES", default_value_t = crate::limits::STORE_BYTES_DEFAULT)]
    pub store_max_bytes: u64,
    /// The market is one machine or a LAN: buy from sellers whose worker_url is on a
    /// loopback, private or link-local address (see `run --lan-market`).
    #[arg(long, env = "BITWRK_LAN_MARKET")]
    pub lan_market: bool,
}

fn read_input(spec: &str, only_input: Option<&str>) -> anyhow::Result<(String, Vec<u8>)> {
    let (name, value) = match spec.split_once('=') {
        Some((n, v)) if !n.starts_with('@') => (n.to_string(), v),
        _ => (
            only_input
                .context(format!(
                    "--input {spec:?}: name the input (NAME=@FILE); the article takes several"
                ))?
                .to_string(),
            spec,
        ),
    };
    let data = match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("reading input {name:?} from {path}"))?
        }
        None => value.as_bytes().to_vec(),
    };
    Ok((name, data))
}

pub fn run(args: BuyArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args, data_dir))
}

async fn run_async(args: BuyArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let key = crate::data_dir::load_or_create_key(data_dir)?;
    let exchange = ExchangeClient::connect(&args.exchange)
        .await
        .with_context(|| format!("connecting to the exchange at {}", args.exchange))?;
    let store = Arc::new(Store::open(&data_dir.join("store"), args.store_max_bytes)?);
    let node = Node::new(key, exchange, store, Gate::Command)?;
    node.worker_urls.set_lan(args.lan_market);
    let article = node.resolve_article(&args.article).await?;
    let only =
        (article.manifest.inputs.len() == 1).then(|| article.manifest.inputs[0].name.as_str());
    let inputs =
        args.inputs.iter().map(|s| read_input(s, only)).collect::<anyhow::Result<Vec<_>>>()?;

    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("static template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let b = bar.clone();
    let name = article.manifest.name.clone();
    let progress = move |p: Progress| match p {
        Progress::Step { attempt, step } => {
            let retry = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
            b.set_message(format!("{name}: {step}{retry}"));
            b.println(format!("  {step}{retry}"));
        }
        Progress::Upload { sent, total } => {
            b.set_message(format!("{name}: uploading {sent}/{total} bytes"))
        }
        Progress::Wire { .. } => {}
    };
    let out = buy(
        &node,
        BuyRequest { article: article.clone(), inputs, price: args.price.map(Sat) },
        Some(&progress),
    )
    .await;
    // The accept goes out after the result is in hand; wait for it before exiting.
    node.settled().await;
    bar.finish_and_clear();
    let out = out.map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    if out.outputs.len() == 1 {
        std::fs::write(&args.output, &out.outputs[0].data[..])
            .with_context(|| format!("writing {}", args.output.display()))?;
        println!("wrote {} ({} bytes)", args.output.display(), out.outputs[0].data.len());
    } else {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
        for o in &out.outputs {
            let p = args.output.join(&o.name);
            std::fs::write(&p, &o.data[..]).with_context(|| format!("writing {}", p.display()))?;
            println!("wrote {} ({} bytes)", p.display(), o.data.len());
        }
    }
    println!(
        "tx {}: {} + fee {}, {} attempt(s), sent {} of {} input bytes",
        out.tx, out.price, out.fee, out.attempts, out.chunk_bytes_sent, out.input_bytes
    );
    Ok(ExitCode::SUCCESS)
}
