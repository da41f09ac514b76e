#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: set-up, wasm articles, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# The guest SDK, the example articles and the hostile test guests, as wasm components.
cargo build-articles
# Every native crate, the articles' native tests and the end-to-end tests.
cargo test --workspace --all-targets
