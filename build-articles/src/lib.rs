//! One cargo command line for building an article's wasm component, so that the same source
//! gives the same module (and so the same article id) on every machine and checkout path.
//!
//! Two things made the builds differ:
//! - cargo unifies the features of shared dependencies across the packages of one build, so
//!   `cargo build --target wasm32-wasip2 -p a -p b` builds `a` with other dependency
//!   features (and so other symbol hashes) than `-p a` alone. Each article is therefore
//!   built by a cargo invocation of its own.
//! - panic locations embed the source paths of dependencies, which live under
//!   `$CARGO_HOME/registry/src` (per user) and the rustup sysroot. They are remapped to
//!   fixed prefixes. Workspace members are compiled with paths relative to the workspace
//!   root, and std comes prebuilt with `/rustc/<commit>/` paths.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm target articles are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// `cargo build --release --target wasm32-wasip2 -p PACKAGE` with the path remapping.
/// Run it in (or under) the workspace.
pub fn wasm_build_command(package: &str) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release", "--target", WASM_TARGET, "-p", package]);
    let flags: Vec<String> = remaps()
        .into_iter()
        .map(|(from, to)| format!("\"--remap-path-prefix={}={to}\"", toml_escape(&from)))
        .collect();
    // `--config` arrays are appended to the ones in .cargo/config.toml, and only the wasm
    // units get them: build scripts and proc macros keep their (cached) native builds.
    cmd.arg("--config").arg(format!("target.{WASM_TARGET}.rustflags=[{}]", flags.join(",")));
    cmd
}

/// The machine-specific path prefixes and the fixed names they get in the module.
fn remaps() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    if let Some(home) = cargo_home() {
        out.push((format!("{}/registry/src/", home.display()), "/cargo/registry/src/"));
        out.push((format!("{}/git/checkouts/", home.display()), "/cargo/git/checkouts/"));
    }
    if let Some(sysroot) = sysroot() {
        out.push((format!("{}/", sysroot.display()), "/rust/sysroot/"));
    }
    out
}

fn cargo_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Some(absolute(PathBuf::from(h)));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo"))
}

fn sysroot() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| PathBuf::from(s.trim()))
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The cargo that runs us (cargo sets `CARGO` for `cargo run` and build steps), else `cargo`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// SHA256 of a file's bytes, lowercase hex (the form of `module_sha256`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_builds_one_package_with_remapped_registry() {
        let cmd = wasm_build_command("article-x");
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[..6], ["build", "--release", "--target", WASM_TARGET, "-p", "article-x"]);
        assert_eq!(args[6], "--config");
        assert!(args[7].starts_with("target.wasm32-wasip2.rustflags=["), "{}", args[7]);
        if cargo_home().is_some() {
            assert!(args[7].contains("registry/src/=/cargo/registry/src/"), "{}", args[7]);
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
