//! Hostile test article: input `mode` picks a misbehaviour with the outputs: `huge`
//! (64 MiB for `out`), `undeclared` (an output `secret` nobody declared), `twice` (`out`
//! two times), `none` (no output at all), `error` (the guest refuses its input), `fail`
//! (the guest reports its own failure), `ok` (one small `out`).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct Output;

impl Guest for Output {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let mode = inputs
            .iter()
            .find(|b| b.name == "mode")
            .map(|b| String::from_utf8_lossy(&b.data).into_owned())
            .ok_or_else(|| RunError::MissingInput("mode".into()))?;
        let out = |data: Vec<u8>| Blob { name: "out".into(), data };
        match mode.as_str() {
            "huge" => Ok(vec![out(vec![7u8; 64 << 20])]),
            "undeclared" => {
                Ok(vec![out(b"fine".to_vec()), Blob { name: "secret".into(), data: b"x".to_vec() }])
            }
            "twice" => Ok(vec![out(b"1".to_vec()), out(b"2".to_vec())]),
            "none" => Ok(vec![]),
            "error" => Err(RunError::InvalidInput("mode error asked for".into())),
            "fail" => Err(RunError::Failed("mode fail asked for".into())),
            "ok" => Ok(vec![out(b"fine".to_vec())]),
            other => Err(RunError::InvalidInput(format!("unknown mode {other:?}"))),
        }
    }
}

export!(Output);
