//! `bitwrk-host article build|run` and `bitwrk-host publish`: build an article's component
//! and fill in its `module_sha256`, run it locally in exactly the sellers' sandbox, publish
//! it (signed) to an exchange's registry.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use bitwrk_exchange::client::ExchangeClient;
use bitwrk_protocol::manifest::Runtime;
use bitwrk_protocol::{Hash32, Manifest};
use bitwrk_runtime::{Sandbox, SandboxConfig};

/// The manifest file inside an article's source directory.
pub const MANIFEST_FILE: &str = "article.toml";
/// The wasm target articles are built for.
const WASM_TARGET: &str = "wasm32-wasip2";
/// Largest file `--input NAME=@FILE` reads (the protocol's cap on any input).
const INPUT_FILE_BYTES_MAX: u64 = bitwrk_protocol::manifest::caps::IO_BYTES_MAX;
/// Largest module `article run` accepts from a directory (a sane bound for a component).
const MODULE_BYTES_MAX: u64 = 256 << 20;
/// Where `article run ID` keeps articles fetched from an exchange, inside the data dir.
const ARTICLES_DIR: &str = "articles";
/// The compile cache, shared with the seller (`bitwrk-host run` uses the same dir).
const MODULE_CACHE_DIR: &str = "module-cache";

#[derive(clap::Subcommand, Debug)]
pub enum ArticleCmd {
    /// Build the article's component (cargo, wasm32-wasip2, release), write its
    /// module_sha256 into DIR/article.toml and print the article id.
    Build {
        /// The article's source directory (holds article.toml and the cargo package).
        dir: PathBuf,
    },
    /// Run the article locally, in exactly the sellers' sandbox; print fuel used and time.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// An article source directory (built with `article build`), or an article id (64 hex).
    pub article: String,
    /// An input: NAME=@FILE (repeat for each declared input).
    #[arg(long = "input", short = 'i', value_name = "NAME=@FILE")]
    pub inputs: Vec<String>,
    /// Where each output is written, as OUT/<output name>.
    #[arg(long, short = 'o', value_name = "OUT")]
    pub output_dir: PathBuf,
    /// Exchange to fetch an article id from when it is not in the data dir yet.
    #[arg(long, env = "BITWRK_EXCHANGE")]
    pub exchange: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The article's source directory (built with `article build`).
    pub dir: PathBuf,
    /// The exchange's URL.
    #[arg(long, env = "BITWRK_EXCHANGE", default_value = crate::EXCHANGE_URL_DEFAULT)]
    pub exchange: String,
}

pub fn run(cmd: ArticleCmd, data_dir: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        ArticleCmd::Build { dir } => {
            let built = build(&dir)?;
            println!("{}", built.manifest.id());
            eprintln!(
                "built {} {} ({} bytes, module_sha256 {}) from {}",
                built.manifest.name,
                built.manifest.version,
                built.module.len(),
                Hash32::of(&built.module),
                built.wasm_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        ArticleCmd::Run(args) => run_local(args, data_dir),
    }
}

pub fn publish(args: PublishArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let (manifest, module) = read_built(&args.dir)?;
    if manifest.runtime == Runtime::Wasm {
        bitwrk_runtime::imports::check_component(&module)
            .with_context(|| format!("{} would be refused by the registry", args.dir.display()))?;
    }
    let key = crate::data_dir::load_or_create_key(data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let entry = rt.block_on(async {
        let client = ExchangeClient::connect(&args.exchange)
            .await
            .with_context(|| format!("connecting to the exchange at {}", args.exchange))?;
        client.publish(&key, &manifest, &module).await.context("publishing")
    })?;
    let id = entry.manifest.id();
    anyhow::ensure!(
        id == manifest.id(),
        "the exchange answered for article {id}, not {}",
        manifest.id()
    );
    println!("{id}");
    eprintln!(
        "published {} {} to {} as {}",
        manifest.name,
        manifest.version,
        args.exchange,
        key.address()
    );
    Ok(ExitCode::SUCCESS)
}

/// A built article: its manifest (with module_sha256) and module.
struct Built {
    manifest: Manifest,
    module: Vec<u8>,
    wasm_path: PathBuf,
}

/// The cargo package and the wasm it builds, from `[build] package` or DIR/Cargo.toml.
struct Package {
    name: String,
    wasm_path: PathBuf,
}

fn build(dir: &Path) -> anyhow::Result<Built> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} does not parse", manifest_path.display()))?;
    if table.get("runtime").and_then(|v| v.as_str()) != Some("wasm") {
        bail!(
            "{}: only runtime = \"wasm\" articles are built (a native article has no module)",
            manifest_path.display()
        );
    }
    let package = package(dir, &table)?;
    ensure_wasm_target()?;
    eprintln!("building {} for {WASM_TARGET} (release)...", package.name);
    // The same command line as `cargo build-articles`, so both give the same module.
    let status = bitwrk_build_articles::wasm_build_command(&package.name)
        .current_dir(dir)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build of {} failed ({status})", package.name);
    }
    let module = read_module(&package.wasm_path)?;
    let hash = Hash32::of(&module);
    let new_text = set_module_sha256(&text, &hash);
    // Validate before writing: the file is only changed into a manifest that parses.
    let manifest =
        Manifest::from_toml(&new_text).with_context(|| format!("{}", manifest_path.display()))?;
    if new_text != text {
        let tmp = manifest_path.with_extension("toml.tmp");
        std::fs::write(&tmp, &new_text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &manifest_path)
            .with_context(|| format!("replacing {}", manifest_path.display()))?;
    }
    bitwrk_runtime::imports::check_component(&module).with_context(|| {
        format!("{} builds, but sellers would refuse it", package.wasm_path.display())
    })?;
    Ok(Built { manifest, module, wasm_path: package.wasm_path })
}

/// The manifest and module of an article directory that has been built, checked to match.
fn read_built(dir: &Path) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest =
        Manifest::from_toml(&text).with_context(|| format!("{}", manifest_path.display()))?;
    let Some(expected) = manifest.module_sha256 else {
        return Ok((manifest, Vec::new()));
    };
    let table: toml::Table = toml::from_str(&text)?;
    let name = package_name(dir, &table)?;
    // Where cargo builds now, else where this binary was built (`cargo build-articles`
    // writes there): the module is found whatever CARGO_TARGET_DIR says at run time, and
    // without cargo at all.
    let mut candidates = Vec::new();
    match target_dir(dir) {
        Ok(t) => candidates.push(wasm_path_in(&t, &name)),
        Err(e) => tracing::debug!(error = %format!("{e:#}"), "no cargo target dir"),
    }
    if let Some(t) = crate::local_articles::exe_target_dir() {
        candidates.push(wasm_path_in(&t, &name));
    }
    candidates.dedup();
    let mut stale = None;
    for path in &candidates {
        if !path.is_file() {
            continue;
        }
        let module = read_module(path)?;
        let got = Hash32::of(&module);
        if got == expected {
            return Ok((manifest, module));
        }
        stale.get_or_insert((path, got));
    }
    match stale {
        Some((path, got)) => bail!(
            "{} has SHA256 {got}, but {} says {expected}: run `bitwrk-host article build {}`",
            path.display(),
            manifest_path.display(),
            dir.display()
        ),
        None => bail!(
            "the module is not built (looked for {}): run `bitwrk-host article build {}` first",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
            dir.display()
        ),
    }
}

/// The component cargo builds for `package` under target dir `target`.
fn wasm_path_in(target: &Path, package: &str) -> PathBuf {
    target.join(WASM_TARGET).join("release").join(format!("{}.wasm", package.replace('-', "_")))
}

fn package(dir: &Path, table: &toml::Table) -> anyhow::Result<Package> {
    let name = package_name(dir, table)?;
    let wasm_path = wasm_path_in(&target_dir(dir)?, &name);
    Ok(Package { name, wasm_path })
}

/// The cargo package an article directory builds: `[build] package`, else DIR/Cargo.toml's.
fn package_name(dir: &Path, table: &toml::Table) -> anyhow::Result<String> {
    let from_build = table.get("build").and_then(|b| b.get("package")).and_then(|p| p.as_str());
    match from_build {
        Some(p) => Ok(p.to_string()),
        None => {
            let cargo_toml = dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&cargo_toml).with_context(|| {
                format!(
                    "no [build] package in {MANIFEST_FILE}, and reading {}",
                    cargo_toml.display()
                )
            })?;
            let t: toml::Table =
                toml::from_str(&text).with_context(|| format!("{}", cargo_toml.display()))?;
            Ok(t.get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .with_context(|| format!("{} has no package name", cargo_toml.display()))?
                .to_string())
        }
    }
}

/// cargo's target dir for the package in `dir` (CARGO_TARGET_DIR, else `cargo metadata`).
fn target_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        return Ok(if t.is_absolute() { t } else { std::env::current_dir()?.join(t) });
    }
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(dir)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata output")?;
    Ok(PathBuf::from(
        v["target_directory"].as_str().context("cargo metadata has no target_directory")?,
    ))
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Add the wasm target with rustup when it is missing (no rustup: leave it to cargo).
fn ensure_wasm_target() -> anyhow::Result<()> {
    let Ok(out) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("adding the {WASM_TARGET} target with rustup...");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status})");
    }
    Ok(())
}

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len =
        std::fs::metadata(path).with_context(|| format!("{} is not there", path.display()))?.len();
    if len > MODULE_BYTES_MAX {
        bail!("{} has {len} bytes, more than {MODULE_BYTES_MAX}", path.display());
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Put `module_sha256 = "<hash>"` into the manifest text: replace the line if it is there,
/// else add it after the top-level `runtime` line (or before the first table). Everything
/// else (comments, order) stays as it is.
pub fn set_module_sha256(text: &str, hash: &Hash32) -> String {
    let line = format!("module_sha256 = \"{hash}\"");
    let lines: Vec<&str> = text.lines().collect();
    // Top-level keys end at the first table header.
    let top_end = lines.iter().position(|l| l.trim_start().starts_with('[')).unwrap_or(lines.len());
    let is_key = |l: &str, key: &str| {
        l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    if let Some(i) = lines[..top_end].iter().position(|l| is_key(l, "module_sha256")) {
        out[i] = line;
    } else {
        let at = lines[..top_end]
            .iter()
            .position(|l| is_key(l, "runtime"))
            .map(|i| i + 1)
            .unwrap_or(top_end);
        out.insert(at, line);
    }
    let mut s = out.join("\n");
    if text.ends_with('\n') || text.is_empty() {
        s.push('\n');
    }
    s
}

fn run_local(args: RunArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let (manifest, module) = if Path::new(&args.article).join(MANIFEST_FILE).exists() {
        read_built(Path::new(&args.article))?
    } else if let Ok(id) = args.article.parse::<Hash32>() {
        by_id(&id, args.exchange.as_deref(), data_dir)?
    } else {
        bail!(
            "{:?} is neither an article directory (with {MANIFEST_FILE}) nor an article id",
            args.article
        );
    };
    if manifest.runtime != Runtime::Wasm {
        bail!(
            "article {} runs on {}, not in the wasm sandbox",
            manifest.name,
            manifest.runtime.as_string()
        );
    }
    let mut inputs = Vec::new();
    for spec in &args.inputs {
        let (name, file) =
            spec.split_once("=@").with_context(|| format!("--input {spec:?}: write NAME=@FILE"))?;
        let len = std::fs::metadata(file).with_context(|| format!("--input {name}: {file}"))?.len();
        if len > INPUT_FILE_BYTES_MAX {
            bail!("--input {name}: {file} has {len} bytes, more than {INPUT_FILE_BYTES_MAX}");
        }
        inputs.push((
            name.to_string(),
            std::fs::read(file).with_context(|| format!("reading {file}"))?,
        ));
    }
    crate::data_dir::ensure_dir(data_dir)?;
    let sandbox = Sandbox::new(SandboxConfig::new(data_dir.join(MODULE_CACHE_DIR)))
        .context("starting the sandbox")?;
    let loaded = sandbox.load(&manifest, &module).context("loading the article")?;
    let out = match sandbox.run(&loaded, inputs) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("run failed: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !out.log.is_empty() {
        eprintln!("--- article log ---\n{}--- end of log ---", out.log);
    }
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("creating {}", args.output_dir.display()))?;
    for (name, data) in &out.outputs {
        // Output names are checked against the manifest's (a-z 0-9 - _), so they are safe
        // file names.
        let path = args.output_dir.join(name);
        std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))?;
        println!("{name}: {} bytes -> {}", data.len(), path.display());
    }
    println!("fuel used: {} of {}", out.fuel_used, manifest.limits.fuel);
    println!("time: {:.1} ms", out.wall.as_secs_f64() * 1000.0);
    Ok(ExitCode::SUCCESS)
}

/// An article by id: from the data dir, else fetched from the exchange (and kept).
fn by_id(
    id: &Hash32,
    exchange: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let dir = data_dir.join(ARTICLES_DIR).join(id.to_hex());
    let (manifest_path, module_path) = (dir.join("manifest.json"), dir.join("module.wasm"));
    if manifest_path.exists() && module_path.exists() {
        let manifest = Manifest::from_json(&std::fs::read(&manifest_path)?)
            .with_context(|| format!("{}", manifest_path.display()))?;
        let module = read_module(&module_path)?;
        if manifest.id() == *id && manifest.module_sha256 == Some(Hash32::of(&module)) {
            return Ok((manifest, module));
        }
        tracing::warn!(dir = %dir.display(), "the stored article does not match its id; fetching it again");
    }
    let Some(url) = exchange else {
        bail!("article {id} is not in {} yet: give --exchange URL to fetch it", dir.display());
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (manifest, module) = rt.block_on(async {
        let client =
            ExchangeClient::connect(url).await.with_context(|| format!("connecting to {url}"))?;
        let entry = client.article(id).await.with_context(|| format!("fetching article {id}"))?;
        // `module` checks the bytes against the manifest's module_sha256.
        let module =
            client.module(id).await.with_context(|| format!("fetching the module of {id}"))?;
        anyhow::Ok((entry.manifest, module))
    })?;
    anyhow::ensure!(
        manifest.id() == *id,
        "the exchange sent the manifest of {} for {id}",
        manifest.id()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&module_path, &module)?;
    std::fs::write(&manifest_path, manifest.canonical_json())?;
    Ok((manifest, module))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(before: &str, after: &str) {
        let h: Hash32 = "ab".repeat(32).parse().unwrap();
        assert_eq!(set_module_sha256(before, &h), after.replace("HASH", &h.to_hex()));
    }

    #[test]
    fn module_sha256_line() {
        // Added after `runtime`, comments and tables kept.
        check(
            "# c\nname = \"x\"\nruntime = \"wasm\"\ndescription = \"d\"\n\n[limits]\nfuel = 1\n",
            "# c\nname = \"x\"\nruntime = \"wasm\"\nmodule_sha256 = \"HASH\"\ndescription = \"d\"\n\n[limits]\nfuel = 1\n",
        );
        // Replaced where it stands.
        check(
            "name = \"x\"\nmodule_sha256 = \"00\" # old\nruntime = \"wasm\"\n[build]\npackage = \"p\"\n",
            "name = \"x\"\nmodule_sha256 = \"HASH\"\nruntime = \"wasm\"\n[build]\npackage = \"p\"\n",
        );
        // No runtime line at the top level: before the first table.
        check(
            "name = \"x\"\n[limits]\nruntime = 1\n",
            "name = \"x\"\nmodule_sha256 = \"HASH\"\n[limits]\nruntime = 1\n",
        );
        // A key inside a table is not the top-level one.
        check(
            "runtime = \"wasm\"\n[build]\nmodule_sha256 = \"x\"\n",
            "runtime = \"wasm\"\nmodule_sha256 = \"HASH\"\n[build]\nmodule_sha256 = \"x\"\n",
        );
        // `runtime_x` is not `runtime`.
        check("runtime_x = 1\n", "runtime_x = 1\nmodule_sha256 = \"HASH\"\n");
    }
}
