//! `bitwrk-blender-bridge`: inspect the bridge (version, article, confinement layers),
//! render one tile by hand, or run the tiling benchmark.

use std::path::PathBuf;

use anyhow::Context;
use bitwrk_blender_bridge::{Bridge, BridgeConfig, bench};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Seller side of bitwrk's Blender article", help_expected = true)]
struct Cli {
    /// The Blender executable.
    #[arg(long, env = "BITWRK_BLENDER", default_value = "blender", global = true)]
    blender: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the Blender version, the article id and manifest, and the active confinement layers.
    Info,
    /// Render one tile: SCENE (.blend) and JOB (tile job JSON) to OUT (OpenEXR).
    Render {
        /// The scene, a .blend file.
        scene: PathBuf,
        /// The tile job (JSON: the tile's rectangle and samples).
        job: PathBuf,
        /// Where to write the rendered tile (OpenEXR).
        out: PathBuf,
    },
    /// CPU of NxN tiles through the bridge against one local render of the same frame.
    Bench {
        /// Frame width in pixels.
        #[arg(long, default_value_t = 320)]
        width: u32,
        /// Frame height in pixels.
        #[arg(long, default_value_t = 240)]
        height: u32,
        /// Cycles samples per pixel.
        #[arg(long, default_value_t = 128)]
        samples: u32,
        /// Tile grids to measure, N for NxN tiles (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "2,4")]
        grids: Vec<u32>,
        /// Repeat the whole measurement (the machine is shared: figures are noisy).
        #[arg(long, default_value_t = 2)]
        rounds: u32,
    },
}

fn find_blender(p: PathBuf) -> anyhow::Result<PathBuf> {
    if p.components().count() > 1 {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(&p))
        .find(|c| c.is_file())
        .with_context(|| format!("{} not found on PATH (pass --blender)", p.display()))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    let cli = Cli::parse();
    let blender = find_blender(cli.blender)?;
    let tmp = std::env::temp_dir().join(format!("bitwrk-blender-bridge-{}", std::process::id()));
    let result = run(cli.cmd, blender, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn run(cmd: Cmd, blender: PathBuf, tmp: &std::path::Path) -> anyhow::Result<()> {
    match cmd {
        Cmd::Info => {
            let bridge = Bridge::new(BridgeConfig::new(blender, tmp))?;
            let m = bridge.manifest();
            println!("blender {}", bridge.version());
            println!("article {}", m.id());
            println!("manifest {}", String::from_utf8(m.canonical_json())?);
            for l in bridge.active_layers() {
                println!("layer {l}");
            }
        }
        Cmd::Render { scene, job, out } => {
            let bridge = Bridge::new(BridgeConfig::new(blender, tmp))?;
            let scene =
                std::fs::read(&scene).with_context(|| format!("reading {}", scene.display()))?;
            let job = std::fs::read(&job).with_context(|| format!("reading {}", job.display()))?;
            let outputs = bridge
                .render(vec![("scene".into(), scene), ("job".into(), job)])
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(&out, &outputs[0].1)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), outputs[0].1.len());
        }
        Cmd::Bench { width, height, samples, grids, rounds } => {
            std::fs::create_dir_all(tmp)?;
            let reports = bench::run(&blender, tmp, width, height, samples, &grids, rounds)?;
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            println!(
                "frame {width}x{height}, {samples} samples, 1 render thread per Blender, {cpus} cpus"
            );
            for (i, r) in reports.iter().enumerate() {
                println!(
                    "round {}: local render {:.2} cpu-s, {:.2} s wall",
                    i + 1,
                    r.local_cpu_s,
                    r.local_wall.as_secs_f64()
                );
                for g in &r.grids {
                    println!(
                        "round {}: {n}x{n} tiles via bridge {:.2} cpu-s = {:.2}x local, {:.2} s wall, first tile after {:.2} s",
                        i + 1,
                        g.cpu_s,
                        g.ratio,
                        g.wall.as_secs_f64(),
                        g.first_tile.as_secs_f64(),
                        n = g.grid
                    );
                }
            }
        }
    }
    Ok(())
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
