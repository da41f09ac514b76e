//! Hostile test article: panics (a wasm `unreachable` trap after the panic message).

wit_bindgen::generate!({ path: "../../../guest-sdk/wit", world: "article" });

struct Panic;

impl Guest for Panic {
    fn run(inputs: Vec<Blob>) -> Result<Vec<Blob>, RunError> {
        panic!("hostile guest panics on purpose ({} inputs)", inputs.len());
    }
}

export!(Panic);
