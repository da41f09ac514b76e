//! The article's declared contract, checked without running anything: inputs against the
//! manifest before a run (`bad_input`), outputs after it (`output_too_large` for size, `trap`
//! for outputs the article never declared), and the per-work random seed.

use std::collections::BTreeSet;

use bitwrk_protocol::{Hash32, Manifest, ReasonCode};

use crate::error::RunError;

/// Inputs must be exactly the declared ones, each once, each within its `max_bytes`.
pub fn check_inputs(manifest: &Manifest, inputs: &[(String, Vec<u8>)]) -> Result<(), RunError> {
    let mut seen = BTreeSet::new();
    for (name, data) in inputs {
        let Some(decl) = manifest.input(name) else {
            return Err(RunError::bad_input(format!(
                "input {name:?} is not declared (declared: {})",
                names(manifest.inputs.iter().map(|d| d.name.as_str()))
            )));
        };
        if !seen.insert(name.as_str()) {
            return Err(RunError::bad_input(format!("input {name:?} is given twice")));
        }
        if data.len() as u64 > decl.max_bytes {
            return Err(RunError::bad_input(format!(
                "input {name:?} has {} bytes, more than its max_bytes {}",
                data.len(),
                decl.max_bytes
            )));
        }
    }
    if let Some(missing) = manifest.inputs.iter().find(|d| !seen.contains(d.name.as_str())) {
        return Err(RunError::bad_input(format!("input {:?} is missing", missing.name)));
    }
    Ok(())
}

/// Outputs must be exactly the declared ones, each once, each within its `max_bytes`.
pub fn check_outputs(manifest: &Manifest, outputs: &[(String, Vec<u8>)]) -> Result<(), RunError> {
    let broke = |msg: String| {
        Err(RunError::new(ReasonCode::Trap, format!("the article broke its contract: {msg}")))
    };
    let mut seen = BTreeSet::new();
    for (name, data) in outputs {
        let Some(decl) = manifest.output(name) else {
            return broke(format!(
                "it returned output {:?}, which is not declared (declared: {})",
                truncate(name, 64),
                names(manifest.outputs.iter().map(|d| d.name.as_str()))
            ));
        };
        if !seen.insert(name.as_str()) {
            return broke(format!("it returned output {name:?} twice"));
        }
        if data.len() as u64 > decl.max_bytes {
            return Err(RunError::new(
                ReasonCode::OutputTooLarge,
                format!(
                    "output {name:?} has {} bytes, more than its max_bytes {}",
                    data.len(),
                    decl.max_bytes
                ),
            ));
        }
    }
    if let Some(missing) = manifest.outputs.iter().find(|d| !seen.contains(d.name.as_str())) {
        return broke(format!("it did not return output {:?}", missing.name));
    }
    Ok(())
}

/// The seed of the guest's random source: a hash over the inputs in name order, so the
/// same work gives the same random numbers (and results) on every seller, and different
/// work gets different numbers.
pub fn random_seed(inputs: &[(String, Vec<u8>)]) -> [u8; 32] {
    let mut sorted: Vec<&(String, Vec<u8>)> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = b"bitwrk-runtime random seed v1".to_vec();
    for (name, data) in sorted {
        // Length-prefixed so that no two different input sets give the same bytes.
        text.extend_from_slice(&(name.len() as u64).to_le_bytes());
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(&(data.len() as u64).to_le_bytes());
        text.extend_from_slice(Hash32::of(data).as_bytes());
    }
    Hash32::of(&text).0
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
name = "t"
version = "1.0.0"
runtime = "wasm"
module_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[[inputs]]
name = "a"
media_type = "text/plain"
max_bytes = 4
[[inputs]]
name = "b"
media_type = "text/plain"
max_bytes = 1
[[outputs]]
name = "out"
media_type = "text/plain"
max_bytes = 3
[limits]
fuel = 1000
memory_bytes = 65536
wall_ms = 1000
"#;

    fn io(items: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        items.iter().map(|(n, d)| (n.to_string(), d.as_bytes().to_vec())).collect()
    }

    /// `expected`: None = accepted, else (reason, a word the message must hold).
    fn check(outputs: bool, items: &[(&str, &str)], expected: Option<(ReasonCode, &str)>) {
        let m = Manifest::from_toml(TOML).unwrap();
        let got =
            if outputs { check_outputs(&m, &io(items)) } else { check_inputs(&m, &io(items)) };
        match expected {
            None => assert_eq!(got, Ok(()), "{items:?}"),
            Some((reason, word)) => {
                let e = got.expect_err("must be refused");
                assert_eq!(e.reason, reason, "{items:?}: {e}");
                assert!(e.message.contains(word), "{items:?}: {e}");
            }
        }
    }

    #[test]
    fn inputs() {
        use ReasonCode::BadInput;
        check(false, &[("a", "1234"), ("b", "x")], None);
        check(false, &[("b", ""), ("a", "")], None);
        check(false, &[("a", "12345"), ("b", "x")], Some((BadInput, "max_bytes")));
        check(false, &[("a", "1")], Some((BadInput, "\"b\" is missing")));
        check(false, &[("a", "1"), ("b", "x"), ("c", "")], Some((BadInput, "not declared")));
        check(false, &[("a", "1"), ("a", "1"), ("b", "x")], Some((BadInput, "twice")));
        check(false, &[], Some((BadInput, "missing")));
    }

    #[test]
    fn outputs() {
        use ReasonCode::{OutputTooLarge, Trap};
        check(true, &[("out", "abc")], None);
        check(true, &[("out", "abcd")], Some((OutputTooLarge, "max_bytes")));
        check(true, &[], Some((Trap, "did not return output \"out\"")));
        check(true, &[("out", "a"), ("secret", "")], Some((Trap, "not declared")));
        check(true, &[("out", "a"), ("out", "b")], Some((Trap, "twice")));
    }

    #[test]
    fn seed_depends_on_inputs_not_order() {
        let s = |items: &[(&str, &str)]| random_seed(&io(items));
        assert_eq!(s(&[("a", "1"), ("b", "2")]), s(&[("b", "2"), ("a", "1")]));
        assert_ne!(s(&[("a", "1"), ("b", "2")]), s(&[("a", "1"), ("b", "3")]));
        assert_ne!(s(&[("a", "12")]), s(&[("a1", "2")]));
        assert_ne!(s(&[("a", "")]), s(&[]));
    }
}
