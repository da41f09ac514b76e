//! The allowed-imports check (PROTOCOL §9): a `wasm` article is a WebAssembly component
//! whose imports are our `log` function plus the few WASI 0.2 interfaces that Rust's `std`
//! links for a wasm32-wasip2 component. The sandbox provides each of them in a harmless
//! form (no args, empty environment, stdout/stderr captured to the run's log with a size
//! cap, frozen clocks, seeded random). Filesystem, sockets, HTTP and everything else are
//! refused, at publish (exchange registry) and at load (seller), before anything runs.
//!
//! This module needs only `wasmparser`, so the exchange uses it with
//! `default-features = false` (no wasmtime).

use wasmparser::{
    ComponentTypeRef, Encoding, Parser, Payload, TypeBounds, Validator, WasmFeatures,
};

/// Our own import: `log: func(msg: string)` of the `bitwrk:article` world.
pub const LOG_IMPORT: &str = "log";

/// The WASI 0.2 interfaces a component may import (any `0.2.x` version; the sandbox links
/// wasmtime-wasi's 0.2 implementation, which serves every 0.2 patch version).
///
/// Why each is here (what Rust's `std` uses it for) and what the sandbox gives:
/// - `wasi:cli/environment`: `std::env::args`/`vars` at start-up. No args, empty env.
/// - `wasi:cli/exit`: `std::process::exit`, `abort`. Ends the run as a trap.
/// - `wasi:cli/stdin`, `stdout`, `stderr`, `wasi:io/streams`, `wasi:io/error`:
///   `print!`, panic messages. stdin is empty; stdout/stderr go to the run's log, capped.
/// - `wasi:cli/terminal-*`: is-a-terminal checks. Never a terminal.
/// - `wasi:io/poll`, `wasi:clocks/monotonic-clock`, `wasi:clocks/wall-clock`:
///   `Instant`, `SystemTime`, `thread::sleep`. Frozen clocks (time does not move).
/// - `wasi:random/random`, `insecure`, `insecure-seed`: `HashMap` seeds. Seeded from
///   the inputs' hash, so the same work gives the same result on every seller.
pub const ALLOWED_WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The WASI version family the sandbox serves.
pub const WASI_VERSION_PREFIX: &str = "0.2.";

/// Why a module is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ImportError {
    #[error("the module is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("the module is a core WebAssembly module, not a component (build for wasm32-wasip2)")]
    NotAComponent,
    #[error("import {name:?} is not allowed ({why}); allowed are `log` and {allowed}")]
    NotAllowed { name: String, why: &'static str, allowed: String },
}

impl ImportError {
    /// The offending import's name, if the module was refused for one.
    pub fn import_name(&self) -> Option<&str> {
        match self {
            ImportError::NotAllowed { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The top-level imports of a component: (name, kind of item). Nested modules' and
/// components' imports are satisfied inside the component and are not listed.
pub fn component_imports(bytes: &[u8]) -> Result<Vec<(String, ComponentTypeRef)>, ImportError> {
    let mut out = Vec::new();
    // Depth of nested modules/components; the outer component is depth 0 (1 once inside).
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ImportError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(ImportError::NotAComponent);
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| ImportError::Invalid(e.to_string()))?;
                    out.push((import.name.0.to_string(), import.ty));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Validate `bytes` as a component and check that it imports nothing outside the allowed
/// set. The error names the first offending import.
pub fn check_component(bytes: &[u8]) -> Result<(), ImportError> {
    let imports = component_imports(bytes)?;
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map_err(|e| ImportError::Invalid(e.to_string()))?;
    for (name, ty) in imports {
        check_one(&name, &ty)?;
    }
    Ok(())
}

fn check_one(name: &str, ty: &ComponentTypeRef) -> Result<(), ImportError> {
    let refuse = |why: &'static str| {
        Err(ImportError::NotAllowed {
            name: name.to_string(),
            why,
            allowed: ALLOWED_WASI_INTERFACES
                .iter()
                .map(|i| format!("{i}@0.2.x"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    };
    if name == LOG_IMPORT {
        return match ty {
            ComponentTypeRef::Func(_) => Ok(()),
            _ => refuse("`log` must be a function"),
        };
    }
    // The world's own record and variant types (`blob`, `run-error`) are imported as type
    // equalities: they bring in nothing the host must provide. A resource type would.
    match ty {
        ComponentTypeRef::Type(TypeBounds::Eq(_)) => return Ok(()),
        ComponentTypeRef::Type(_) => return refuse("a resource type the sandbox does not provide"),
        _ => {}
    }
    let Some((interface, version)) = name.split_once('@') else {
        return refuse("not part of the bitwrk:article world");
    };
    if !ALLOWED_WASI_INTERFACES.contains(&interface) {
        return refuse(if interface.starts_with("wasi:filesystem/") {
            "no filesystem in the sandbox"
        } else if interface.starts_with("wasi:sockets/") || interface.starts_with("wasi:http/") {
            "no network in the sandbox"
        } else {
            "not provided by the sandbox"
        });
    }
    if !version.starts_with(WASI_VERSION_PREFIX) {
        return refuse("only WASI 0.2.x is provided");
    }
    match ty {
        ComponentTypeRef::Instance(_) => Ok(()),
        _ => refuse("a WASI interface must be imported as an instance"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component importing `name` as the given item (WAT text of the import's type).
    fn component(imports: &[(&str, &str)]) -> Vec<u8> {
        let body: String =
            imports.iter().map(|(name, ty)| format!("(import \"{name}\" {ty})\n")).collect();
        wat::parse_str(format!("(component\n{body})")).expect("test WAT parses")
    }

    const IFACE: &str = "(instance)";
    const FUNC: &str = "(func (param \"msg\" string))";

    /// `expected` is None for allowed, else the import named in the error.
    fn check(imports: &[(&str, &str)], expected: Option<&str>) {
        let got = check_component(&component(imports));
        match expected {
            None => assert_eq!(got, Ok(()), "{imports:?}"),
            Some(bad) => {
                let err = got.expect_err("must be refused");
                assert_eq!(err.import_name(), Some(bad), "{imports:?}: {err}");
                assert!(err.to_string().contains(bad), "message names the import: {err}");
            }
        }
    }

    #[test]
    fn allowed_and_refused_imports() {
        check(&[], None);
        check(&[("log", FUNC)], None);
        check(
            &[("log", FUNC), ("wasi:cli/stdout@0.2.6", IFACE), ("wasi:io/streams@0.2.0", IFACE)],
            None,
        );
        for iface in ALLOWED_WASI_INTERFACES {
            check(&[(&format!("{iface}@0.2.3"), IFACE)], None);
        }
        check(&[("wasi:filesystem/types@0.2.6", IFACE)], Some("wasi:filesystem/types@0.2.6"));
        check(&[("wasi:filesystem/preopens@0.2.0", IFACE)], Some("wasi:filesystem/preopens@0.2.0"));
        check(&[("wasi:sockets/tcp@0.2.6", IFACE)], Some("wasi:sockets/tcp@0.2.6"));
        check(
            &[("wasi:http/outgoing-handler@0.2.6", IFACE)],
            Some("wasi:http/outgoing-handler@0.2.6"),
        );
        check(&[("wasi:cli/stdout@0.3.0", IFACE)], Some("wasi:cli/stdout@0.3.0"));
        check(&[("wasi:cli/stdout", IFACE)], Some("wasi:cli/stdout"));
        check(&[("exec", FUNC)], Some("exec"));
        check(&[("log", IFACE)], Some("log"));
        check(&[("wasi:cli/stdout@0.2.6", FUNC)], Some("wasi:cli/stdout@0.2.6"));
        check(&[("my-resource", "(type (sub resource))")], Some("my-resource"));
        // The first offending import is named, wherever it stands.
        check(
            &[("log", FUNC), ("wasi:cli/exit@0.2.6", IFACE), ("wasi:sockets/udp@0.2.6", IFACE)],
            Some("wasi:sockets/udp@0.2.6"),
        );
    }

    #[test]
    fn nested_imports_are_internal() {
        // A nested component's and core module's imports are satisfied inside; only the
        // outer component's imports reach the host.
        let bytes = wat::parse_str(
            r#"(component
                (import "log" (func (param "msg" string)))
                (component (import "wasi:sockets/tcp@0.2.6" (instance)))
                (core module (import "wasi:filesystem" "read" (func)))
            )"#,
        )
        .unwrap();
        assert_eq!(check_component(&bytes), Ok(()));
        let names: Vec<String> =
            component_imports(&bytes).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["log"]);
    }

    #[test]
    fn not_a_component() {
        let module = wat::parse_str("(module (import \"wasi\" \"fd_write\" (func)))").unwrap();
        assert_eq!(check_component(&module), Err(ImportError::NotAComponent));
        assert!(matches!(check_component(b"not wasm at all"), Err(ImportError::Invalid(_))));
        assert!(matches!(check_component(&[]), Err(ImportError::Invalid(_))));
        // Truncated component.
        let c = component(&[("log", FUNC)]);
        assert!(matches!(check_component(&c[..c.len() - 3]), Err(ImportError::Invalid(_))));
    }
}
