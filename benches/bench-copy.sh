#!/usr/bin/env bash
# Copy-speed benchmark: kubectl-kkp-mirror vs `skopeo sync --all` vs `crane copy` (per image, when crane
# is installed), each into its own fresh Debian docker-registry on 127.0.0.1, from one source registry
# holding synthetic multi-arch images (random layers). Also reports the copier's peak memory.
#
# usage: benches/bench-copy.sh [IMAGES] [PLATFORMS] [LAYERS] [LAYER_KIB]
#   defaults: 20 images x 3 platforms x 3 layers x 2048 KiB (one base layer shared by all images)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-20} PLATFORMS=${2:-3} LAYERS=${3:-3} LAYER_KIB=${4:-2048}
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "bench-copy: $tool is required" >&2; exit 1; }
done
# KKP_BIN=path skips the (slow, LTO) release build, e.g. to try the script with a debug binary.
if [ -z "${KKP_BIN:-}" ]; then cargo build --release --quiet --bin kubectl-kkp-mirror; fi
KKP=${KKP_BIN:-target/release/kubectl-kkp-mirror}

WORK=$(mktemp -d /tmp/kkp-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # name -> prints host:port
  local name=$1 port; port=$(free_port)
  mkdir -p "$WORK/$name"
  cat >"$WORK/$name/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/$name/storage}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
  docker-registry serve "$WORK/$name/config.yml" >"$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  echo "127.0.0.1:$port"
}

SRC=$(start_registry src)
echo "== generating $IMAGES images x $PLATFORMS platforms x $LAYERS layers x $LAYER_KIB KiB into $SRC"
python3 - "$WORK/layouts" "$IMAGES" "$PLATFORMS" "$LAYERS" "$LAYER_KIB" <<'PY'
import hashlib, json, os, sys
root, n, plats, layers, kib = sys.argv[1], *map(int, sys.argv[2:])
arches = ["amd64", "arm64", "ppc64le", "s390x", "riscv64", "386"]
shared = os.urandom(kib * 1024)
def put(d, data):
    h = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{d}/blobs/sha256", exist_ok=True)
    with open(f"{d}/blobs/sha256/{h}", "wb") as f: f.write(data)
    return {"digest": f"sha256:{h}", "size": len(data)}
for i in range(n):
    d = f"{root}/img{i}"
    children = []
    for p in range(plats):
        ls = [dict(put(d, shared), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")]
        for _ in range(layers - 1):
            ls.append(dict(put(d, os.urandom(kib * 1024)), mediaType="application/vnd.oci.image.layer.v1.tar+gzip"))
        cfg = json.dumps({"architecture": arches[p % 6], "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "n": [i, p]}).encode()
        c = dict(put(d, cfg), mediaType="application/vnd.oci.image.config.v1+json")
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": c, "layers": ls}).encode()
        children.append(dict(put(d, m), mediaType="application/vnd.oci.image.manifest.v1+json", platform={"os": "linux", "architecture": arches[p % 6]}))
    idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}).encode()
    top = dict(put(d, idx), mediaType="application/vnd.oci.image.index.v1+json", annotations={"org.opencontainers.image.ref.name": "v1"})
    with open(f"{d}/index.json", "w") as f: json.dump({"schemaVersion": 2, "manifests": [top]}, f)
    with open(f"{d}/oci-layout", "w") as f: f.write('{"imageLayoutVersion":"1.0.0"}')
PY
: >"$WORK/images.txt"
printf '%s:\n  tls-verify: false\n  images:\n' "$SRC" >"$WORK/sync.yaml"
for i in $(seq 0 $((IMAGES - 1))); do
  skopeo copy -q --all --dest-tls-verify=false "oci:$WORK/layouts/img$i:v1" "docker://$SRC/bench/img$i:v1"
  echo "$SRC/bench/img$i:v1" >>"$WORK/images.txt"
  printf '    bench/img%s: ["v1"]\n' "$i" >>"$WORK/sync.yaml"
done
echo "source: $(du -sh "$WORK/src/storage" | cut -f1)"

now() { date +%s.%N; }
report() { printf '%-34s %8.2f s\n' "$1" "$(echo "$3 - $2" | bc)"; }
peak_kib() { grep -o 'Maximum resident set size (kbytes): [0-9]*' "$1" | grep -o '[0-9]*$'; }

echo "== copies"
DST=$(start_registry kkp)
t0=$(now)
if command -v /usr/bin/time >/dev/null; then
  /usr/bin/time -v "$KKP" "$DST" --image-list "$WORK/images.txt" -o json >"$WORK/kkp.json" 2>"$WORK/kkp.err"
  t1=$(now); report "kubectl-kkp-mirror (parallel 8)" "$t0" "$t1"; echo "  peak RSS: $(peak_kib "$WORK/kkp.err") KiB"
else
  "$KKP" "$DST" --image-list "$WORK/images.txt" -o json >"$WORK/kkp.json" 2>"$WORK/kkp.err"
  t1=$(now); report "kubectl-kkp-mirror (parallel 8)" "$t0" "$t1"
fi
grep -E '^[0-9]+ images:' "$WORK/kkp.err" | sed 's/^/  /'
t0=$(now); "$KKP" "$DST" --image-list "$WORK/images.txt" -o json >/dev/null 2>&1; t1=$(now)
report "kubectl-kkp-mirror rerun (no-op)" "$t0" "$t1"

DST=$(start_registry skopeo)
t0=$(now)
skopeo sync --all --src yaml --dest docker --dest-tls-verify=false "$WORK/sync.yaml" "$DST/bench" >/dev/null 2>&1
t1=$(now); report "skopeo sync --all" "$t0" "$t1"

if command -v crane >/dev/null; then
  DST=$(start_registry crane)
  t0=$(now)
  while read -r img; do crane copy --insecure "$img" "$DST/${img#*/}" 2>/dev/null; done <"$WORK/images.txt"
  t1=$(now); report "crane copy (per image)" "$t0" "$t1"
else
  echo "crane not installed: skipped (see /work/shared/tools/install-crane.sh or go install)"
fi
