//! Hostile test article: allocates and touches memory in 1 MiB steps until refused.

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct MemBomb;

impl Guest for MemBomb {
    fn run(_inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; 1 << 20];
            block[0] = hoard.len() as u8;
            hoard.push(std::hint::black_box(block));
        }
    }
}

export!(MemBomb);
