//! Article manifests (PROTOCOL §6): `article.toml` in the source tree, canonical JSON on
//! the wire, article id = SHA256 of the canonical JSON bytes.
//!
//! Canonical JSON: UTF-8, no whitespace, object keys in lexicographic order, optional
//! fields left out when absent, integers only. The struct fields below are declared in
//! lexicographic order so that serde_json's output is canonical as it stands.

use std::collections::BTreeSet;

use crate::hash::Hash32;

/// Hard caps a manifest may ask for; an exchange or seller may enforce lower ones.
pub mod caps {
    /// Largest single input or output (1 GiB: a packed .blend can be large).
    pub const IO_BYTES_MAX: u64 = 1 << 30;
    /// Most declared inputs or outputs.
    pub const IO_COUNT_MAX: usize = 32;
    /// Most fuel per run (about an hour of work on one core).
    pub const FUEL_MAX: u64 = 10_000_000_000_000;
    /// Most guest memory (4 GiB, the wasm32 address space).
    pub const MEMORY_BYTES_MAX: u64 = 4 << 30;
    /// Longest run (one hour).
    pub const WALL_MS_MAX: u64 = 3_600_000;
    /// Longest description.
    pub const DESCRIPTION_CHARS_MAX: usize = 4096;
    /// Largest canonical manifest.
    pub const MANIFEST_BYTES_MAX: usize = 64 * 1024;
}

/// How the seller runs the article.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// A WebAssembly component in the wasmtime sandbox.
    Wasm,
    /// Blender rendering through the native bridge, for this Blender `major.minor`.
    NativeBlender { version: String },
}

impl Runtime {
    pub fn as_string(&self) -> String {
        match self {
            Runtime::Wasm => "wasm".into(),
            Runtime::NativeBlender { version } => format!("native:blender-{version}"),
        }
    }
}

impl std::str::FromStr for Runtime {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Runtime, ManifestError> {
        if s == "wasm" {
            return Ok(Runtime::Wasm);
        }
        if let Some(v) = s.strip_prefix("native:blender-") {
            let ok = v.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.len() <= 4
                    && b.len() <= 4
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
            });
            if ok {
                return Ok(Runtime::NativeBlender { version: v.to_string() });
            }
        }
        Err(ManifestError::Invalid(format!(
            "runtime {s:?} is neither \"wasm\" nor \"native:blender-<major.minor>\""
        )))
    }
}

impl serde::Serialize for Runtime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

impl<'de> serde::Deserialize<'de> for Runtime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Runtime, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A declared input or output. Fields in lexicographic order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoDecl {
    pub max_bytes: u64,
    pub media_type: String,
    pub name: String,
}

/// Per-run limits. Fields in lexicographic order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Fuel per run (wasm: wasmtime fuel units; the unit of work).
    pub fuel: u64,
    pub memory_bytes: u64,
    /// NaN canonicalisation for bit-identical floats across CPU architectures.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strict_floats: bool,
    pub wall_ms: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An article manifest. Fields in lexicographic order (canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub description: String,
    pub inputs: Vec<IoDecl>,
    pub limits: Limits,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<Hash32>,
    pub name: String,
    pub outputs: Vec<IoDecl>,
    pub runtime: Runtime,
    pub version: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ManifestError {
    #[error("article.toml does not parse: {0}")]
    Toml(String),
    #[error("manifest JSON does not parse: {0}")]
    Json(String),
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Manifest {
    /// Parse `article.toml`. A `[build]` table (how to build the module) is allowed and is
    /// not part of the manifest; every other unknown key is refused.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
        table.remove("build");
        let m: Manifest =
            table.try_into().map_err(|e: toml::de::Error| ManifestError::Toml(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Parse the JSON form (any key order) and validate it.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > caps::MANIFEST_BYTES_MAX {
            return Err(ManifestError::Invalid(format!(
                "manifest of {} bytes is too large",
                bytes.len()
            )));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The canonical JSON bytes.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// The article id: SHA256 of the canonical JSON.
    pub fn id(&self) -> Hash32 {
        Hash32::of(&self.canonical_json())
    }

    pub fn input(&self, name: &str) -> Option<&IoDecl> {
        self.inputs.iter().find(|d| d.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&IoDecl> {
        self.outputs.iter().find(|d| d.name == name)
    }

    /// Every rule a manifest must keep, with a message that says which was broken.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let bad = |s: String| Err(ManifestError::Invalid(s));
        if !valid_name(&self.name) {
            return bad(format!("name {:?} must be 1-64 chars of a-z 0-9 - _", self.name));
        }
        if semver::Version::parse(&self.version).is_err() {
            return bad(format!("version {:?} is not semver (e.g. 1.0.0)", self.version));
        }
        match (&self.runtime, &self.module_sha256) {
            (Runtime::Wasm, None) => {
                return bad(
                    "a wasm article needs module_sha256 (run `bitwrk-host article build`)".into()
                );
            }
            (Runtime::NativeBlender { .. }, Some(_)) => {
                return bad("a native article has no module_sha256".into());
            }
            _ => {}
        }
        if self.description.chars().count() > caps::DESCRIPTION_CHARS_MAX {
            return bad("description is longer than 4096 characters".into());
        }
        for (what, decls) in [("input", &self.inputs), ("output", &self.outputs)] {
            if decls.is_empty() {
                return bad(format!("at least one {what} must be declared"));
            }
            if decls.len() > caps::IO_COUNT_MAX {
                return bad(format!("at most {} {what}s", caps::IO_COUNT_MAX));
            }
            let mut seen = BTreeSet::new();
            for d in decls.iter() {
                if !valid_name(&d.name) {
                    return bad(format!(
                        "{what} name {:?} must be 1-64 chars of a-z 0-9 - _",
                        d.name
                    ));
                }
                if !seen.insert(&d.name) {
                    return bad(format!("{what} {:?} is declared twice", d.name));
                }
                if d.max_bytes == 0 || d.max_bytes > caps::IO_BYTES_MAX {
                    return bad(format!(
                        "{what} {:?}: max_bytes must be 1..={}",
                        d.name,
                        caps::IO_BYTES_MAX
                    ));
                }
                if d.media_type.is_empty()
                    || d.media_type.len() > 128
                    || !d.media_type.contains('/')
                {
                    return bad(format!(
                        "{what} {:?}: media_type {:?} is not a media type",
                        d.name, d.media_type
                    ));
                }
            }
        }
        let l = &self.limits;
        if l.fuel == 0 || l.fuel > caps::FUEL_MAX {
            return bad(format!("limits.fuel must be 1..={}", caps::FUEL_MAX));
        }
        if l.memory_bytes < 65_536 || l.memory_bytes > caps::MEMORY_BYTES_MAX {
            return bad(format!("limits.memory_bytes must be 65536..={}", caps::MEMORY_BYTES_MAX));
        }
        if l.wall_ms == 0 || l.wall_ms > caps::WALL_MS_MAX {
            return bad(format!("limits.wall_ms must be 1..={}", caps::WALL_MS_MAX));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
name = "wordcount"
version = "1.0.0"
runtime = "wasm"
description = "Counts words"
module_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[inputs]]
name = "text"
media_type = "text/plain"
max_bytes = 1048576

[[outputs]]
name = "counts"
media_type = "application/json"
max_bytes = 1048576

[limits]
fuel = 1000000000
memory_bytes = 67108864
wall_ms = 10000

[build]
package = "article-wordcount"
"#;

    #[test]
    fn canonical_json_is_sorted_and_stable() {
        let m = Manifest::from_toml(TOML).unwrap();
        let json = String::from_utf8(m.canonical_json()).unwrap();
        assert_eq!(
            json,
            r#"{"description":"Counts words","inputs":[{"max_bytes":1048576,"media_type":"text/plain","name":"text"}],"limits":{"fuel":1000000000,"memory_bytes":67108864,"wall_ms":10000},"module_sha256":"0000000000000000000000000000000000000000000000000000000000000000","name":"wordcount","outputs":[{"max_bytes":1048576,"media_type":"application/json","name":"counts"}],"runtime":"wasm","version":"1.0.0"}"#
        );
        // JSON in another key order gives the same manifest and id.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(Manifest::from_json(&pretty).unwrap().id(), m.id());
        // The id is pinned: it must be the same on every machine.
        assert_eq!(m.id(), Hash32::of(json.as_bytes()));
    }

    #[test]
    fn refusals() {
        let bad = |from: &str, to: &str| Manifest::from_toml(&TOML.replace(from, to)).unwrap_err();
        assert!(matches!(
            bad("name = \"wordcount\"", "name = \"Word Count\""),
            ManifestError::Invalid(_)
        ));
        assert!(matches!(bad("1.0.0", "one"), ManifestError::Invalid(_)));
        assert!(matches!(bad("fuel = 1000000000", "fuel = 0"), ManifestError::Invalid(_)));
        assert!(matches!(
            bad("runtime = \"wasm\"", "runtime = \"docker\""),
            ManifestError::Toml(_)
        ));
        assert!(matches!(bad("description", "descriptoin"), ManifestError::Toml(_)));
        assert!(matches!(
            bad("name = \"counts\"", "name = \"counts\"\nextra = 1"),
            ManifestError::Toml(_)
        ));
        let two_inputs = TOML.replace("[[outputs]]", "[[inputs]]\nname = \"text\"\nmedia_type = \"text/plain\"\nmax_bytes = 1\n\n[[outputs]]");
        assert!(matches!(Manifest::from_toml(&two_inputs).unwrap_err(), ManifestError::Invalid(_)));
    }

    #[test]
    fn blender_runtime() {
        let t = TOML.replace("runtime = \"wasm\"", "runtime = \"native:blender-3.4\"").replace(
            "module_sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
            "",
        );
        let m = Manifest::from_toml(&t).unwrap();
        assert_eq!(m.runtime, Runtime::NativeBlender { version: "3.4".into() });
        assert!(
            String::from_utf8(m.canonical_json())
                .unwrap()
                .contains("\"runtime\":\"native:blender-3.4\"")
        );
    }
}
