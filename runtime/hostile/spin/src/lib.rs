//! Hostile test article: loops forever (ends by fuel or by wall-clock time).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct Spin;

impl Guest for Spin {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        let mut x = inputs.len() as u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(Spin);
