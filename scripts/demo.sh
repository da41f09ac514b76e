#!/usr/bin/env bash
# The main job on a fresh machine: build everything and run the one-machine demo
# (embedded exchange, a seller host and a buyer host trade raytraced tiles -> demo.png).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build-articles
cargo run --release -p bitwrk-host -- demo "$@"
