#!/usr/bin/env bash
# Copy-speed benchmark: kubectl-kkp-mirror vs `skopeo sync --all` vs `crane copy` (per image, when crane
# is installed), each into its own fresh Debian docker-registry on 127.0.0.1, from one source registry
# holding synthetic multi-arch images (random layers). Also reports the copier's peak memory.
#
# Prints, per tool, wall time and the CPU seconds spent by the tool and by each registry meanwhile (on a
# busy machine the registries' CPU, not the copier, sets the pace), then ratios against crane, then a
# floor: the same blobs moved with plain curl.
#
# usage: benches/bench-copy.sh [IMAGES] [PLATFORMS] [SCALE_MB]
#   defaults: 100 images x 2 platforms, each platform manifest on 1-2 base layers drawn from a pool of five
#   shared ones (1-25 MB) plus 1-4 layers of its own, SCALE_MB (8) MB on average (≈1.7 GB in all) — the
#   shape of an upstream image set, as the issue asks for. ROUNDS=N (3) times kubectl-kkp and crane N times,
#   alternating, and reports the median ratio. Each kubectl-kkp run starts with an empty blob cache
#   (XDG_CACHE_HOME in the work dir), as a first mirror does.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${1:-100} PLATFORMS=${2:-2} SCALE_MB=${3:-8}
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
echo "== generating $IMAGES images x $PLATFORMS platforms (own layers ≈$SCALE_MB MB per platform) into $SRC"
python3 - "$SRC" "$IMAGES" "$PLATFORMS" "$SCALE_MB" >"$WORK/images.txt" <<'PY'
import hashlib, json, random, sys, urllib.error, urllib.request
reg, n, plats, scale = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rnd = random.Random(42)  # the same images every run
MB = 1 << 20
arches = ["amd64", "arm64", "ppc64le", "s390x", "riscv64", "386"]
# Base layers shared between images, as distro, runtime and language layers are upstream.
pool = [rnd.randbytes(int(mb * MB)) for mb in (1.0, 2.5, 6.0, 12.0, 25.0)]
def call(method, url, data=None, headers={}):
    req = urllib.request.Request(f"http://{reg}{url}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers
def blob(repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    if call("HEAD", f"/v2/{repo}/blobs/{d}")[0] != 200:
        st, h = call("POST", f"/v2/{repo}/blobs/uploads/")
        loc = h["Location"]
        loc = loc[loc.index("/v2/"):] if "://" in loc else loc
        st, _ = call("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={d}", data, {"Content-Type": "application/octet-stream"})
        assert st == 201, st
    return {"digest": d, "size": len(data)}
def manifest(repo, ref, doc, mt):
    raw = json.dumps(doc).encode()
    st, _ = call("PUT", f"/v2/{repo}/manifests/{ref}", raw, {"Content-Type": mt})
    assert st == 201, st
    return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}
for i in range(n):
    repo, children = f"bench/img{i}", []
    for p in range(plats):
        layers = rnd.sample(pool, rnd.randint(1, 2))
        layers += [rnd.randbytes(max(4096, int(rnd.expovariate(2.5 / scale) * MB))) for _ in range(rnd.randint(1, 4))]
        ls = [dict(blob(repo, l), mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for l in layers]
        cfg = json.dumps({"architecture": arches[p % 6], "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in ls]}}).encode()
        c = dict(blob(repo, cfg), mediaType="application/vnd.oci.image.config.v1+json")
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": c, "layers": ls}
        raw = json.dumps(doc).encode()
        m = manifest(repo, "sha256:" + hashlib.sha256(raw).hexdigest(), doc, doc["mediaType"])
        children.append(dict(m, platform={"os": "linux", "architecture": arches[p % 6]}))
    manifest(repo, "v1", {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}, "application/vnd.oci.image.index.v1+json")
    print(f"{reg}/{repo}:v1", flush=True)
PY
printf '%s:\n  tls-verify: false\n  images:\n' "$SRC" >"$WORK/sync.yaml"
for i in $(seq 0 $((IMAGES - 1))); do printf '    bench/img%s: ["v1"]\n' "$i" >>"$WORK/sync.yaml"; done
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
  sync # the previous run's dirty pages are written back before this one starts, not during it
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

# stop_registry PID NAME: the run is measured; its storage goes (1.6 GB each with the defaults).
stop_registry() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; rm -rf "${WORK:?}/$2/storage"; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "== copies (wall time; CPU seconds of the tool and of each registry meanwhile)"
# Wall times on a shared 2-core VM vary by ±20 % from run to run, so kubectl-kkp and crane are timed
# ROUNDS times, alternating, each round into fresh registries; the ratios are per round, then the median.
ROUNDS=${ROUNDS:-3}
HAVE_CRANE=$(command -v crane >/dev/null && echo 1 || true)
[ -n "$HAVE_CRANE" ] || echo "crane not installed: skipped (see /work/shared/tools/install-crane.sh or go install)"
: >"$WORK/cold" ; : >"$WORK/warm" ; : >"$WORK/attach-cold" ; : >"$WORK/attach-warm"
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  start_registry "kkp$round"; DST=$REG DPID=$REG_PID
  timed "kubectl-kkp-mirror" "$DPID" sh -c "XDG_CACHE_HOME='$WORK/cache-kkp$round' '$KKP' '$DST' --image-list '$WORK/images.txt' -o json >'$WORK/kkp.json' 2>'$WORK/kkp.err'"
  KKP_COLD=$(cat "$WORK/last")
  grep -E '^[0-9]+ images:' "$WORK/kkp.err" | sed 's/^/  /' || true
  timed "kubectl-kkp-mirror rerun (no-op)" "$DPID" sh -c "XDG_CACHE_HOME='$WORK/cache-kkp$round' '$KKP' '$DST' --image-list '$WORK/images.txt' -o json >/dev/null 2>&1"
  KKP_WARM=$(cat "$WORK/last")
  stop_registry "$DPID" "kkp$round"
  # The same copy without attachment discovery (issue 14: one tag listing per repository and one
  # referrers probe per registry must cost <= 5 % when no image has attachments).
  start_registry "skip$round"; DST=$REG DPID=$REG_PID
  timed "kubectl-kkp-mirror --skip-attachments" "$DPID" sh -c "XDG_CACHE_HOME='$WORK/cache-skip$round' '$KKP' '$DST' --image-list '$WORK/images.txt' --skip-attachments -o json >/dev/null 2>&1"
  SKIP_COLD=$(cat "$WORK/last")
  timed "kubectl-kkp-mirror --skip-attachments rerun" "$DPID" sh -c "XDG_CACHE_HOME='$WORK/cache-skip$round' '$KKP' '$DST' --image-list '$WORK/images.txt' --skip-attachments -o json >/dev/null 2>&1"
  SKIP_WARM=$(cat "$WORK/last")
  stop_registry "$DPID" "skip$round"
  echo "$KKP_COLD / $SKIP_COLD" | bc -l >>"$WORK/attach-cold"
  echo "$KKP_WARM / $SKIP_WARM" | bc -l >>"$WORK/attach-warm"
  printf 'attachment discovery overhead, round %s: cold %.3f, rerun %.3f (with / --skip-attachments)\n' "$round" \
    "$(tail -1 "$WORK/attach-cold")" "$(tail -1 "$WORK/attach-warm")"
  if [ -n "${KKP_BASE:-}" ]; then
    start_registry "base$round"; DST=$REG DPID=$REG_PID
    timed "KKP_BASE build" "$DPID" sh -c "XDG_CACHE_HOME='$WORK/cache-base$round' '$KKP_BASE' '$DST' --image-list '$WORK/images.txt' -o json >/dev/null 2>&1"
    stop_registry "$DPID" "base$round"
  fi
  if [ -n "$HAVE_CRANE" ]; then
    start_registry "crane$round"; DST=$REG DPID=$REG_PID
    CRANE="while read -r img; do crane copy --insecure \"\$img\" \"$DST/\${img#*/}\" 2>/dev/null; done <'$WORK/images.txt'"
    timed "crane copy (per image)" "$DPID" sh -c "$CRANE"
    CRANE_COLD=$(cat "$WORK/last")
    timed "crane copy (per image) rerun" "$DPID" sh -c "$CRANE"
    CRANE_WARM=$(cat "$WORK/last")
    stop_registry "$DPID" "crane$round"
    echo "$KKP_COLD / $CRANE_COLD" | bc -l >>"$WORK/cold"
    echo "$KKP_WARM / $CRANE_WARM" | bc -l >>"$WORK/warm"
    printf 'kubectl-kkp-mirror / crane per image, round %s: cold %.2f, rerun %.2f\n' "$round" \
      "$(tail -1 "$WORK/cold")" "$(tail -1 "$WORK/warm")"
  fi
done
printf '== attachment discovery over %s rounds (with / --skip-attachments; goal cold <= 1.05): cold median %.3f (%s), rerun median %.3f (%s)\n' "$ROUNDS" \
  "$(median <"$WORK/attach-cold")" "$(xargs printf '%.3f ' <"$WORK/attach-cold" | sed 's/ $//')" \
  "$(median <"$WORK/attach-warm")" "$(xargs printf '%.3f ' <"$WORK/attach-warm" | sed 's/ $//')"
if [ -n "$HAVE_CRANE" ]; then
  printf '== kubectl-kkp-mirror / crane per image over %s rounds: cold median %.2f (%s), rerun median %.2f (%s)\n' "$ROUNDS" \
    "$(median <"$WORK/cold")" "$(xargs printf '%.2f ' <"$WORK/cold" | sed 's/ $//')" \
    "$(median <"$WORK/warm")" "$(xargs printf '%.2f ' <"$WORK/warm" | sed 's/ $//')"
fi

start_registry skopeo; DST=$REG DPID=$REG_PID
timed "skopeo sync --all" "$DPID" sh -c "skopeo sync --all --src yaml --dest docker --dest-tls-verify=false '$WORK/sync.yaml' '$DST/bench' >/dev/null 2>&1"
stop_registry "$DPID" skopeo

# A floor for this machine: the same unique blobs (the source registry's files), uploaded with plain curl (POST, then
# one PUT with Content-Length; 8 at a time) into a fresh registry, and read back from the source the same
# way. No manifests, no HEADs, no hashing on our side.
if command -v curl >/dev/null; then
  start_registry floor; DST=$REG DPID=$REG_PID
  # The source's layer blobs (configs left out): HEX DATA-FILE REPO.
  V2="$WORK/src/storage/docker/registry/v2"
  for repo in "$V2"/repositories/bench/*; do
    for l in "$repo"/_layers/sha256/*; do
      hex=${l##*/} data="$V2/blobs/sha256/${hex:0:2}/$hex/data"
      [ "$(stat -c %s "$data")" -ge 4096 ] && echo "$hex $data ${repo##*/}"
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
