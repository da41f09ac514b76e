//! The Blender article's manifest (articles/blender-cycles/article.toml, built into the
//! bridge) for a given Blender version, and parsing `blender --version`.

use bitwrk_protocol::Manifest;
use bitwrk_protocol::manifest::Runtime;

/// The article source; its runtime version is a placeholder replaced per Blender version.
pub const ARTICLE_TOML: &str = include_str!("../../articles/blender-cycles/article.toml");
/// Input names, as the manifest declares them.
pub const INPUT_SCENE: &str = "scene";
pub const INPUT_JOB: &str = "job";
/// The one output.
pub const OUTPUT_TILE: &str = "tile";

/// The manifest for Blender `major.minor` (e.g. "3.4").
pub fn manifest_for(version: &str) -> Result<Manifest, bitwrk_protocol::manifest::ManifestError> {
    let mut m = Manifest::from_toml(ARTICLE_TOML)?;
    m.runtime = format!("native:blender-{version}").parse()?;
    m.validate()?;
    Ok(m)
}

/// `major.minor` from the first line of `blender --version` ("Blender 3.4.1").
pub fn parse_version(output: &str) -> Option<String> {
    let line = output.lines().find(|l| l.starts_with("Blender "))?;
    let mut parts = line["Blender ".len()..].trim().split(['.', ' ']);
    let major = parts.next()?;
    let minor = parts.next()?;
    let ok = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|c| c.is_ascii_digit());
    (ok(major) && ok(minor)).then(|| format!("{major}.{minor}"))
}

/// The version a manifest's runtime names, if it is a Blender article.
pub fn runtime_version(m: &Manifest) -> Option<&str> {
    match &m.runtime {
        Runtime::NativeBlender { version } => Some(version),
        Runtime::Wasm => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let check = |out: &str, want: Option<&str>| {
            assert_eq!(parse_version(out).as_deref(), want, "{out}")
        };
        check("Blender 3.4.1\n\tbuild date: unknown\n", Some("3.4"));
        check("Color management: ...\nBlender 4.5.3 LTS\n", Some("4.5"));
        check("Blender 10.12\n", Some("10.12"));
        check("Blender x.4\n", None);
        check("blender 3.4.1\n", None);
        check("", None);
    }

    #[test]
    fn manifest_per_version() {
        let a = manifest_for("3.4").unwrap();
        let b = manifest_for("4.5").unwrap();
        assert_eq!(a.name, "blender-cycles");
        assert_eq!(runtime_version(&a), Some("3.4"));
        assert!(
            String::from_utf8(a.canonical_json())
                .unwrap()
                .contains(r#""runtime":"native:blender-3.4""#)
        );
        assert_ne!(a.id(), b.id(), "each Blender version is its own article");
        assert!(
            a.input(INPUT_SCENE).is_some()
                && a.input(INPUT_JOB).is_some()
                && a.output(OUTPUT_TILE).is_some()
        );
        assert_eq!(a.input(INPUT_JOB).unwrap().max_bytes, crate::limits::JOB_BYTES_MAX as u64);
        assert!(manifest_for("3").is_err());
    }
}
