//! Native tests of the wordcount article: real counts, the word rule at its edges, and
//! the error cases the sandbox will see.

use article_wordcount::{COUNTS_BYTES_MAX, TEXT_BYTES_MAX, count_words, run};
use bitwrk_guest::{Inputs, RunError};
use proptest::prelude::*;

/// Runs the article on `text` and returns the output JSON as a string.
fn run_text(text: &[u8]) -> Result<String, RunError> {
    let out = run(Inputs::new().with("text", text))?;
    Ok(String::from_utf8(out.get("counts").expect("output counts").to_vec())
        .expect("JSON is UTF-8"))
}

fn check(text: &str, expected: &str) {
    assert_eq!(run_text(text.as_bytes()).unwrap(), expected, "text {text:?}");
}

#[test]
fn known_counts() {
    check(
        "The cat saw the other cat. THE END",
        r#"{"counts":{"cat":2,"end":1,"other":1,"saw":1,"the":3},"distinct_words":5,"total_words":8}"#,
    );
    check("", r#"{"counts":{},"distinct_words":0,"total_words":0}"#);
    check("  ...  --- !!", r#"{"counts":{},"distinct_words":0,"total_words":0}"#);
}

#[test]
fn word_rule_edges() {
    // Apostrophes and hyphens split; digits are part of words; underscores split.
    check(
        "don't re-run x_1 2024",
        r#"{"counts":{"1":1,"2024":1,"don":1,"re":1,"run":1,"t":1,"x":1},"distinct_words":7,"total_words":7}"#,
    );
    // Other scripts, full Unicode lowercase, emoji separate.
    check(
        "Grüße GRÜSSE straße ΣΊΣΥΦΟΣ🙂Здравствуй",
        r#"{"counts":{"grüsse":1,"grüße":1,"straße":1,"σίσυφος":1,"здравствуй":1},"distinct_words":5,"total_words":5}"#,
    );
    // Keys are in code point order, not locale order.
    check(
        "b a B é Z",
        r#"{"counts":{"a":1,"b":2,"z":1,"é":1},"distinct_words":4,"total_words":5}"#,
    );
}

#[test]
fn counts_a_real_text() {
    let text = "It was the best of times, it was the worst of times, it was the age of wisdom, \
                it was the age of foolishness";
    let wc = count_words(text);
    assert_eq!(wc.total_words, 24);
    assert_eq!(wc.counts["it"], 4);
    assert_eq!(wc.counts["was"], 4);
    assert_eq!(wc.counts["the"], 4);
    assert_eq!(wc.counts["of"], 4);
    assert_eq!(wc.counts["times"], 2);
    assert_eq!(wc.counts["foolishness"], 1);
    assert_eq!(wc.counts.len(), 10);
}

#[test]
fn invalid_utf8_is_invalid_input() {
    let err = run_text(b"caf\xe9 au lait").unwrap_err();
    assert!(matches!(&err, RunError::InvalidInput(m) if m.contains("UTF-8")), "{err:?}");
}

#[test]
fn missing_input() {
    assert_eq!(
        run(Inputs::new().with("txt", "a")).unwrap_err(),
        RunError::MissingInput("text".into())
    );
}

#[test]
fn too_large_text_is_refused_and_the_limit_itself_is_accepted() {
    let at_limit = "ab ".repeat(TEXT_BYTES_MAX / 3);
    let json = run_text(at_limit.as_bytes()).unwrap();
    assert!(
        json.ends_with(&format!(r#""distinct_words":1,"total_words":{}}}"#, TEXT_BYTES_MAX / 3))
    );
    let over = vec![b'a'; TEXT_BYTES_MAX + 1];
    assert!(matches!(run_text(&over), Err(RunError::InvalidInput(m)) if m.contains("larger")));
}

#[test]
fn worst_case_output_fits_the_declared_max() {
    // Every word distinct and as short as possible: two-letter words over a 62-char set
    // cover only 3844 words, so use base-36 numbers of increasing length instead.
    let mut text = String::new();
    let mut n = 0u64;
    while text.len() + 16 < TEXT_BYTES_MAX {
        text.push_str(&to_base36(n));
        text.push(' ');
        n += 1;
    }
    let json = run_text(text.as_bytes()).unwrap();
    assert!(json.len() <= COUNTS_BYTES_MAX, "{} > {}", json.len(), COUNTS_BYTES_MAX);
}

fn to_base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![digits[(n % 36) as usize]];
    n /= 36;
    while n > 0 {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
    }
    String::from_utf8(s).unwrap()
}

#[test]
fn manifest_parses_and_matches_the_constants() {
    let text = include_str!("../article.toml");
    // Before the first `bitwrk-host article build` the hash may be absent; the rest must hold.
    let text = if text.lines().any(|l| l.starts_with("module_sha256")) {
        text.to_string()
    } else {
        text.replacen(
            "runtime = \"wasm\"",
            &format!("runtime = \"wasm\"\nmodule_sha256 = \"{}\"", "0".repeat(64)),
            1,
        )
    };
    let m = bitwrk_protocol::manifest::Manifest::from_toml(&text).unwrap();
    assert_eq!(m.name, "wordcount");
    assert_eq!(m.input("text").unwrap().max_bytes, TEXT_BYTES_MAX as u64);
    assert_eq!(m.output("counts").unwrap().max_bytes, COUNTS_BYTES_MAX as u64);
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(m.outputs.len(), 1);
}

proptest! {
    #[test]
    fn counts_add_up_and_words_are_lowercase_alphanumeric(text in "\\PC{0,200}") {
        let wc = count_words(&text);
        prop_assert_eq!(wc.counts.values().sum::<u64>(), wc.total_words);
        for w in wc.counts.keys() {
            prop_assert!(!w.is_empty());
            prop_assert_eq!(w.to_lowercase(), w.clone());
        }
        // The JSON the article returns says the same.
        let json: serde_json::Value = serde_json::from_str(&run_text(text.as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(json["total_words"].as_u64(), Some(wc.total_words));
        prop_assert_eq!(json["distinct_words"].as_u64(), Some(wc.counts.len() as u64));
    }

    #[test]
    fn separators_do_not_matter(words in proptest::collection::vec("[a-z0-9]{1,8}", 0..30), sep in "[ .,;!?\\n\\t-]{1,3}") {
        let a = count_words(&words.join(" "));
        let b = count_words(&words.join(&sep));
        prop_assert_eq!(a, b);
    }
}
