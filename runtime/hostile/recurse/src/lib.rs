//! Hostile test article: recursion without end (the wasm stack overflows).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

/// Not a tail call and not an associative accumulator, so the compiler keeps the frames.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    deep(std::hint::black_box(n + 1)).rotate_left((n & 31) as u32) ^ n
}

struct Recurse;

impl Guest for Recurse {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let r = deep(inputs.len() as u64 + 1);
        Ok(vec![Blob { name: "out".into(), data: r.to_le_bytes().to_vec() }])
    }
}

export!(Recurse);
