//! Result encryption moved to `bitwrk_protocol::crypto` (a wire format shared with the
//! exchange, which opens disputed results); the host's callers use it from here.

pub use bitwrk_protocol::crypto::{DecryptError, new_key, open, seal};
