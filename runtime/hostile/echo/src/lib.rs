//! A well-behaved test article: echoes input `text` to output `echo`, logs through the
//! host, prints to stdout and stderr, and writes what it sees of the clocks and the random
//! source to output `probe` (so tests can check they are frozen and seeded).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

use std::hash::BuildHasher as _;

struct Echo;

impl Guest for Echo {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let text = inputs
            .into_iter()
            .find(|b| b.name == "text")
            .ok_or_else(|| RunError::MissingInput("text".into()))?;
        log(&format!("echo: {} bytes", text.data.len()));
        println!("to stdout");
        eprintln!("to stderr");
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let t0 = std::time::Instant::now();
        let mut spin = 0u64;
        for i in 0..100_000u64 {
            spin = spin.wrapping_mul(31).wrapping_add(i);
        }
        let elapsed = t0.elapsed().as_nanos();
        // RandomState is seeded from the host's random source.
        let random = std::collections::hash_map::RandomState::new().hash_one(spin);
        let probe = format!("wall={wall} elapsed={elapsed} random={random}");
        Ok(vec![
            Blob { name: "echo".into(), data: text.data },
            Blob { name: "probe".into(), data: probe.into_bytes() },
        ])
    }
}

export!(Echo);
