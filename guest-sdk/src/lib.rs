//! bitwrk-guest
