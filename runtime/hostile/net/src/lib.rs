//! Hostile test article: opens a TCP connection (so it imports `wasi:sockets/*`, which the
//! sandbox refuses at load).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

use std::io::Read as _;

struct Net;

impl Guest for Net {
    fn run(_inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let mut s = std::net::TcpStream::connect("127.0.0.1:22")
            .map_err(|e| RunError::Failed(e.to_string()))?;
        let mut data = Vec::new();
        s.read_to_end(&mut data).map_err(|e| RunError::Failed(e.to_string()))?;
        Ok(vec![Blob { name: "out".into(), data }])
    }
}

export!(Net);
