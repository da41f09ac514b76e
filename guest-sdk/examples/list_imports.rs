//! Prints the top-level imports of wasm components, one per line, to check what an
//! article asks of the sandbox: `cargo run -p bitwrk-guest --example list_imports -- FILE.wasm...`
//! (The sandbox's own allowed-imports check lives in `bitwrk-runtime`.)

use wasmparser::{Parser, Payload};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: list_imports FILE.wasm...".into());
    }
    for file in files {
        let bytes = std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?;
        println!("{file}:");
        // Nested modules and components have imports of their own, satisfied inside the
        // component; only depth 0 is what the host must provide.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(&bytes) {
            match payload? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(reader) if depth == 0 => {
                    for import in reader {
                        println!("  {}", import?.name.0);
                    }
                }
                Payload::ImportSection(reader) if depth == 0 => {
                    for import in reader {
                        let import = import?;
                        println!("  (core module) {}::{}", import.module, import.name);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
