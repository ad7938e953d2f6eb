#!/usr/bin/env bash
# Build the compiled parser fast paths (parsers/native, Rust + PyO3) into
# parsers/_native<EXT_SUFFIX>. Needs cargo; crates come from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(command -v "${PYTHON:-python3}" || echo "${PYTHON:-python3}")"
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac
if ! command -v cargo >/dev/null; then
    echo "build-native: cargo not found; keytrail will use the pure-Python parsers" >&2
    exit 1
fi
export PYO3_PYTHON="$PY"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/.cache/cargo-target}"
cargo build --quiet --release --locked --manifest-path parsers/native/Cargo.toml \
  || cargo build --quiet --release --manifest-path parsers/native/Cargo.toml
suffix="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
install -m 0755 "$CARGO_TARGET_DIR/release/libkeytrail_native.so" "parsers/_native$suffix"
echo "build-native: parsers/_native$suffix"
