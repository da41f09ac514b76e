//! The checksum article natively: known answers and properties.

use article_checksum::{SUM_BYTES_MAX, sum, to_json};
use proptest::prelude::*;

#[test]
fn known_answers() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"",
            r#"{"bytes":0,"lines":0,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}"#,
        ),
        (
            b"abc",
            r#"{"bytes":3,"lines":1,"sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}"#,
        ),
        (
            b"a\nb\n",
            r#"{"bytes":4,"lines":2,"sha256":"911169ddaaf146aff539f58c26c489af3b892dff0fe283c1c264c65ae5aa59a2"}"#,
        ),
    ];
    for (data, want) in cases {
        let got = String::from_utf8(to_json(&sum(data))).unwrap();
        assert_eq!(&got, want);
    }
}

proptest! {
    #[test]
    fn lines_and_size(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let s = sum(&data);
        prop_assert_eq!(s.bytes, data.len() as u64);
        // Pieces between newlines, without the empty piece after a final newline.
        let lines = if data.is_empty() {
            0
        } else {
            data.split(|b| *b == b'\n').count() as u64 - u64::from(data.ends_with(b"\n"))
        };
        prop_assert_eq!(s.lines, lines);
        prop_assert!(to_json(&s).len() <= SUM_BYTES_MAX);
    }
}
