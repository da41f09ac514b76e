//! End-to-end tests: one binary, one module per area. Real processes on loopback (the
//! exchange and host binaries), the real example articles (`cargo build-articles`).

mod cli;
mod harness;
mod market;
mod page;
mod peers;
mod permission;
mod ui;
