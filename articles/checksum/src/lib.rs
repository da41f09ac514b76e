//! Example article `checksum`: the size, line count and SHA256 of a file, as JSON. It
//! takes large inputs (64 MiB) and answers in a few bytes, so it is also what the host
//! bench re-sends to measure the transfer of an edited 50 MB input.
//!
//! Output `sum` (application/json), keys sorted, no whitespace:
//! `{"bytes":12,"lines":2,"sha256":"<64 lowercase hex>"}`. A line is ended by `\n`; a
//! last line without one counts too, so an empty file has 0 lines and `"a"` has 1.

use bitwrk_guest::{Inputs, Outputs, RunError};
use sha2::{Digest as _, Sha256};

/// Largest input (matches `max_bytes` of input `data` in article.toml).
pub const DATA_BYTES_MAX: usize = 64 << 20;
/// Largest output: the JSON with two u64 and 64 hex digits is under 140 bytes.
pub const SUM_BYTES_MAX: usize = 256;

/// Size, lines and SHA256 of `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub bytes: u64,
    pub lines: u64,
    pub sha256: [u8; 32],
}

pub fn sum(data: &[u8]) -> Sum {
    let newlines = data.iter().filter(|b| **b == b'\n').count() as u64;
    let open_last = !data.is_empty() && !data.ends_with(b"\n");
    Sum {
        bytes: data.len() as u64,
        lines: newlines + u64::from(open_last),
        sha256: Sha256::digest(data).into(),
    }
}

/// The output JSON.
pub fn to_json(s: &Sum) -> Vec<u8> {
    let hex: String = s.sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("{{\"bytes\":{},\"lines\":{},\"sha256\":\"{hex}\"}}", s.bytes, s.lines).into_bytes()
}

/// The article: input `data`, output `sum`.
pub fn run(inputs: Inputs) -> Result<Outputs, RunError> {
    let data = inputs.get("data")?;
    if data.len() > DATA_BYTES_MAX {
        return Err(RunError::invalid_input(format!(
            "data of {} bytes is larger than {DATA_BYTES_MAX}",
            data.len()
        )));
    }
    let json = to_json(&sum(data));
    debug_assert!(json.len() <= SUM_BYTES_MAX);
    Ok(Outputs::new().with("sum", json))
}

bitwrk_guest::article!(run);
