#!/usr/bin/env bash
# Chart discovery time against plain `helm template` over the same charts.
#
#   benches/bench-discovery.sh [CHARTS_DIR]
#
# Compares `kubectl-kkp-mirror --dry-run --offline --charts-path CHARTS_DIR` with running
# `helm template` on every chart (a) one after the other and (b) `xargs -P $(nproc)` in parallel,
# and prints ours / parallel-helm (goal: <= 1.1). Not a test: timings depend on the machine.
#
# Environment:
#   HELM_BINARY    helm to use for both sides (default: helm)
#   HELM_VALUES    values file passed to both sides (optional)
#   BENCH_COPIES   render the charts this many times over (copies of CHARTS_DIR), default 4, so that
#                  there is enough work for parallelism to matter with the small fixture charts
#   BENCH_RUNS     runs per command without hyperfine (default 10)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
charts_src=$(cd "${1:-$repo/tests/fixtures/charts}" && pwd)
helm=${HELM_BINARY:-helm}
copies=${BENCH_COPIES:-4}
runs=${BENCH_RUNS:-10}
jobs=$(nproc)

command -v "$helm" >/dev/null || { echo "bench: helm binary '$helm' not found" >&2; exit 1; }

echo "building release binary…" >&2
cargo build --release --quiet --manifest-path "$repo/Cargo.toml" --bin kubectl-kkp-mirror
ours_bin="$repo/target/release/kubectl-kkp-mirror"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
charts="$work/charts"
mkdir -p "$charts"
for i in $(seq 1 "$copies"); do
  cp -r "$charts_src" "$charts/copy$i"
done

# Chart directories as discovery sees them: a directory with Chart.yaml, not descending into it.
find "$charts" -name Chart.yaml -printf '%h\n' | sort |
  awk 'NR == 1 || index($0, last "/") != 1 { print; last = $0 }' >"$work/list"
n=$(wc -l <"$work/list")
echo "charts: $n ($copies × $charts_src), helm: $("$helm" version --template '{{.Version}}'), jobs: $jobs" >&2

values_q=""
helm_values_q=""
if [[ -n "${HELM_VALUES:-}" ]]; then
  values_q="--values $(printf '%q' "$(realpath "$HELM_VALUES")")"
  helm_values_q="--helm-values $(printf '%q' "$(realpath "$HELM_VALUES")")"
fi

# The three commands, as scripts so hyperfine and the fallback loop run the same thing.
cat >"$work/ours.sh" <<SH
"$ours_bin" --dry-run --offline -o text --charts-path "$charts" --helm-binary "$helm" $helm_values_q >/dev/null || true
SH
cat >"$work/one.sh" <<SH
"$helm" template "\$(basename "\$1")" "\$1" --namespace mock-namespace --skip-tests $values_q >/dev/null 2>&1 || true
SH
cat >"$work/seq.sh" <<SH
while read -r c; do sh "$work/one.sh" "\$c"; done <"$work/list"
SH
cat >"$work/par.sh" <<SH
xargs -P "$jobs" -n 1 -d '\\n' sh "$work/one.sh" <"$work/list"
SH

if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs "$runs" --export-json "$work/h.json" \
    -n ours "sh $work/ours.sh" -n helm-sequential "sh $work/seq.sh" -n helm-parallel "sh $work/par.sh" >&2
  read -r ours seq par < <(python3 -c '
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print(r["ours"], r["helm-sequential"], r["helm-parallel"])' "$work/h.json")
else
  # The three commands interleaved, so background load hits them alike; median of $runs each.
  for script in ours seq par; do sh "$work/$script.sh" >/dev/null 2>&1; done # warm-up
  for _ in $(seq 1 "$runs"); do
    for script in ours seq par; do
      s=$(date +%s%N); sh "$work/$script.sh" >/dev/null 2>&1; e=$(date +%s%N)
      echo $(((e - s) / 1000)) >>"$work/$script.times"
    done
  done
  median_ms() {
    sort -n "$work/$1.times" |
      awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f\n", m / 1000 }'
  }
  ours=$(median_ms ours)
  seq=$(median_ms seq)
  par=$(median_ms par)
fi

awk -v o="$ours" -v s="$seq" -v p="$par" -v n="$n" 'BEGIN {
  printf "ours (kubectl-kkp-mirror --dry-run):  %8.1f ms\n", o
  printf "helm template, sequential (%d charts): %8.1f ms\n", n, s
  printf "helm template, parallel:              %8.1f ms\n", p
  printf "ratio ours / parallel helm:           %8.2f  (goal <= 1.10)\n", o / p
  printf "ratio ours / sequential helm:         %8.2f\n", o / s
}'
