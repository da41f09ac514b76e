//! bitwrk-runtime: the wasmtime sandbox that runs `wasm` articles for sellers and for
//! local runs, and the allowed-imports check that the exchange's registry shares.
//!
//! Feature `sandbox` (default) brings in wasmtime; without it only [`imports`] builds
//! (wasmparser only), which is all the exchange needs.

pub mod imports;
