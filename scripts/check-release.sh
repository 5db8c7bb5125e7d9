#!/usr/bin/env bash
# Checks the release for the platforms this Linux machine can build: scripts/release.sh builds the
# linux/amd64 and linux/arm64 archives, the arm64 binaries run under qemu-aarch64-static and plan exactly
# what the amd64 ones plan, the rendered krew manifest is validated, and the linux/amd64 archive is
# installed with krew into a temporary KREW_ROOT and run as `kubectl kkp version`.
#
# usage: scripts/check-release.sh [DIST]   (default: a temporary directory; the archives stay in DIST)
#   KKP_RELEASE_TARGET_DIR  cargo target dir for the release build (default: CARGO_TARGET_DIR or target)
# needs: cargo zigbuild (pip install cargo-zigbuild), qemu-aarch64-static (Debian's qemu-user-static),
#        file, python3, kubectl; krew v0.4.3's `krew` and `validate-krew-manifest` on PATH.
# Without krew's binaries (they come from the Go module proxy: `go install sigs.k8s.io/krew/cmd/...@v0.4.3`)
# it says so loudly and falls back to the project's port of krew's manifest rules (the ignored test
# cli_packaging::release_dist_passes_krew_rules) and an install in krew's layout, done by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "check-release: $*" >&2; }
die() { say "$*"; exit 1; }

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
tag="v$version"
work=$(mktemp -d)
trap 'kill "${server_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
dist=${1:-$work/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
for tool in qemu-aarch64-static file python3 kubectl; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

say "scripts/release.sh $version (linux/amd64, linux/arm64)"
# KKP_RELEASE_TARGET_DIR: the cargo target dir of the release build (CI keeps it outside the clone).
CARGO_TARGET_DIR=${KKP_RELEASE_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}} \
  scripts/release.sh "$version" --out-dir "$dist" --manifest "$dist/kkp.yaml"
for arch in amd64 arm64; do
  mkdir -p "$work/$arch"
  tar -xzf "$dist/kubectl-kkp_${tag}_linux_$arch.tar.gz" -C "$work/$arch"
done

# ---- linux/arm64 under qemu ----
desc=$(file -b "$work/arm64/kubectl-kkp")
say "arm64 kubectl-kkp: $desc"
[[ $desc == *"ARM aarch64"* && $desc == *static* ]] || die "the arm64 archive's kubectl-kkp is not a static aarch64 binary"
got=$(qemu-aarch64-static "$work/arm64/kubectl-kkp" version)
[ "$got" = "kubectl-kkp $tag" ] || die "arm64 kubectl-kkp version printed '$got', not 'kubectl-kkp $tag'"
for tool in kubectl-kkp-retarget kubectl-kkp-seedproxy kubectl-kkp-audit; do
  qemu-aarch64-static "$work/arm64/$tool" --help >/dev/null || die "arm64 $tool --help failed"
done
qemu-aarch64-static "$work/arm64/kubectl-kkp-mirror" --dry-run -o json >"$work/arm64.json" 2>"$work/arm64.err" ||
  { cat "$work/arm64.err" >&2; die "arm64 kubectl-kkp-mirror --dry-run failed"; }
"$work/amd64/kubectl-kkp-mirror" --dry-run -o json >"$work/amd64.json" 2>/dev/null
images=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["images"]))' "$work/arm64.json")
[ "$images" -gt 0 ] || die "arm64 mirror --dry-run planned no image"
cmp -s "$work/arm64.json" "$work/amd64.json" || die "arm64 and amd64 mirror --dry-run -o json differ"
say "arm64 under qemu: version ok, mirror --dry-run plans $images images, byte-identical to amd64"

# ---- the manifest ----
{ grep -q 'arch: arm64' "$dist/kkp.yaml" && grep -q 'arch: amd64' "$dist/kkp.yaml"; } ||
  die "$dist/kkp.yaml lacks a linux platform"
krew_bin=""
if command -v validate-krew-manifest >/dev/null && command -v krew >/dev/null; then
  krew_bin=$(command -v krew)
  ln -s "$krew_bin" "$work/kubectl-krew" # so `kubectl krew` is this krew
  export PATH="$work:$PATH"
  say "krew at $krew_bin (version tag: $("$krew_bin" version 2>/dev/null | awk '$1 == "GitTag" { print $2 }'))"
  validate-krew-manifest -manifest "$dist/kkp.yaml" -skip-install
  # The full check installs every platform from its uri: serve the archives on loopback and render a
  # manifest pointing there (KREW_OS/KREW_ARCH let krew install the arm64 archive here too).
  port_file="$work/port"
  (cd "$dist" && exec python3 -c '
import http.server, socketserver, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
with socketserver.TCPServer(("127.0.0.1", 0), Quiet) as s:
    open(sys.argv[1], "w").write(str(s.server_address[1]))
    s.serve_forever()' "$port_file") &
  server_pid=$!
  for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
  [ -s "$port_file" ] || die "the loopback file server did not start"
  mkdir -p "$work/local"
  KKP_RELEASE_BASE_URL="http://127.0.0.1:$(cat "$port_file")" \
    scripts/release.sh "$version" --render-only --out-dir "$dist" --manifest "$work/local/kkp.yaml" 2>/dev/null
  validate-krew-manifest -manifest "$work/local/kkp.yaml"
  say "validate-krew-manifest accepts $dist/kkp.yaml (and installs every platform of it from loopback)"
else
  say "WARNING: krew's validate-krew-manifest and krew are not on PATH (they come from the Go module proxy,"
  say "WARNING: which this machine does not reach): checking with the project's port of krew's rules instead"
  KKP_RELEASE_DIST="$dist" cargo test --workspace --locked --test integration -- --ignored --exact \
    cli_packaging::release_dist_passes_krew_rules
fi

# ---- install the linux/amd64 archive as krew does, run it through kubectl ----
export KREW_ROOT="$work/krew-root"
archive="$dist/kubectl-kkp_${tag}_linux_amd64.tar.gz"
if [ -n "$krew_bin" ]; then
  kubectl krew install --manifest="$dist/kkp.yaml" --archive="$archive" </dev/null
  [ -L "$KREW_ROOT/bin/kubectl-kkp" ] || die "krew did not link $KREW_ROOT/bin/kubectl-kkp"
  how="kubectl krew install"
else
  say "WARNING: no krew: unpacking into krew's layout (store/kkp/$tag, bin/kubectl-kkp symlink) by hand"
  mkdir -p "$KREW_ROOT/store/kkp/$tag" "$KREW_ROOT/bin"
  tar -xzf "$archive" -C "$KREW_ROOT/store/kkp/$tag"
  ln -s "$KREW_ROOT/store/kkp/$tag/kubectl-kkp" "$KREW_ROOT/bin/kubectl-kkp"
  how="krew's layout, by hand"
fi
got=$(PATH="$KREW_ROOT/bin:$PATH" kubectl kkp version)
[ "$got" = "kubectl-kkp $tag" ] || die "kubectl kkp version printed '$got' after the install"
# Through krew's symlink the dispatcher still finds its sibling tools in the store.
PATH="$KREW_ROOT/bin:$(dirname "$(command -v kubectl)"):/usr/bin:/bin" kubectl kkp mirror --dry-run -o json >"$work/krew.json" 2>/dev/null
cmp -s "$work/krew.json" "$work/amd64.json" || die "kubectl kkp mirror through krew's link plans differently"
say "linux/amd64 archive installed ($how): kubectl kkp version and kubectl kkp mirror work through it"
say "ok"
