//! bitwrk-tests
