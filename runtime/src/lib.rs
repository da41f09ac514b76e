//! bitwrk-runtime
