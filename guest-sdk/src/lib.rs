//! The guest SDK for bitwrk `wasm` articles: an article is a plain function from named
//! [`Inputs`] to named [`Outputs`], exported with [`article!`]; this crate hides the
//! WIT world of PROTOCOL §9 (`wit/article.wit`) and wit-bindgen behind it.
//!
//! **Architecture Invariant:** this crate depends on no host crate and uses no std
//! feature the sandbox refuses (no filesystem, no sockets, no environment), so that a
//! component built with it imports only `log` and the WASI interfaces Rust std needs.
//!
//! ```
//! use bitwrk_guest::{Inputs, Outputs, RunError};
//!
//! fn run(inputs: Inputs) -> Result<Outputs, RunError> {
//!     let text = inputs.get_str("text")?;
//!     Ok(Outputs::new().with("shout", text.to_uppercase()))
//! }
//! bitwrk_guest::article!(run);
//!
//! // Natively the article is an ordinary function: test it as one.
//! let out = run(Inputs::new().with("text", "hi")).unwrap();
//! assert_eq!(out.get("shout"), Some(&b"HI"[..]));
//! ```

mod io;

pub use io::{Inputs, Outputs, RunError};

// Lets the generated bindings name this crate by its path from inside the crate too.
extern crate self as bitwrk_guest;

/// The wit-bindgen output for the `article` world. Not part of the API: use [`article!`].
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/article.wit",
        world: "article",
        pub_export_macro: true,
        export_macro_name: "__bitwrk_export_world",
        default_bindings_module: "bitwrk_guest::bindings",
        runtime_path: "bitwrk_guest::__wit_bindgen::rt",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Writes a line to the host's log for this run (the seller's log, tagged with the run).
///
/// Natively (tests, benchmarks) the line goes to stderr.
pub fn log(msg: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::log(msg);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[article] {msg}");
}

/// Exports `fn(Inputs) -> Result<Outputs, RunError>` as the article's `run`.
///
/// Active only when building for wasm32 (`cargo build --target wasm32-wasip2`); natively
/// it expands to nothing, so the same crate builds and tests as a normal library.
#[macro_export]
macro_rules! article {
    ($run:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct BitwrkArticle;
            impl $crate::bindings::Guest for BitwrkArticle {
                fn run(
                    inputs: ::std::vec::Vec<$crate::bindings::Blob>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<$crate::bindings::Blob>,
                    $crate::bindings::RunError,
                > {
                    $crate::__export::call($run, inputs)
                }
            }
            $crate::bindings::__bitwrk_export_world!(BitwrkArticle);
        };
    };
}

/// Glue between the WIT types and the SDK types, used by [`article!`]'s expansion.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __export {
    use crate::bindings::{Blob, RunError as WitRunError};
    use crate::{Inputs, Outputs, RunError};

    /// Converts the WIT arguments, runs the article, converts the result back.
    pub fn call(
        run: impl FnOnce(Inputs) -> Result<Outputs, RunError>,
        inputs: Vec<Blob>,
    ) -> Result<Vec<Blob>, WitRunError> {
        install_panic_log();
        let inputs = Inputs::from_pairs(inputs.into_iter().map(|b| (b.name, b.data)));
        match run(inputs) {
            Ok(outputs) => {
                Ok(outputs.into_pairs().map(|(name, data)| Blob { name, data }).collect())
            }
            Err(RunError::MissingInput(s)) => Err(WitRunError::MissingInput(s)),
            Err(RunError::InvalidInput(s)) => Err(WitRunError::InvalidInput(s)),
            Err(RunError::Failed(s)) => Err(WitRunError::Failed(s)),
        }
    }

    /// A panic traps the instance (wasm has no unwinding); log its message first so the
    /// seller's log says why the run trapped.
    fn install_panic_log() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| crate::log(&format!("panic: {info}"))));
        });
    }
}
