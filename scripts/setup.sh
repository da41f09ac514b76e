#!/usr/bin/env bash
# Everything a fresh machine needs before building or testing bitwrk-rs. Idempotent.
#   scripts/setup.sh          Rust wasm target only (enough for the demo)
#   scripts/setup.sh --test   also Blender, Chromium and the Python verifier the tests use
set -euo pipefail

rustup target add wasm32-wasip2 >/dev/null

if [[ "${1:-}" == "--test" ]]; then
    missing=()
    command -v blender >/dev/null || missing+=(blender)
    command -v chromium >/dev/null || missing+=(chromium)
    if ((${#missing[@]})); then
        SUDO=""
        [[ $(id -u) -ne 0 ]] && SUDO=sudo
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # libsecp256k1 (Bitcoin Core's curve library) for the independent signature check.
    python3 -c "import coincurve" 2>/dev/null || python3 -m pip install -q coincurve
fi
