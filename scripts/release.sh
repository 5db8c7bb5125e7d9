#!/usr/bin/env bash
# Builds the release archives of kubectl-kkp, one per platform, and renders the krew manifest.
#
# usage: scripts/release.sh VERSION [--platform OS/ARCH]... [--bin-dir DIR] [--out-dir DIR]
#                                   [--manifest FILE] [--render-only]
#   VERSION        the release, with or without the leading v; must equal the Cargo package version
#   --platform     build this platform (repeatable): linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
#                  windows/amd64. Default: on Linux linux/amd64 and linux/arm64, on macOS darwin/amd64
#                  and darwin/arm64, on Windows windows/amd64
#   --bin-dir      pack the four binaries from DIR instead of building; DIR holds one platform's
#                  binaries (this machine's, or the one --platform names)
#   --out-dir      where archives and their .sha256 files go (default: target/dist)
#   --manifest     the krew manifest to write (default: krew-manifests/kkp.yaml)
#   --render-only  build and pack nothing; render the manifest from the archives in the out dir
#
# Linux and Windows binaries are built with `cargo zigbuild` (pip install cargo-zigbuild; it brings zig as
# the cross linker) on any Linux or macOS machine: static musl binaries for Linux, x86_64-pc-windows-gnu
# for Windows. Darwin binaries link against Apple's SDK and are built with plain cargo on macOS only.
# Missing Rust targets are added with rustup. Every binary is checked with `file` (required) to
# be of the platform it is packed for, and the Linux ones to be statically linked.
#
# The archive kubectl-kkp_vX.Y.Z_<os>_<arch>.tar.gz holds, at its root, the four binaries, the
# kubectl_complete-kkp* completion shims, LICENSE, README.md and the Helm plugin files (so an unpacked
# archive is also a Helm plugin). The manifest is rendered from krew-manifests/kkp.yaml.tmpl with one
# platform per archive found in the out dir for this version, so archives built on other machines
# (copied into the out dir first) are included too; platforms without an archive are left out.
# KKP_RELEASE_BASE_URL overrides the download URL (default: the GitHub release of the tag).
set -euo pipefail

die() { echo "release.sh: $*" >&2; exit 1; }
say() { echo "release.sh: $*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
all_platforms="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64"
version=""
bin_dir=""
render_only=""
platforms=()
out_dir="$root/target/dist"
manifest="$root/krew-manifests/kkp.yaml"
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) platforms+=("${2:?--platform needs OS/ARCH}"); shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --out-dir) out_dir=${2:?--out-dir needs a directory}; shift 2 ;;
    --manifest) manifest=${2:?--manifest needs a file}; shift 2 ;;
    --render-only) render_only=1; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$version" ] || die "more than one VERSION given"; version=$1; shift ;;
  esac
done
[ -n "$version" ] || die "usage: scripts/release.sh VERSION [--platform OS/ARCH]... [--bin-dir DIR] [--out-dir DIR] [--manifest FILE] [--render-only]"
tag="v${version#v}"
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ $tag =~ $semver ]] || die "VERSION $version is not a semantic version (like 1.2.3)"

cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
[ "v$cargo_version" = "$tag" ] ||
  die "VERSION $tag does not match the Cargo version v$cargo_version; bump [workspace.package] version first"

case "$(uname -s)" in
  Linux) host_os=linux ;;
  Darwin) host_os=darwin ;;
  MINGW*|MSYS*|CYGWIN*) host_os=windows ;;
  *) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) host_arch=amd64 ;;
  aarch64|arm64) host_arch=arm64 ;;
  *) die "unsupported CPU $(uname -m)" ;;
esac

for p in ${platforms[@]+"${platforms[@]}"}; do
  [[ " $all_platforms " == *" $p "* ]] || die "--platform $p is not one of: $all_platforms"
done
if [ ${#platforms[@]} -eq 0 ] && [ -z "$render_only" ]; then
  if [ -n "$bin_dir" ]; then platforms=("$host_os/$host_arch")
  else
    case "$host_os" in
      linux) platforms=(linux/amd64 linux/arm64) ;;
      darwin) platforms=(darwin/amd64 darwin/arm64) ;;
      windows) platforms=(windows/amd64) ;;
    esac
  fi
fi
[ -z "$bin_dir" ] || [ ${#platforms[@]} -eq 1 ] || die "--bin-dir holds one platform's binaries; give one --platform"
[ -z "$render_only" ] || { [ -z "$bin_dir" ] && [ ${#platforms[@]} -eq 0 ]; } ||
  die "--render-only builds nothing; it takes no --platform or --bin-dir"

# The Rust target each platform is built for, and whether it takes `cargo zigbuild` or plain cargo.
rust_target() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-musl ;;
    linux/arm64) echo aarch64-unknown-linux-musl ;;
    darwin/amd64) echo x86_64-apple-darwin ;;
    darwin/arm64) echo aarch64-apple-darwin ;;
    windows/amd64) if [ "$host_os" = windows ]; then echo x86_64-pc-windows-msvc; else echo x86_64-pc-windows-gnu; fi ;;
  esac
}
exe_of() { case "$1" in windows/*) echo .exe ;; *) echo "" ;; esac; }
tools="kubectl-kkp kubectl-kkp-mirror kubectl-kkp-retarget kubectl-kkp-seedproxy kubectl-kkp-audit"

if [ -z "$bin_dir" ] && [ -z "$render_only" ]; then
  zig_targets=()
  cargo_targets=()
  for p in "${platforms[@]}"; do
    t=$(rust_target "$p")
    case "$p" in
      darwin/*) [ "$host_os" = darwin ] ||
        die "$p binaries link against Apple's SDK (Security, CoreFoundation); build them on macOS"
        cargo_targets+=("$t") ;;
      windows/*) if [ "$host_os" = windows ]; then cargo_targets+=("$t"); else zig_targets+=("$t"); fi ;;
      *) zig_targets+=("$t") ;;
    esac
  done
  if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed)
    for t in ${zig_targets[@]+"${zig_targets[@]}"} ${cargo_targets[@]+"${cargo_targets[@]}"}; do
      grep -qx "$t" <<<"$installed" || { say "rustup target add $t"; rustup target add "$t" >&2; }
    done
  fi
  if [ ${#zig_targets[@]} -gt 0 ]; then
    cargo zigbuild --help >/dev/null 2>&1 ||
      die "cargo zigbuild is missing (it links the Linux and Windows binaries): pip install cargo-zigbuild"
    say "cargo zigbuild --release for ${zig_targets[*]}"
    args=(); for t in "${zig_targets[@]}"; do args+=(--target "$t"); done
    (cd "$root" && cargo zigbuild --release --locked --bins "${args[@]}")
  fi
  if [ ${#cargo_targets[@]} -gt 0 ]; then
    say "cargo build --release for ${cargo_targets[*]}"
    args=(); for t in "${cargo_targets[@]}"; do args+=(--target "$t"); done
    (cd "$root" && cargo build --release --locked --bins "${args[@]}")
  fi
fi

if command -v sha256sum >/dev/null; then sha256() { sha256sum "$1" | cut -d' ' -f1; }
else sha256() { shasum -a 256 "$1" | cut -d' ' -f1; }
fi

# What `file` says about a binary of each platform (one pattern, case-sensitive).
file_pattern() {
  case "$1" in
    linux/amd64) echo 'ELF 64-bit.*x86-64' ;;
    linux/arm64) echo 'ELF 64-bit.*ARM aarch64' ;;
    darwin/amd64) echo 'Mach-O 64-bit.*x86_64' ;;
    darwin/arm64) echo 'Mach-O 64-bit.*arm64' ;;
    windows/amd64) echo 'PE32\+ executable.*x86-64' ;;
  esac
}

[ -n "$render_only" ] || command -v file >/dev/null ||
  die "file is missing (it checks every binary is of the platform it is packed for): apt-get install file"
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
stage_root=$(mktemp -d)
trap 'rm -rf "$stage_root"' EXIT

# pack OS/ARCH DIR [static]: the archive of one platform from the binaries in DIR.
pack() {
  local plat=$1 dir=$2 static=${3:-} exe stage name archive files tool desc
  exe=$(exe_of "$plat")
  name="kubectl-kkp_${tag}_${plat/\//_}"
  stage="$stage_root/$name"
  mkdir -p "$stage"
  for tool in $tools; do
    [ -f "$dir/$tool$exe" ] || die "$dir/$tool$exe is missing"
    desc=$(file -b "$dir/$tool$exe")
    grep -Eq "$(file_pattern "$plat")" <<<"$desc" || die "$dir/$tool$exe is not a $plat binary: $desc"
    if [ -n "$static" ] && [[ $plat == linux/* ]] && ! grep -q 'static' <<<"$desc"; then
      die "$dir/$tool$exe is not statically linked: $desc"
    fi
    cp "$dir/$tool$exe" "$stage/"
    chmod 0755 "$stage/$tool$exe"
  done
  for shim in kubectl_complete-kkp kubectl_complete-kkp-mirror kubectl_complete-kkp-retarget \
    kubectl_complete-kkp-seedproxy kubectl_complete-kkp-audit; do
    install -m 0755 "$root/plugins/kkp/kubectl_complete-kkp" "$stage/$shim"
  done
  [ -f "$root/LICENSE" ] || die "LICENSE is missing (krew requires one in the archive)"
  install -m 0644 "$root/LICENSE" "$stage/LICENSE"
  if [ -f "$root/README.md" ]; then
    install -m 0644 "$root/README.md" "$stage/README.md"
  else
    say "warning: README.md is missing; the archive has none"
  fi
  install -m 0755 "$root/helm-plugin/kkp.sh" "$stage/kkp.sh"
  sed "s/^version: .*/version: \"${tag#v}\"/" "$root/helm-plugin/plugin.yaml" >"$stage/plugin.yaml"
  chmod 0644 "$stage/plugin.yaml"

  archive="$out_dir/$name.tar.gz"
  # shellcheck disable=SC2012 # the staged names are ours: plain words
  files=$(cd "$stage" && ls -A | LC_ALL=C sort)
  if tar --version 2>/dev/null | grep -q 'GNU tar'; then
    # Same inputs, same bytes: fixed order, owner and time stamps.
    # shellcheck disable=SC2086
    tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner \
      --mtime="@${SOURCE_DATE_EPOCH:-0}" -cf - $files | gzip -n -9 >"$archive.tmp"
  else
    # shellcheck disable=SC2086
    tar -C "$stage" -cf - $files | gzip -n -9 >"$archive.tmp"
  fi
  mv "$archive.tmp" "$archive"
  echo "$(sha256 "$archive")  $name.tar.gz" >"$archive.sha256"
  say "wrote $archive ($(cut -d' ' -f1 "$archive.sha256"))"
}

if [ -z "$render_only" ]; then
  if [ -n "$bin_dir" ]; then
    pack "${platforms[0]}" "$bin_dir"
  else
    for p in "${platforms[@]}"; do
      pack "$p" "${CARGO_TARGET_DIR:-$root/target}/$(rust_target "$p")/release" static
    done
  fi
fi

# Render the manifest: one block per platform whose archive for this tag is in the out dir.
base_url=${KKP_RELEASE_BASE_URL:-https://github.com/kubectl-kkp/kubectl-kkp/releases/download/$tag}
shas=""
for plat in $all_platforms; do
  f="$out_dir/kubectl-kkp_${tag}_${plat/\//_}.tar.gz"
  if [ -f "$f" ]; then
    sum=$(sha256 "$f")
    if [ -f "$f.sha256" ] && [ "$(cut -d' ' -f1 "$f.sha256")" != "$sum" ]; then
      die "$f does not match its $f.sha256"
    fi
    shas="$shas ${plat/\//_}=$sum"
  else
    say "no archive for $plat in $out_dir; left out of the manifest"
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
if grep -q '{{' "$manifest.tmp"; then rm -f "$manifest.tmp"; die "unfilled placeholder in the rendered manifest"; fi
if ! grep -q '^  - selector:' "$manifest.tmp"; then
  rm -f "$manifest.tmp"; die "no platform archive for $tag in $out_dir; nothing to put in the manifest"
fi
mv "$manifest.tmp" "$manifest"
say "wrote $manifest ($(grep -c '^  - selector:' "$manifest") platforms)"
