#!/usr/bin/env bash
# The article builds are reproducible: `cargo build-articles --check` gives each module the
# module_sha256 committed in its article.toml, here and from a copy of the workspace at
# another path with another CARGO_HOME (the same registry, reached through a symlink).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build-articles --check
copy=$(mktemp -d /tmp/bitwrk-repro.XXXXXX)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"
home="${CARGO_HOME:-$HOME/.cargo}"
mkdir -p "$copy/cargo-home"
ln -s "$(realpath "$home/registry")" "$copy/cargo-home/registry"
[[ -f "$home/config.toml" ]] && cp "$home/config.toml" "$copy/cargo-home/"
(cd "$copy" && CARGO_HOME="$copy/cargo-home" CARGO_TARGET_DIR="$copy/target" \
    cargo build-articles --check)
