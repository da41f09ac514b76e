//! bitwrk-runtime: the wasmtime sandbox that runs `wasm` articles for sellers and for
//! local runs, and the allowed-imports check that the exchange's registry shares.
//!
//! Feature `sandbox` (default) brings in wasmtime; without it only [`imports`] (and the
//! wasmtime-free [`contract`] checks and [`error`] types) build, which is all the exchange
//! needs. See docs/PROTOCOL.md for the guest ABI as implemented.
//!
//! **Architecture invariant:** nothing a guest does ends or blocks the host: every limit
//! hit, trap or contract breach is a [`RunError`] with a PROTOCOL §4 reason code.

pub mod contract;
pub mod error;
pub mod imports;
pub mod limits;
#[cfg(feature = "sandbox")]
mod log;
#[cfg(feature = "sandbox")]
mod sandbox;

pub use error::{RunError, RuntimeError};
#[cfg(feature = "sandbox")]
pub use sandbox::{
    CpuFeatures, LoadedArticle, RunOutput, Sandbox, SandboxConfig, cpu_features_report,
};
