//! `bitwrk-runtime-bench`: the sandbox's speed next to native code, in one process.
//!
//! 1. Renders a tile of `articles/raytrace/scenes/demo.json` with `article_raytrace::render_png`
//!    natively and with the raytrace component in the sandbox (sellers' settings), checks
//!    both give the same PNG, and prints sandbox/native (target ≤ 1.25).
//! 2. Prints the time to instantiate a cached component (target ≤ 0.5 ms) and of a whole
//!    run of a trivial article.
//!
//! Native code and sandbox are compared like with like: Cranelift compiles the guest for
//! exactly the CPU features this binary (and so the native renderer) was compiled for
//! (`--sandbox-cpu host` gives the sandbox every feature of this CPU, as sellers run it).
//!
//! `cargo build-articles && cargo run --release -p bitwrk-runtime --features bench --bin
//! bitwrk-runtime-bench [-- --rounds N --tile WxH --sandbox-cpu as-compiled|host]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bitwrk_protocol::{Hash32, Manifest};
use bitwrk_runtime::{CpuFeatures, Sandbox, SandboxConfig, cpu_features_report};

fn main() -> anyhow::Result<()> {
    let mut rounds = 5usize;
    let mut tile = (160u32, 120u32);
    let mut cpu = CpuFeatures::AsCompiled;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--sandbox-cpu" => {
                cpu = match args.next().as_deref() {
                    Some("as-compiled") => CpuFeatures::AsCompiled,
                    Some("host") => CpuFeatures::Host,
                    _ => bail!("--sandbox-cpu as-compiled|host"),
                }
            }
            "--tile" => {
                let v = args.next().context("--tile WxH")?;
                let (w, h) = v.split_once('x').context("--tile WxH")?;
                tile = (w.parse()?, h.parse()?);
            }
            other => bail!(
                "unknown argument {other:?} (use --rounds N, --tile WxH, --sandbox-cpu as-compiled|host)"
            ),
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let wasm_dir = target.join("wasm32-wasip2/release");

    let scene = std::fs::read(root.join("articles/raytrace/scenes/demo.json"))
        .context("reading the demo scene")?;
    let tile_json = format!(r#"{{"x":240,"y":180,"width":{},"height":{}}}"#, tile.0, tile.1);
    let module = read(&wasm_dir.join("article_raytrace.wasm"))?;
    let manifest = manifest_for(&root.join("articles/raytrace/article.toml"), &module)?;

    let cache = tempfile_dir()?;
    let config = SandboxConfig { cpu_features: cpu, ..SandboxConfig::new(cache.join("cache")) };
    let sandbox = Sandbox::new(config.clone())?;
    let t = Instant::now();
    let article = sandbox.load(&manifest, &module).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compile = t.elapsed();

    println!("machine: {} cores, {}", cores(), cpu_model());
    let compared = compared(cpu);
    println!("compared: {compared}");
    println!(
        "raytrace tile {}x{} of demo.json, {rounds} rounds each, best and median:",
        tile.0, tile.1
    );
    let inputs = vec![
        ("scene".to_string(), scene.clone()),
        ("tile".to_string(), tile_json.clone().into_bytes()),
    ];
    let mut native_png = Vec::new();
    let mut wasm_png = Vec::new();
    let mut fuel = 0;
    let mut native = Vec::new();
    let mut wasm = Vec::new();
    // Interleaved, so that a busy neighbour on the machine hurts both sides alike.
    for _ in 0..rounds {
        let t = Instant::now();
        native_png = article_raytrace::render_png(&scene, tile_json.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        native.push(t.elapsed());
        let out = sandbox.run(&article, inputs.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        wasm.push(out.wall);
        fuel = out.fuel_used;
        wasm_png = out.outputs.into_iter().next().context("no output")?.1;
    }
    if native_png != wasm_png {
        bail!("the sandbox's PNG differs from the native one");
    }
    let (nb, nm) = best_median(&mut native);
    let (wb, wm) = best_median(&mut wasm);
    println!("  native:  best {:>9.3} ms  median {:>9.3} ms", ms(nb), ms(nm));
    println!("  sandbox: best {:>9.3} ms  median {:>9.3} ms  ({fuel} fuel)", ms(wb), ms(wm));
    println!(
        "  sandbox/native: best {:.3}x  median {:.3}x  (target <= 1.25x); PNGs identical; {}",
        ratio(wb, nb),
        ratio(wm, nm),
        like_with_like(cpu)
    );
    println!("  first load (compile + write cache): {:.1} ms", ms(compile));

    // Cached component: a fresh sandbox on the same cache dir loads it from disk.
    let sandbox2 = Sandbox::new(config)?;
    let t = Instant::now();
    let article2 = sandbox2.load(&manifest, &module).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("  load from the disk cache: {:.2} ms", ms(t.elapsed()));
    let mut inst = Vec::new();
    for _ in 0..200 {
        inst.push(sandbox2.instantiate_time(&article2).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let (ib, im) = best_median(&mut inst);
    println!(
        "instantiate a cached component (store + instance, 200 times): best {:.3} ms  median {:.3} ms  (target <= 0.5 ms)",
        ms(ib),
        ms(im)
    );

    // A whole run of a trivial article: store, instance, call, checks.
    let echo = read(&wasm_dir.join("hostile_echo.wasm"))?;
    let echo_manifest = Manifest::from_toml(&format!(
        "name = \"echo\"\nversion = \"1.0.0\"\nruntime = \"wasm\"\nmodule_sha256 = \"{}\"\n\
         [[inputs]]\nname = \"text\"\nmedia_type = \"text/plain\"\nmax_bytes = 1024\n\
         [[outputs]]\nname = \"echo\"\nmedia_type = \"text/plain\"\nmax_bytes = 1024\n\
         [[outputs]]\nname = \"probe\"\nmedia_type = \"text/plain\"\nmax_bytes = 1024\n\
         [limits]\nfuel = 100000000\nmemory_bytes = 16777216\nwall_ms = 10000\n",
        Hash32::of(&echo)
    ))?;
    let echo_article = sandbox2.load(&echo_manifest, &echo).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut runs = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        sandbox2
            .run(&echo_article, vec![("text".into(), b"hi".to_vec())])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        runs.push(t.elapsed());
    }
    let (rb, rm) = best_median(&mut runs);
    println!(
        "whole run of a trivial article (200 times): best {:.3} ms  median {:.3} ms",
        ms(rb),
        ms(rm)
    );
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

/// The ratio line's short form of [`compared`].
fn like_with_like(cpu: CpuFeatures) -> &'static str {
    match cpu {
        CpuFeatures::AsCompiled if cfg!(target_arch = "x86_64") => {
            "same CPU features on both sides"
        }
        CpuFeatures::AsCompiled => "CPU features not matched on this architecture",
        CpuFeatures::Host => "sandbox with this CPU's features, native without: not like with like",
    }
}

/// What the ratio compares: the CPU features of the native build and of the sandbox.
fn compared(cpu: CpuFeatures) -> String {
    let (compiled, left_out) = cpu_features_report();
    let list = |v: &[&str]| if v.is_empty() { "none".to_string() } else { v.join(",") };
    let native =
        format!("native {} with optional CPU features {}", std::env::consts::ARCH, list(&compiled));
    match cpu {
        CpuFeatures::AsCompiled if !cfg!(target_arch = "x86_64") => {
            format!(
                "{native}; sandbox (Cranelift) with this CPU's own: features are matched on x86-64 only"
            )
        }
        CpuFeatures::AsCompiled => {
            format!(
                "{native}; sandbox (Cranelift) with the same ({} of this CPU unused by both)",
                list(&left_out)
            )
        }
        CpuFeatures::Host => format!(
            "{native}; sandbox (Cranelift) with every feature of this CPU (also {}): not like with like",
            list(&left_out)
        ),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!("{}: build the articles first (`cargo build-articles`)", path.display())
    })
}

/// The article's manifest with `module_sha256` set to this module's hash (the checked-in
/// article.toml may not have been through `article build` yet).
fn manifest_for(path: &Path, module: &[u8]) -> anyhow::Result<Manifest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("module_sha256"))
        .map(str::to_string)
        .collect();
    let first_table =
        lines.iter().position(|l| l.trim_start().starts_with('[')).unwrap_or(lines.len());
    lines.insert(first_table, format!("module_sha256 = \"{}\"", Hash32::of(module)));
    Ok(Manifest::from_toml(&lines.join("\n"))?)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("bitwrk-runtime-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn best_median(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
