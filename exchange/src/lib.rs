//! bitwrk-exchange
