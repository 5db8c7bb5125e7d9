#!/usr/bin/env bash
# Copy-speed benchmark: kubectl-kkp-mirror vs `skopeo sync --all` vs `crane copy` (per image, when crane
# is installed), each into its own fresh Debian docker-registry on 127.0.0.1, from one source registry
# holding synthetic multi-arch images (random layers). Also reports the copier's peak memory.
#
# Prints, per tool, wall time and the CPU seconds spent by the tool and by each registry meanwhile (on a
# busy machine the registries' CPU, not the copier, sets the pace), then ratios against crane, then a
# floor: the same blobs moved with plain curl.
#
# usage: benches/bench-copy.sh [IMAGES] [PLATFORMS] [LAYERS] [LAYER_KIB]
#   defaults: 20 images x 3 platforms x 3 layers x 2048 KiB (one base layer shared by all images)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-20} PLATFORMS=${2:-3} LAYERS=${3:-3} LAYER_KIB=${4:-2048}
for tool in docker-registry skopeo python3 bc /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-copy: $tool is required" >&2; exit 1; }
done
# KKP_BIN=path skips the (slow, LTO) release build, e.g. to try the script with a debug binary.
# KKP_BASE=path also times that build of kubectl-kkp-mirror (e.g. the previous commit's), in the same run.
if [ -z "${KKP_BIN:-}" ]; then cargo build --release --quiet --bin kubectl-kkp-mirror; fi
KKP=${KKP_BIN:-target/release/kubectl-kkp-mirror}

WORK=$(mktemp -d /tmp/kkp-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() { # name -> sets REG (host:port) and REG_PID; not in a subshell, so cleanup sees the pid
  local name=$1 port; port=$(free_port)
  mkdir -p "$WORK/$name"
  cat >"$WORK/$name/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/$name/storage}}
http: {addr: 127.0.0.1:$port, secret: bench}
EOF
  docker-registry serve "$WORK/$name/config.yml" >"$WORK/$name/log" 2>&1 &
  REG_PID=$!
  PIDS+=("$REG_PID")
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  REG="127.0.0.1:$port"
}

start_registry src; SRC=$REG SRC_PID=$REG_PID
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
# CPU seconds (user+sys) a process has used so far, from /proc (clock ticks).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# timed LABEL DST_PID CMD...: wall time, the command's CPU (with its children), and the CPU the source
# and target registries spent meanwhile: on a small machine they compete with the copier for the cores.
timed() {
  local label=$1 dpid=$2; shift 2
  local s0 d0 t0 t1 u sy m
  s0=$(cpu_ticks "$SRC_PID"); d0=$(cpu_ticks "$dpid"); t0=$(now)
  /usr/bin/time -f '%U %S %M' -o "$WORK/time" "$@"
  t1=$(now)
  read -r u sy m <"$WORK/time"
  printf '%-36s %6.2f s  cpu: tool %5.2f s, src registry %5.2f s, dst registry %5.2f s; peak RSS %6d KiB\n' \
    "$label" "$(echo "$t1 - $t0" | bc)" "$(echo "$u + $sy" | bc)" \
    "$(echo "($(cpu_ticks "$SRC_PID") - $s0) / $TCK" | bc -l)" \
    "$(echo "($(cpu_ticks "$dpid") - $d0) / $TCK" | bc -l)" "$m"
  echo "$t1 - $t0" | bc >"$WORK/last"
}

echo "== copies (wall time; CPU seconds of the tool and of each registry meanwhile)"
start_registry kkp; DST=$REG DPID=$REG_PID
timed "kubectl-kkp-mirror" "$DPID" sh -c "'$KKP' '$DST' --image-list '$WORK/images.txt' -o json >'$WORK/kkp.json' 2>'$WORK/kkp.err'"
KKP_COLD=$(cat "$WORK/last")
grep -E '^[0-9]+ images:' "$WORK/kkp.err" | sed 's/^/  /' || true
timed "kubectl-kkp-mirror rerun (no-op)" "$DPID" sh -c "'$KKP' '$DST' --image-list '$WORK/images.txt' -o json >/dev/null 2>&1"
KKP_WARM=$(cat "$WORK/last")
if [ -n "${KKP_BASE:-}" ]; then
  start_registry base; DST=$REG DPID=$REG_PID
  timed "KKP_BASE build" "$DPID" sh -c "'$KKP_BASE' '$DST' --image-list '$WORK/images.txt' -o json >/dev/null 2>&1"
fi

start_registry skopeo; DST=$REG DPID=$REG_PID
timed "skopeo sync --all" "$DPID" sh -c "skopeo sync --all --src yaml --dest docker --dest-tls-verify=false '$WORK/sync.yaml' '$DST/bench' >/dev/null 2>&1"

if command -v crane >/dev/null; then
  start_registry crane; DST=$REG DPID=$REG_PID
  CRANE="while read -r img; do crane copy --insecure \"\$img\" \"$DST/\${img#*/}\" 2>/dev/null; done <'$WORK/images.txt'"
  timed "crane copy (per image)" "$DPID" sh -c "$CRANE"
  CRANE_COLD=$(cat "$WORK/last")
  timed "crane copy (per image) rerun" "$DPID" sh -c "$CRANE"
  CRANE_WARM=$(cat "$WORK/last")
  printf 'kubectl-kkp-mirror / crane per image: cold %.2f, rerun %.2f\n' \
    "$(echo "$KKP_COLD / $CRANE_COLD" | bc -l)" "$(echo "$KKP_WARM / $CRANE_WARM" | bc -l)"
else
  echo "crane not installed: skipped (see /work/shared/tools/install-crane.sh or go install)"
fi

# A floor for this machine: the same unique blobs (the source registry's files), uploaded with plain curl (POST, then
# one PUT with Content-Length; 8 at a time) into a fresh registry, and read back from the source the same
# way. No manifests, no HEADs, no hashing on our side.
if command -v curl >/dev/null; then
  start_registry floor; DST=$REG DPID=$REG_PID
  # The source's own blobs (skopeo compressed the random layers on the way in): HEX DATA-FILE REPO.
  V2="$WORK/src/storage/docker/registry/v2"
  for repo in "$V2"/repositories/bench/*; do
    for l in "$repo"/_layers/sha256/*; do
      hex=${l##*/} data="$V2/blobs/sha256/${hex:0:2}/$hex/data"
      [ "$(stat -c %s "$data")" -gt 4096 ] && echo "$hex $data ${repo##*/}"
    done
  done | sort -u -k1,1 >"$WORK/blobs.txt"
  cat >"$WORK/put.sh" <<'SH'
#!/bin/sh
# put.sh HOST HEX FILE IMAGE: POST, then a monolithic PUT
loc=$(curl -s -o /dev/null -D - -X POST "http://$1/v2/floor/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $loc in http*) ;; *) loc="http://$1$loc" ;; esac
case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$3" "$loc${sep}digest=sha256:$2"
SH
  cat >"$WORK/get.sh" <<'SH'
#!/bin/sh
# get.sh HOST HEX FILE IMAGE
curl -sSf -o /dev/null "http://$1/v2/bench/$4/blobs/sha256:$2"
SH
  chmod +x "$WORK/put.sh" "$WORK/get.sh"
  timed "floor: curl PUT of the unique blobs" "$DPID" sh -c "xargs -P 8 -n 3 '$WORK/put.sh' '$DST' <'$WORK/blobs.txt'"
  timed "floor: curl GET of the unique blobs" "$DPID" sh -c "xargs -P 8 -n 3 '$WORK/get.sh' '$SRC' <'$WORK/blobs.txt'"
fi
