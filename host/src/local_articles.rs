//! The example articles as built in this checkout (`cargo build-articles`): their
//! manifest from `articles/<name>/article.toml` with `module_sha256` filled in from the
//! built component, the way `bitwrk-host article build` fills it. For `demo`, the bench and
//! the end-to-end tests, which publish them to a fresh exchange.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bitwrk_protocol::{Hash32, Manifest};

/// The workspace root this binary was built from (articles and target live there).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the workspace")
        .to_path_buf()
}

/// Where `cargo build-articles` puts the components: under `$CARGO_TARGET_DIR` if set and
/// built there, else under the target dir this binary was built in (`cargo build-articles`
/// and `cargo build` share it), else under `<workspace>/target`.
pub fn wasm_dir() -> PathBuf {
    let sub = |t: &Path| t.join(WASM_TARGET).join("release");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| sub(Path::new(&t)))
        .filter(|d| d.is_dir())
        .or_else(|| exe_target_dir().map(|t| sub(&t)))
        .unwrap_or_else(|| sub(&workspace_root().join("target")))
}

/// The wasm target the articles are built for (a directory of that name in a target dir).
const WASM_TARGET: &str = "wasm32-wasip2";

/// The cargo target dir this binary was built in, when it holds wasm builds:
/// `target/<profile>/bitwrk-host` or `target/<profile>/deps/<test binary>` give `target`.
pub fn exe_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(2).take(2).find(|d| d.join(WASM_TARGET).is_dir()).map(Path::to_path_buf)
}

/// Manifest (with `module_sha256`) and module bytes of example article `name`.
pub fn load(name: &str) -> anyhow::Result<(Manifest, Vec<u8>)> {
    let toml_path = workspace_root().join("articles").join(name).join("article.toml");
    let wasm_path = wasm_dir().join(format!("article_{}.wasm", name.replace('-', "_")));
    let module = std::fs::read(&wasm_path).with_context(|| {
        format!("reading {} (build the articles first: cargo build-articles)", wasm_path.display())
    })?;
    let text = std::fs::read_to_string(&toml_path)
        .with_context(|| format!("reading {}", toml_path.display()))?;
    let manifest = with_module_hash(&text, &Hash32::of(&module))
        .with_context(|| format!("parsing {}", toml_path.display()))?;
    Ok((manifest, module))
}

/// Parse `article.toml` text with `module_sha256` set to `hash` (replacing a stale one).
pub fn with_module_hash(toml_text: &str, hash: &Hash32) -> anyhow::Result<Manifest> {
    let rest: Vec<&str> =
        toml_text.lines().filter(|l| !l.trim_start().starts_with("module_sha256")).collect();
    // A top-level key must come before the first table: put it first.
    let text = format!("module_sha256 = \"{hash}\"\n{}", rest.join("\n"));
    Ok(Manifest::from_toml(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_hash_is_filled_in_and_replaced() {
        let toml = "name = \"t\"\nversion = \"1.0.0\"\nruntime = \"wasm\"\nmodule_sha256 = \"00\"\n\
                    [[inputs]]\nname = \"a\"\nmedia_type = \"text/plain\"\nmax_bytes = 4\n\
                    [[outputs]]\nname = \"b\"\nmedia_type = \"text/plain\"\nmax_bytes = 4\n\
                    [limits]\nfuel = 1\nmemory_bytes = 65536\nwall_ms = 1\n";
        let h = Hash32::of(b"m");
        let m = with_module_hash(toml, &h).unwrap();
        assert_eq!(m.module_sha256, Some(h));
        assert_eq!(m.inputs[0].name, "a");
    }
}
