//! The tiling benchmark: CPU seconds of a frame rendered as NxN tiles through the
//! bridge (one warm Blender) against one plain local render of the same frame, measured
//! in the same run with `getrusage(RUSAGE_CHILDREN)` (start-up included on both sides).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::job::TileJob;
use crate::{Bridge, BridgeConfig};

/// Builds the test scene (no external assets): `blender -b --python make_scene.py -- OUT [variant] [arg]`.
pub const MAKE_SCENE_PY: &str = include_str!("../tests/scripts/make_scene.py");
/// A plain local render of a whole frame with the driver's settings.
pub const REFERENCE_PY: &str = include_str!("reference.py");

#[derive(Debug, Clone)]
pub struct GridFigure {
    pub grid: u32,
    pub cpu_s: f64,
    pub ratio: f64,
    pub wall: Duration,
    pub first_tile: Duration,
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub width: u32,
    pub height: u32,
    pub samples: u32,
    pub local_cpu_s: f64,
    pub local_wall: Duration,
    pub grids: Vec<GridFigure>,
}

/// CPU seconds (user + system) of all reaped children so far.
pub fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn run_blender(blender: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(blender).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "blender {args:?} failed: {}",
        String::from_utf8_lossy(&out.stdout).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
    );
    Ok(())
}

/// Write the test scene at `width`x`height` to `out`.
pub fn make_scene(
    blender: &Path,
    dir: &Path,
    out: &Path,
    variant: &str,
    arg: &str,
) -> anyhow::Result<()> {
    let script = dir.join("make_scene.py");
    std::fs::write(&script, MAKE_SCENE_PY)?;
    let (s, o) = (script.to_string_lossy(), out.to_string_lossy());
    run_blender(
        blender,
        &[
            "-b",
            "--factory-startup",
            "-noaudio",
            "--python-exit-code",
            "1",
            "--python",
            &s,
            "--",
            &o,
            variant,
            arg,
        ],
    )
}

/// Render the whole frame locally (the reference) into `out`.
pub fn render_reference(
    blender: &Path,
    dir: &Path,
    scene: &Path,
    out: &Path,
    frame: i32,
    samples: u32,
    seed: u32,
) -> anyhow::Result<()> {
    let script = dir.join("reference.py");
    std::fs::write(&script, REFERENCE_PY)?;
    let args = serde_json::json!({"out_path": out, "frame": frame, "samples": samples, "seed": seed, "threads": 1}).to_string();
    let (sc, s) = (scene.to_string_lossy(), script.to_string_lossy());
    run_blender(
        blender,
        &[
            "-b",
            "--factory-startup",
            "--disable-autoexec",
            "-noaudio",
            "-t",
            "1",
            &sc,
            "--python-exit-code",
            "1",
            "--python",
            &s,
            "--",
            &args,
        ],
    )
}

/// The tiles of an `n`x`n` grid over a `w`x`h` frame, centre first.
pub fn grid_jobs(w: u32, h: u32, n: u32, frame: i32, samples: u32, seed: u32) -> Vec<TileJob> {
    let mut jobs = Vec::new();
    for j in 0..n {
        for i in 0..n {
            jobs.push(TileJob {
                frame,
                width: w,
                height: h,
                x0: w * i / n,
                x1: w * (i + 1) / n,
                y0: h * j / n,
                y1: h * (j + 1) / n,
                samples,
                seed,
                denoise_data: false,
            });
        }
    }
    let centre = |t: &TileJob| {
        let dx = i64::from(t.x0 + t.x1) - i64::from(w);
        let dy = i64::from(t.y0 + t.y1) - i64::from(h);
        dx * dx + dy * dy
    };
    jobs.sort_by_key(centre);
    jobs
}

/// One round: a local render, then each grid through a fresh bridge. Rounds repeat the
/// whole sequence so the figures show the machine's noise (it is shared).
pub fn run(
    blender: &Path,
    work: &Path,
    width: u32,
    height: u32,
    samples: u32,
    grids: &[u32],
    rounds: u32,
) -> anyhow::Result<Vec<BenchReport>> {
    let scene = work.join("bench.blend");
    make_scene(blender, work, &scene, "plain", &format!("{width}x{height}"))?;
    let bytes = std::fs::read(&scene)?;
    let (frame, seed) = (1, 7);
    let mut reports = Vec::new();
    for _ in 0..rounds.max(1) {
        let before = children_cpu_s();
        let t0 = Instant::now();
        render_reference(blender, work, &scene, &work.join("reference.exr"), frame, samples, seed)?;
        let local_wall = t0.elapsed();
        let local_cpu_s = children_cpu_s() - before;

        let mut figures = Vec::new();
        for &n in grids {
            let bridge = Bridge::new(BridgeConfig::new(blender, work.join(format!("bridge-{n}"))))?;
            let before = children_cpu_s();
            let t0 = Instant::now();
            let mut first_tile = None;
            for job in grid_jobs(width, height, n, frame, samples, seed) {
                bridge
                    .render_job(&bytes, &job)
                    .map_err(|e| anyhow::anyhow!("tile {job:?}: {e}"))?;
                first_tile.get_or_insert(t0.elapsed());
            }
            let wall = t0.elapsed();
            bridge.shutdown();
            let cpu_s = children_cpu_s() - before;
            figures.push(GridFigure {
                grid: n,
                cpu_s,
                ratio: cpu_s / local_cpu_s,
                wall,
                first_tile: first_tile.unwrap_or_default(),
            });
        }
        reports.push(BenchReport {
            width,
            height,
            samples,
            local_cpu_s,
            local_wall,
            grids: figures,
        });
    }
    Ok(reports)
}
