//! bitwrk's wire format: identity and signatures, signed messages, money, manifests,
//! transaction phases, the exchange's JSON bodies and the transfer's work manifest.
//!
//! **Architecture invariant:** this crate does no IO (no files, no sockets, no clock
//! reads, no tokio). Callers pass time in. Only this crate defines wire formats.

pub mod api;
pub mod crypto;
pub mod fast_verify;
pub mod hash;
pub mod id;
pub mod identity;
pub mod manifest;
pub mod message;
pub mod money;
pub mod transfer;
pub mod tx;
pub mod work;

pub use hash::Hash32;
pub use id::Id;
pub use identity::{Address, PrivateKey};
pub use manifest::Manifest;
pub use message::{Envelope, Message, Operation};
pub use money::Sat;
pub use tx::{Phase, ReasonCode, Settlement, Side, TxAction};
