//! `bitwrk-host demo`: the whole market on one machine. An embedded exchange, a seller
//! host and a buyer host on loopback; `raytrace` is published, the buyer buys a picture as
//! tile trades through its proxy (`POST /buy/raytrace`), stitches `demo.png`, and prints
//! each trade's phases and timing and the balances before and after (fees included).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::api::TxView;
use bitwrk_protocol::{Address, Hash32, Id};
use tokio_util::sync::CancellationToken;

use crate::run_cmd::{RunArgs, start, start_embedded_exchange};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where to write the picture.
    #[arg(long, short = 'o', default_value = "demo.png")]
    pub output: PathBuf,
    /// The scene [default: articles/raytrace/scenes/demo.json of this checkout].
    #[arg(long)]
    pub scene: Option<PathBuf>,
    /// Tiles across (each tile is one trade).
    #[arg(long, default_value_t = 4)]
    pub tiles_x: u32,
    /// Tiles down (each tile is one trade).
    #[arg(long, default_value_t = 3)]
    pub tiles_y: u32,
    /// Samples per pixel (overrides the scene's; fewer is faster).
    #[arg(long)]
    pub samples: Option<u32>,
    /// Trades in flight at once.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// The seller's worker slots [default: the number of cores].
    #[arg(long)]
    pub worker_slots: Option<usize>,
    /// The seller's asking price per tile, in sat.
    #[arg(long, default_value_t = 1000)]
    pub price: u64,
}

pub fn run(args: DemoArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args, data_dir))
}

struct Tile {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

struct Traded {
    tile: usize,
    tx: Id,
    attempts: String,
    wall_ms: u128,
    png: Vec<u8>,
}

async fn run_async(args: DemoArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let base = data_dir.join("demo");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    // A fresh exchange each run: nothing left over from an earlier demo in its books.
    let db = base.join("exchange.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let shutdown = CancellationToken::new();
    let exchange_shutdown = CancellationToken::new();
    let (exchange_url, exchange_task) =
        start_embedded_exchange(&db, 0, exchange_shutdown.clone()).await?;
    println!("exchange   {exchange_url} (embedded, {})", db.display());

    // Publish raytrace (as the seller, who offers it).
    let (manifest, module) = crate::local_articles::load("raytrace")?;
    let article: Hash32 = manifest.id();
    let seller_key = crate::data_dir::load_or_create_key(&base.join("seller"))?;
    let client = ExchangeClient::connect(&exchange_url).await?;
    client.publish(&seller_key, &manifest, &module).await.context("publishing raytrace")?;
    println!("published  raytrace {} ({} bytes of wasm)", article, module.len());

    let host_args = |sell: bool, mandate: &str| RunArgs {
        exchange: Some(exchange_url.clone()),
        exchange_port: 0,
        int_port: 0,
        ext_port: if sell { 0 } else { -1 },
        ext_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ext_addr: crate::run_cmd::ExtAddr::Auto,
        num_unmatched_bids: 1,
        sell: if sell {
            vec![format!("{article}:{}", args.price).parse().expect("valid spec")]
        } else {
            vec![]
        },
        worker_slots: args.worker_slots,
        mandates: vec![mandate.parse().expect("valid mandate")],
        store_max_bytes: crate::limits::STORE_BYTES_DEFAULT,
        blender: None,
        blender_price: 100,
        permission_wait_ms: crate::state::PERMISSION_WAIT_DEFAULT.as_millis() as u64,
        buy_permission_wait_ms: crate::limits::BUY_PERMISSION_WAIT.as_millis() as u64,
        // Every party of the demo is this machine.
        lan_market: true,
    };
    let seller = start(
        &host_args(true, &format!("sell:{article}:{}", args.price)),
        &base.join("seller"),
        shutdown.clone(),
    )
    .await?;
    let buyer = start(
        &host_args(false, &format!("buy:{article}:{}", args.price)),
        &base.join("buyer"),
        shutdown.clone(),
    )
    .await?;
    let seller_addr = seller.node.key.address();
    let buyer_addr = buyer.node.key.address();
    println!(
        "seller     {seller_addr}  worker {}  admin http://{}/",
        seller.worker_url.as_deref().unwrap_or_default(),
        seller.int_addr
    );
    println!("buyer      {buyer_addr}  proxy  http://{}/buy/raytrace", buyer.int_addr);

    let before = balances(&client, &buyer_addr, &seller_addr).await?;

    // The scene and its tiles.
    let scene_path = args.scene.clone().unwrap_or_else(|| {
        crate::local_articles::workspace_root().join("articles/raytrace/scenes/demo.json")
    });
    let mut scene: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&scene_path).with_context(|| format!("reading {}", scene_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", scene_path.display()))?;
    if let Some(s) = args.samples {
        scene["samples"] = s.into();
    }
    let width = scene["width"].as_u64().context("scene has no width")? as u32;
    let height = scene["height"].as_u64().context("scene has no height")? as u32;
    let scene_bytes = serde_json::to_vec(&scene)?;
    let (tx_n, ty_n) = (args.tiles_x.clamp(1, width), args.tiles_y.clamp(1, height));
    let mut tiles = Vec::new();
    for j in 0..ty_n {
        for i in 0..tx_n {
            let (x0, x1) = (width * i / tx_n, width * (i + 1) / tx_n);
            let (y0, y1) = (height * j / ty_n, height * (j + 1) / ty_n);
            tiles.push(Tile { x: x0, y: y0, w: x1 - x0, h: y1 - y0 });
        }
    }
    println!(
        "buying     {width}x{height} px as {} tiles ({}x{}), {} at a time, up to {} sat each\n",
        tiles.len(),
        tx_n,
        ty_n,
        args.parallel,
        args.price
    );

    // Buy the tiles through the buyer's proxy, as any program would.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let proxy = format!("http://{}", buyer.int_addr);
    let sem = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let t0 = Instant::now();
    let mut jobs = Vec::new();
    for (n, t) in tiles.iter().enumerate() {
        let tile_json =
            serde_json::json!({"x": t.x, "y": t.y, "width": t.w, "height": t.h}).to_string();
        let (http, proxy, sem, scene_bytes, price) =
            (http.clone(), proxy.clone(), sem.clone(), scene_bytes.clone(), args.price);
        jobs.push(tokio::spawn(async move {
            let _p = sem.acquire().await.expect("open");
            let start = Instant::now();
            let form = reqwest::multipart::Form::new()
                .part("scene", reqwest::multipart::Part::bytes(scene_bytes).file_name("scene.json"))
                .text("tile", tile_json)
                .text("price", price.to_string());
            let resp = http.post(format!("{proxy}/buy/raytrace")).multipart(form).send().await?;
            if resp.status() != reqwest::StatusCode::SEE_OTHER {
                let status = resp.status();
                anyhow::bail!("tile {n}: {status}: {}", resp.text().await.unwrap_or_default());
            }
            let header = |name: &str| {
                resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
            };
            let tx: Id = header("x-bitwrk-tx").parse().context("x-bitwrk-tx header")?;
            let attempts = header("x-bitwrk-attempts");
            let location = header("location");
            let png = http
                .get(format!("{proxy}{location}"))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?
                .to_vec();
            Ok(Traded { tile: n, tx, attempts, wall_ms: start.elapsed().as_millis(), png })
        }));
    }
    let mut traded = Vec::new();
    for j in jobs {
        traded.push(j.await.context("tile task")??);
    }
    let total_ms = t0.elapsed().as_millis();
    traded.sort_by_key(|t| t.tile);
    // The buyer accepts each result after handing it over; let those land first.
    buyer.node.settled().await;

    // Each trade as the exchange recorded it.
    println!(
        "{:<5} {:<27} {:>6} {:>9}  phases (ms after the match)",
        "tile", "tx", "price", "wall ms"
    );
    for t in &traded {
        let v: TxView = client.tx(&t.tx).await?;
        let phases: Vec<String> = v
            .history
            .iter()
            .map(|h| format!("{} +{}", h.phase, h.at_ms.saturating_sub(v.matched_ms)))
            .collect();
        let retry =
            if t.attempts != "1" { format!(" (attempts: {})", t.attempts) } else { String::new() };
        println!(
            "{:<5} {:<27} {:>6} {:>9}  {}{retry}",
            t.tile,
            t.tx.to_string(),
            v.price_sat.0,
            t.wall_ms,
            phases.join(" → ")
        );
    }

    // Stitch.
    let mut full = vec![0u8; width as usize * height as usize * 3];
    for t in &traded {
        let tile = &tiles[t.tile];
        let (w, h, rgb) =
            decode_rgb(&t.png).with_context(|| format!("tile {} is not an RGB PNG", t.tile))?;
        anyhow::ensure!(
            w == tile.w && h == tile.h,
            "tile {} is {w}x{h}, expected {}x{}",
            t.tile,
            tile.w,
            tile.h
        );
        for row in 0..h as usize {
            let dst = ((tile.y as usize + row) * width as usize + tile.x as usize) * 3;
            full[dst..dst + w as usize * 3]
                .copy_from_slice(&rgb[row * w as usize * 3..(row + 1) * w as usize * 3]);
        }
    }
    let png = encode_rgb(width, height, &full)?;
    std::fs::write(&args.output, &png)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "\nwrote {} ({width}x{height}, {} bytes) in {total_ms} ms for {} trades",
        args.output.display(),
        png.len(),
        traded.len()
    );

    let after = balances(&client, &buyer_addr, &seller_addr).await?;
    println!("\n{:<16} {:>14} {:>14} {:>10}", "balance (sat)", "before", "after", "change");
    for (name, b, a) in [
        ("buyer", before.0, after.0),
        ("seller", before.1, after.1),
        ("exchange fees", before.2, after.2),
    ] {
        println!("{:<16} {:>14} {:>14} {:>+10}", name, b, a, a as i128 - b as i128);
    }
    let ledger = client.ledger().await?;
    println!(
        "ledger: created {} = available {} + blocked {} + fees {} ({})",
        ledger.created_sat.0,
        ledger.available_sat.0,
        ledger.blocked_sat.0,
        ledger.fees_sat.0,
        if ledger.available_sat.0 + ledger.blocked_sat.0 + ledger.fees_sat.0 == ledger.created_sat.0
        {
            "conserved"
        } else {
            "NOT CONSERVED"
        }
    );

    seller.stop().await;
    buyer.stop().await;
    exchange_shutdown.cancel();
    let _ = exchange_task.await;
    Ok(ExitCode::SUCCESS)
}

/// (buyer available+blocked, seller available+blocked, fee account).
async fn balances(
    client: &ExchangeClient,
    buyer: &Address,
    seller: &Address,
) -> anyhow::Result<(u64, u64, u64)> {
    let b = client.account(buyer).await?;
    let s = client.account(seller).await?;
    let l = client.ledger().await?;
    Ok((b.available_sat.0 + b.blocked_sat.0, s.available_sat.0 + s.blocked_sat.0, l.fees_sat.0))
}

fn decode_rgb(png_bytes: &[u8]) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("PNG too large")?];
    let info = reader.next_frame(&mut buf)?;
    anyhow::ensure!(
        info.color_type == png::ColorType::Rgb && info.bit_depth == png::BitDepth::Eight,
        "not 8-bit RGB"
    );
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(out)
}
