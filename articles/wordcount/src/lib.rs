//! Example article `wordcount`: word frequencies of a UTF-8 text, as JSON.
//!
//! A word is a maximal run of characters for which `char::is_alphanumeric` holds
//! (Unicode Alphabetic or Numeric: letters of every script, digits, `²`, `Ⅻ`, ...),
//! lowercased with Unicode's full lowercase mapping (`str::to_lowercase`). Everything
//! else (spaces, punctuation, apostrophes, hyphens, emoji) separates words, so
//! `"don't"` is the two words `don` and `t`.
//!
//! Output `counts` (application/json), keys in code point order, no whitespace:
//! `{"counts":{"a":2,"b":1},"distinct_words":2,"total_words":3}`.

use std::collections::BTreeMap;

use bitwrk_guest::{Inputs, Outputs, RunError};

/// Largest text accepted (matches `max_bytes` of input `text` in article.toml).
pub const TEXT_BYTES_MAX: usize = 4 << 20;
/// Largest output: the worst case is every word distinct, `"xy":1,` for `xy ` (7 bytes
/// for 3), and lowercasing can grow a word by half; 4x the input bounds it.
pub const COUNTS_BYTES_MAX: usize = 4 * TEXT_BYTES_MAX;

/// Word frequencies of a text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WordCounts {
    /// Each distinct word and how often it occurs.
    pub counts: BTreeMap<String, u64>,
    /// Number of words (with repetitions).
    pub total_words: u64,
}

/// The words of `text` in order, lowercased (see the module doc for the rule).
pub fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// Counts the words of `text`.
pub fn count_words(text: &str) -> WordCounts {
    let mut wc = WordCounts::default();
    for w in words(text) {
        *wc.counts.entry(w).or_insert(0) += 1;
        wc.total_words += 1;
    }
    wc
}

/// The output JSON (canonical: sorted keys, no whitespace). Written directly rather
/// than through `serde_json::Value` so that a large map is not copied.
pub fn to_json(wc: &WordCounts) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(64 + wc.counts.len() * 12);
    out.extend_from_slice(b"{\"counts\":{");
    for (i, (word, n)) in wc.counts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, word).expect("writing a string to a Vec cannot fail");
        write!(out, ":{n}").expect("writing to a Vec cannot fail");
    }
    write!(out, "}},\"distinct_words\":{},\"total_words\":{}}}", wc.counts.len(), wc.total_words)
        .expect("writing to a Vec cannot fail");
    out
}

/// The article: input `text` (UTF-8), output `counts` (JSON).
pub fn run(inputs: Inputs) -> Result<Outputs, RunError> {
    let bytes = inputs.get("text")?;
    if bytes.len() > TEXT_BYTES_MAX {
        return Err(RunError::invalid_input(format!(
            "text of {} bytes is larger than {TEXT_BYTES_MAX}",
            bytes.len()
        )));
    }
    let text = inputs.get_str("text")?;
    let wc = count_words(text);
    bitwrk_guest::log(&format!("counted {} words, {} distinct", wc.total_words, wc.counts.len()));
    let json = to_json(&wc);
    if json.len() > COUNTS_BYTES_MAX {
        return Err(RunError::failed(format!(
            "output of {} bytes is larger than {COUNTS_BYTES_MAX}",
            json.len()
        )));
    }
    Ok(Outputs::new().with("counts", json))
}

bitwrk_guest::article!(run);
