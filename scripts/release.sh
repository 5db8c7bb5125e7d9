#!/usr/bin/env bash
# Builds the release archive of kubectl-kkp for this machine's platform and renders the krew manifest.
#
# usage: scripts/release.sh VERSION [--bin-dir DIR] [--out-dir DIR] [--manifest FILE]
#   VERSION     the release, with or without the leading v; must equal the Cargo package version
#   --bin-dir   take the four binaries from DIR instead of running `cargo build --release`
#   --out-dir   where archives and their .sha256 files go (default: target/dist)
#   --manifest  the krew manifest to write (default: krew-manifests/kkp.yaml)
#
# The archive kubectl-kkp_vX.Y.Z_<os>_<arch>.tar.gz holds, at its root, the four binaries, the
# kubectl_complete-kkp* completion shims, LICENSE, README.md and the Helm plugin files (so an unpacked
# archive is also a Helm plugin). The manifest is rendered from krew-manifests/kkp.yaml.tmpl with one
# platform per archive found in the out dir for this version, so archives built on other machines
# (copied into the out dir first) are included too; platforms without an archive are left out.
# KKP_RELEASE_BASE_URL overrides the download URL (default: the GitHub release of the tag).
set -euo pipefail

die() { echo "release.sh: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
version=""
bin_dir=""
out_dir="$root/target/dist"
manifest="$root/krew-manifests/kkp.yaml"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --out-dir) out_dir=${2:?--out-dir needs a directory}; shift 2 ;;
    --manifest) manifest=${2:?--manifest needs a file}; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$version" ] || die "more than one VERSION given"; version=$1; shift ;;
  esac
done
[ -n "$version" ] || die "usage: scripts/release.sh VERSION [--bin-dir DIR] [--out-dir DIR] [--manifest FILE]"
tag="v${version#v}"
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ $tag =~ $semver ]] || die "VERSION $version is not a semantic version (like 1.2.3)"

cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
[ "v$cargo_version" = "$tag" ] ||
  die "VERSION $tag does not match the Cargo version v$cargo_version; bump [workspace.package] version first"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  MINGW*|MSYS*|CYGWIN*) os=windows ;;
  *) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) die "unsupported CPU $(uname -m)" ;;
esac
exe=""
[ "$os" = windows ] && exe=.exe

if [ -z "$bin_dir" ]; then
  echo "release.sh: cargo build --release" >&2
  (cd "$root" && cargo build --release --locked --bins)
  bin_dir="${CARGO_TARGET_DIR:-$root/target}/release"
fi

if command -v sha256sum >/dev/null; then sha256() { sha256sum "$1" | cut -d' ' -f1; }
else sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
fi

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
name="kubectl-kkp_${tag}_${os}_${arch}"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for tool in kubectl-kkp kubectl-kkp-mirror kubectl-kkp-retarget kubectl-kkp-seedproxy; do
  [ -f "$bin_dir/$tool$exe" ] || die "$bin_dir/$tool$exe is missing"
  cp "$bin_dir/$tool$exe" "$stage/"
  chmod 0755 "$stage/$tool$exe"
done
for shim in kubectl_complete-kkp kubectl_complete-kkp-mirror kubectl_complete-kkp-retarget \
  kubectl_complete-kkp-seedproxy; do
  install -m 0755 "$root/plugins/kkp/kubectl_complete-kkp" "$stage/$shim"
done
[ -f "$root/LICENSE" ] || die "LICENSE is missing (krew requires one in the archive)"
install -m 0644 "$root/LICENSE" "$stage/LICENSE"
if [ -f "$root/README.md" ]; then
  install -m 0644 "$root/README.md" "$stage/README.md"
else
  echo "release.sh: warning: README.md is missing; the archive has none" >&2
fi
install -m 0755 "$root/helm-plugin/kkp.sh" "$stage/kkp.sh"
sed "s/^version: .*/version: \"${tag#v}\"/" "$root/helm-plugin/plugin.yaml" >"$stage/plugin.yaml"
chmod 0644 "$stage/plugin.yaml"

archive="$out_dir/$name.tar.gz"
files=$(cd "$stage" && ls -A | LC_ALL=C sort)
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
  # Same inputs, same bytes: fixed order, owner and time stamps.
  # shellcheck disable=SC2086
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@${SOURCE_DATE_EPOCH:-0}" -cf - $files | gzip -n -9 >"$archive"
else
  # shellcheck disable=SC2086
  tar -C "$stage" -cf - $files | gzip -n -9 >"$archive"
fi
sha256 "$archive" >"$archive.sha256"
echo "release.sh: wrote $archive ($(cat "$archive.sha256"))" >&2

# Render the manifest: one block per platform whose archive for this tag is in the out dir.
base_url=${KKP_RELEASE_BASE_URL:-https://github.com/kubectl-kkp/kubectl-kkp/releases/download/$tag}
shas=""
for plat in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64; do
  f="$out_dir/kubectl-kkp_${tag}_${plat}.tar.gz"
  if [ -f "$f" ]; then
    shas="$shas $plat=$(sha256 "$f")"
  else
    echo "release.sh: no archive for ${plat/_//} in $out_dir; left out of the manifest" >&2
  fi
done
mkdir -p "$(dirname "$manifest")"
awk -v version="$tag" -v base="$base_url" -v shas="$shas" '
  BEGIN { n = split(shas, pairs, " "); for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); sha[kv[1]] = kv[2] } }
  NR == 1, !/^#/ { if (/^#/) next }
  $1 == "#@platform" { plat = $2 "_" $3; inblock = 1; keep = (plat in sha); next }
  $1 == "#@end" { inblock = 0; next }
  inblock && !keep { next }
  {
    gsub(/\{\{VERSION\}\}/, version); gsub(/\{\{BASE_URL\}\}/, base)
    if (inblock) gsub(/\{\{SHA256\}\}/, sha[plat])
    print
  }
' "$root/krew-manifests/kkp.yaml.tmpl" >"$manifest.tmp"
grep -q '{{' "$manifest.tmp" && die "unfilled placeholder in $manifest.tmp"
grep -q '^  - selector:' "$manifest.tmp" || die "no platform archive found; nothing to put in the manifest"
mv "$manifest.tmp" "$manifest"
echo "release.sh: wrote $manifest" >&2
