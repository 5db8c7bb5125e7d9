#!/usr/bin/env bash
# Catalog cost benchmark: what embedding every KKP patch release (19 releases, v2.31 full + the v2.30 and
# v2.29 lines as deltas) costs a user, against a baseline revision that embedded one release line.
#   - startup: `kubectl-kkp-mirror --dry-run -o json` with no files (the embedded sample configuration),
#     median wall time of ROUNDS runs, the two binaries alternated so machine load hits both alike; and
#     the same for the release that needs the most deltas applied (`--kkp-version v2.29.0`);
#   - size: the stripped size of each release binary (which grows with every feature since the
#     baseline), and the bytes the older releases' catalog files add, found verbatim in the binary.
# Both are release builds (`cargo build --release`), the baseline in a temporary worktree with its own
# target dir.
#
# usage: benches/bench-catalog.sh [BASELINE_REV]      (default 7e0775a: the last single-line catalog)
#   ROUNDS=N (21). NEW_BIN=path / BASE_BIN=path skip the builds.
# Targets (issue 15): ≤ 20 ms more per dry run, ≤ 1 MiB more binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_REV=${1:-7e0775a} ROUNDS=${ROUNDS:-21}
WORK=$(mktemp -d /tmp/kkp-bench-cat.XXXXXX)
cleanup() {
  git worktree remove --force "$WORK/base" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${NEW_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin kubectl-kkp-mirror
  NEW_BIN=target/release/kubectl-kkp-mirror
fi
if [ -z "${BASE_BIN:-}" ]; then
  git worktree add --detach "$WORK/base" "$BASE_REV" >/dev/null 2>&1
  # The baseline's own target dir (kept between runs, so a second run does not rebuild it).
  BASE_TARGET=${BASE_TARGET:-target/bench-catalog-base}
  (cd "$WORK/base" && CARGO_TARGET_DIR="$OLDPWD/$BASE_TARGET" cargo build --release --locked --quiet --bin kubectl-kkp-mirror)
  BASE_BIN=$BASE_TARGET/release/kubectl-kkp-mirror
fi

strip_size() { cp "$1" "$WORK/s" && strip "$WORK/s" && stat -c %s "$WORK/s"; }
NEW_SIZE=$(strip_size "$NEW_BIN") BASE_SIZE=$(strip_size "$BASE_BIN")
# The whole-binary growth includes every feature added since the baseline. What the older releases
# themselves add is their catalog data, embedded verbatim (include_str!): find each file in the binary.
CAT_BYTES=$(python3 - "$NEW_BIN" shared/catalog/v2.29.yaml shared/catalog/v2.30.yaml <<'PY'
import sys
binary = open(sys.argv[1], "rb").read()
total = 0
for f in sys.argv[2:]:
    data = open(f, "rb").read()
    if binary.find(data) < 0:
        sys.exit(f"bench-catalog: {f} is not embedded verbatim in {sys.argv[1]}")
    total += len(data)
print(total)
PY
)

# One timed run: wall milliseconds on stdout. The plan must be non-empty, or the run is not what we time.
one() {
  local s e
  s=$(date +%s%N)
  "$@" >"$WORK/out" 2>"$WORK/err" || { echo "bench-catalog: $* failed:" >&2; cat "$WORK/err" >&2; exit 1; }
  e=$(date +%s%N)
  grep -q '"images"' "$WORK/out" || { echo "bench-catalog: $* printed no plan" >&2; exit 1; }
  echo $(((e - s) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'; }
# Warm the page cache and helm's first start for both.
one "$NEW_BIN" --dry-run -o json >/dev/null
one "$BASE_BIN" --dry-run -o json >/dev/null
: >"$WORK/new" && : >"$WORK/base_t" && : >"$WORK/old"
for _ in $(seq "$ROUNDS"); do
  one "$BASE_BIN" --dry-run -o json >>"$WORK/base_t"
  one "$NEW_BIN" --dry-run -o json >>"$WORK/new"
  one "$NEW_BIN" --dry-run -o json --kkp-version v2.29.0 >>"$WORK/old"
done
B=$(median <"$WORK/base_t") N=$(median <"$WORK/new") O=$(median <"$WORK/old")
awk -v b="$B" -v n="$N" -v o="$O" -v bs="$BASE_SIZE" -v ns="$NEW_SIZE" -v r="$ROUNDS" -v rev="$BASE_REV" -v cb="$CAT_BYTES" 'BEGIN {
  printf "bench-catalog: baseline %s (one release line) vs HEAD (19 releases), release builds, median of %d runs\n", rev, r
  printf "  dry run, no files:           baseline %7.1f ms   HEAD %7.1f ms   +%.1f ms (ratio %.2f)\n", b, n, n - b, n / b
  printf "  dry run, --kkp-version v2.29.0 (most deltas):          HEAD %7.1f ms   +%.1f ms vs baseline\n", o, o - b
  printf "  stripped binary:             baseline %7.2f MiB  HEAD %7.2f MiB  +%.3f MiB (every feature since the baseline)\n", bs / 1048576, ns / 1048576, (ns - bs) / 1048576
  printf "  the 18 older releases catalog data in the binary (v2.29.yaml + v2.30.yaml, verbatim): %.1f KiB\n", cb / 1024
  ok = (n - b <= 20 && o - b <= 20 && cb <= 1048576)
  printf "  targets (<= 20 ms, <= 1 MiB): %s\n", ok ? "met" : "MISSED"
}'
