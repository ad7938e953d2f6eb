#!/usr/bin/env bash
# Development build of ONE family's fast path, isolated from the others' work in progress:
#   parsers/native/dev-build.sh cloudtrail|keyvault|vault
# builds a crate in /tmp/kt-native-FAMILY with that family's src file from the repo and the
# other families stubbed, and prints the directory to use as KEYTRAIL_NATIVE_DIR.
set -euo pipefail
fam="$1"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="/tmp/kt-native-$fam"
mkdir -p "$work/crate/src"
cp "$repo/parsers/native/Cargo.toml" "$work/crate/"
[ -f "$repo/parsers/native/Cargo.lock" ] && cp "$repo/parsers/native/Cargo.lock" "$work/crate/"
cp "$repo/parsers/native/src/lib.rs" "$repo/parsers/native/src/common.rs" "$work/crate/src/"
for other in cloudtrail keyvault vault; do
  if [ "$other" = "$fam" ]; then
    cp "$repo/parsers/native/src/$other.rs" "$work/crate/src/"
  else
    printf 'use pyo3::prelude::*;\npub fn register(_m: &Bound<'"'"'_, PyModule>) -> PyResult<()> { Ok(()) }\n' \
      > "$work/crate/src/$other.rs"
  fi
done
export PYO3_PYTHON="${PYTHON:-$repo/.venv/bin/python}"
export CARGO_TARGET_DIR="$work/target"
cargo build --release --manifest-path "$work/crate/Cargo.toml" 1>&2
suffix="$("$PYO3_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
install -m 0755 "$CARGO_TARGET_DIR/release/libkeytrail_native.so" "$work/_native$suffix"
echo "$work"
