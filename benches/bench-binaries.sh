#!/usr/bin/env bash
# Node-binaries download benchmark: `kubectl-kkp-mirror --binaries DIR` vs curl fetching the same files
# 8 at a time (xargs -P8), from one loopback HTTP server (python3 -m http.server, threaded) that plays
# dl.k8s.io and github.com through --binaries-source. The file set is the v2.31.0 default one (198 files:
# 31 Kubernetes versions x kubelet/kubeadm/kubectl x 2 arches, 8 crictl, 4 CNI), each SIZE_MB (5) MiB of
# random bytes with its .sha256. curl only fetches (file + .sha256, no check); kubectl-kkp also checks
# every checksum, fsyncs and renames. Then a rerun of kubectl-kkp, which must download nothing.
#
# usage: benches/bench-binaries.sh [SIZE_MB]
#   KKP_BIN=path skips the release build (e.g. target/debug/kubectl-kkp-mirror). ROUNDS=N (3) alternates
#   the two N times and reports the median ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-5} ROUNDS=${ROUNDS:-3}
for tool in python3 curl xargs sha256sum; do
  command -v "$tool" >/dev/null || { echo "bench-binaries: $tool is required" >&2; exit 1; }
done
if [ -z "${KKP_BIN:-}" ]; then cargo build --release --quiet --bin kubectl-kkp-mirror; fi
KKP=${KKP_BIN:-target/release/kubectl-kkp-mirror}

WORK=$(mktemp -d /tmp/kkp-bench-bin.XXXXXX)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The plan: `url path` per line; served as /dl/PATH (dl.k8s.io) and /gh/PATH (github.com).
"$KKP" --binaries "$WORK/never" --dry-run -o text >"$WORK/plan"
N=$(wc -l <"$WORK/plan")
mkdir -p "$WORK/www"
while read -r url path; do
  case $url in https://dl.k8s.io/*) srv=dl ;; *) srv=gh ;; esac
  mkdir -p "$WORK/www/$srv/$(dirname "$path")"
  echo "$srv/$path" >>"$WORK/served"
done <"$WORK/plan"
python3 - "$WORK/www" "$WORK/served" "$SIZE_MB" <<'PY'
import hashlib, os, sys
root, listing, size = sys.argv[1], sys.argv[2], int(sys.argv[3]) << 20
for rel in open(listing).read().split():
    data = os.urandom(size)
    p = os.path.join(root, rel)
    open(p, "wb").write(data)
    h = hashlib.sha256(data).hexdigest()
    open(p + ".sha256", "w").write(h + ("  " + os.path.basename(p) if "/plugins/" in p else "") + "\n")
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$PORT" >/dev/null 2>&1 &
SERVER_PID=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -fs "$BASE/" >/dev/null && break; sleep 0.1; done
echo "bench-binaries: $N files x $SIZE_MB MiB (+ .sha256) from $BASE, $ROUNDS rounds"

now() { date +%s.%N; }
run_kkp() {
  "$KKP" --binaries "$1" --binaries-source "dl.k8s.io=$BASE/dl" --binaries-source "github.com=$BASE/gh" \
    --parallel 8 >/dev/null 2>"$WORK/kkp.err" || { cat "$WORK/kkp.err" >&2; exit 1; }
}
run_curl() { # one curl per file, 8 at a time: `-o PATH URL` per line
  awk -v b="$BASE" '{print $0, b "/" $0; print $0 ".sha256", b "/" $0 ".sha256"}' "$WORK/served" |
    (cd "$1" && xargs -P8 -L1 curl -fsS --create-dirs -o)
}
ratios=()
for r in $(seq "$ROUNDS"); do
  rm -rf "$WORK/kkp" "$WORK/curl"; mkdir -p "$WORK/curl"; sync
  t0=$(now); run_kkp "$WORK/kkp"; t1=$(now)
  t2=$(now); run_curl "$WORK/curl"; t3=$(now)
  kkp=$(echo "$t1 - $t0" | bc); crl=$(echo "$t3 - $t2" | bc); ratio=$(echo "scale=2; $kkp / $crl" | bc)
  ratios+=("$ratio")
  printf 'round %d: kubectl-kkp %.2fs, curl -P8 %.2fs, ratio %sx\n' "$r" "$kkp" "$crl" "$ratio"
done
[ "$(find "$WORK/kkp" -type f ! -name '*.sha256' -path '*/bin/linux/*' | wc -l)" -gt 0 ]
t0=$(now); run_kkp "$WORK/kkp"; t1=$(now)
grep -q . "$WORK/kkp.err" && cat "$WORK/kkp.err" >&2
rerun=$(echo "$t1 - $t0" | bc)
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
printf 'median ratio kubectl-kkp / curl -P8: %sx (target <= 1.5x); rerun (nothing to download): %.2fs (target < 1s)\n' "$median" "$rerun"
