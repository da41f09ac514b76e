//! Hostile test article: loops forever (ends by fuel or by wall-clock time), or with input
//! `mode` = `sleep` waits an hour in the host (ends by the outer wall-clock timeout).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct Spin;

impl Guest for Spin {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        if inputs.iter().any(|b| b.name == "mode" && b.data == b"sleep") {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        let mut x = inputs.len() as u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export!(Spin);
