//! `cargo build-articles [--check]`: build the guest SDK, the example articles and the
//! hostile test guests as wasm components, one cargo invocation per package (see lib.rs for
//! why), then compare each article's module with the `module_sha256` in its article.toml.
//! Without `--check` a mismatch is a warning (an article being edited); with it, CI fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bitwrk_build_articles::{WASM_TARGET, sha256_hex, wasm_build_command};

/// Every wasm package of the workspace (the articles' packages are also found through their
/// article.toml; the others are the SDK and the runtime's hostile test guests).
const PACKAGES: &[&str] = &[
    "bitwrk-guest",
    "article-raytrace",
    "article-wordcount",
    "article-thumbnail",
    "article-checksum",
    "hostile-echo",
    "hostile-spin",
    "hostile-membomb",
    "hostile-recurse",
    "hostile-output",
    "hostile-fs",
    "hostile-net",
    "hostile-panic",
];

fn main() -> ExitCode {
    let mut check = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--check" => check = true,
            _ => {
                eprintln!("usage: cargo build-articles [--check]");
                return ExitCode::from(2);
            }
        }
    }
    let root = workspace_root();
    for package in PACKAGES {
        let status = match wasm_build_command(package).current_dir(&root).status() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: running cargo: {e}");
                return ExitCode::FAILURE;
            }
        };
        if !status.success() {
            eprintln!("error: cargo build of {package} for {WASM_TARGET} failed ({status})");
            return ExitCode::FAILURE;
        }
    }
    match compare_hashes(&root) {
        Ok(mismatches) if mismatches.is_empty() => ExitCode::SUCCESS,
        Ok(mismatches) => {
            for m in &mismatches {
                eprintln!("{}: {m}", if check { "error" } else { "warning" });
            }
            if check { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace this tool belongs to (cargo runs it from anywhere inside).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tool lives in the workspace").into()
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => t.into(),
        Some(t) => std::env::current_dir().unwrap_or_default().join(t),
        None => root.join("target"),
    }
}

/// For every articles/*/article.toml with a wasm module: a line per module whose SHA256 is
/// not the committed `module_sha256`.
fn compare_hashes(root: &Path) -> Result<Vec<String>, String> {
    let wasm_dir = target_dir(root).join(WASM_TARGET).join("release");
    let dir = root.join("articles");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("article.toml")))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut mismatches = Vec::new();
    for manifest in entries {
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
        let (Some(expected), Some(package)) =
            (string_value(&text, "module_sha256"), string_value(&text, "package"))
        else {
            continue; // a native article (no module)
        };
        let wasm = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        let module =
            std::fs::read(&wasm).map_err(|e| format!("reading {}: {e}", wasm.display()))?;
        let got = sha256_hex(&module);
        if got == expected {
            println!("{package}: {got} (as in {})", manifest.display());
        } else {
            mismatches.push(format!(
                "{} has SHA256 {got}, {} says {expected} \
                 (run `bitwrk-host article build {}` after changing an article)",
                wasm.display(),
                manifest.display(),
                manifest.parent().unwrap_or(&dir).display()
            ));
        }
    }
    Ok(mismatches)
}

/// The string value of `key = "..."` on a line of its own (the form `article build` writes;
/// `package` is the only key of that name in an article.toml, under `[build]`).
fn string_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(key)?.trim_start().strip_prefix('=')?;
        let v = rest.trim_start().strip_prefix('"')?;
        Some(v[..v.find('"')?].to_string())
    })
}
