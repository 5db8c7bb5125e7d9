#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30), starting from and adding to its corpus
# in fuzz/corpus/<target>/. Fails on the first crash; libFuzzer leaves the crashing input in
# fuzz/artifacts/<target>/ (add it to the corpus once the bug is fixed).
# The toolchain here is stable: cargo-fuzz's libFuzzer and AddressSanitizer builds use nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module), which RUSTC_BOOTSTRAP=1 unlocks on stable.
# usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
targets=(image_ref yaml_edit archive_read)
cargo fuzz build
for t in "${targets[@]}"; do
  echo "fuzz.sh: $t for ${seconds}s" >&2
  mkdir -p "fuzz/corpus/$t"
  cargo fuzz run "$t" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
