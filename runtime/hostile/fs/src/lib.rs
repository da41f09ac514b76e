//! Hostile test article: reads a host file through the WASI filesystem (so it imports
//! `wasi:filesystem/*`, which the sandbox refuses at load).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct Fs;

impl Guest for Fs {
    fn run(_inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let data = std::fs::read("/etc/passwd").map_err(|e| RunError::Failed(e.to_string()))?;
        Ok(vec![Blob { name: "out".into(), data }])
    }
}

export!(Fs);
