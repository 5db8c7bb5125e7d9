#!/usr/bin/env bash
# Audit benchmark (issue 20): a loopback API server holding 5,000 Pods in 200 namespaces with 100
# distinct images (tests/cli_audit.rs::bench_audit_apiserver, an ignored test of the integration binary:
# the server lives in the test tree only). Times `kubectl-kkp-audit` (all six workload kinds listed in
# pages of 500, every image classified; --no-mirror-check: the mirror is not part of this measure)
# against its peer, `kubectl get pods -A -o json | jq` extracting the distinct images, ROUNDS times
# alternated; prints wall time, peak RSS and the ratio per round.
#
# usage: benches/bench-audit.sh        ROUNDS=N (5). AUDIT_BIN=path skips the release build.
# Targets: audit ≤ 5 s and ≤ 100 MiB RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
WORK=$(mktemp -d /tmp/kkp-bench-audit.XXXXXX)
SERVER_PID=
cleanup() {
  touch "$WORK/done"
  [ -n "$SERVER_PID" ] && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for tool in kubectl jq /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-audit: $tool is needed" >&2; exit 2; }
done

if [ -z "${AUDIT_BIN:-}" ]; then
  cargo build --release --locked --quiet --bin kubectl-kkp-audit
  AUDIT_BIN=target/release/kubectl-kkp-audit
fi
cargo test --locked --quiet --test integration --no-run 2>/dev/null
KKP_BENCH_DIR=$WORK cargo test --locked --quiet --test integration -- --ignored --exact \
  cli_audit::bench_audit_apiserver >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do [ -f "$WORK/ready" ] && break; sleep 0.1; done
[ -f "$WORK/ready" ] || { cat "$WORK/server.log" >&2; echo "bench-audit: the API server did not start" >&2; exit 2; }
KC=$WORK/kubeconfig
echo "API server $(cat "$WORK/ready"): 5000 Pods, 200 namespaces, 100 images"

# measure NAME CMD…: prints "wall_s rss_kib" of one run (stdout of CMD to $WORK/NAME.out).
measure() {
  local name=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || true
  tail -n 1 "$WORK/$name.time"
}
audit() {
  "$AUDIT_BIN" --kubeconfig "$KC" --registry reg.bench/kkp --no-mirror-check -o json
}
peer() {
  kubectl --kubeconfig "$KC" get pods -A -o json |
    jq -r '[.items[].spec | (.containers // []) + (.initContainers // []) + (.ephemeralContainers // []) | .[].image] | unique | .[]'
}
export -f audit peer
export AUDIT_BIN KC

printf '%-6s %-24s %-24s %s\n' round "kubectl-kkp-audit" "kubectl get + jq" "ratio (wall)"
ratios=()
for r in $(seq "$ROUNDS"); do
  read -r a_wall a_rss < <(measure audit bash -c audit)
  read -r p_wall p_rss < <(measure peer bash -c peer)
  ratio=$(awk -v a="$a_wall" -v p="$p_wall" 'BEGIN { printf "%.2f", (p > 0 ? a / p : 0) }')
  ratios+=("$ratio")
  printf '%-6s %-24s %-24s %s\n' "$r" "${a_wall} s, $((a_rss / 1024)) MiB" "${p_wall} s, $((p_rss / 1024)) MiB" "$ratio"
done
# Both saw the same images.
jq -r '.summary.images' "$WORK/audit.out" >"$WORK/audit.images"
echo "images: audit $(cat "$WORK/audit.images") (pods and templates), peer $(wc -l <"$WORK/peer.out") (pods)"
jq -r '.summary | "audit summary: \(.clusters) clusters, \(.objects) objects, \(.leaks) leaks"' "$WORK/audit.out"
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "median ratio audit / peer: $median"
