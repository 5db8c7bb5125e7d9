#!/usr/bin/env bash
# Extracts what worker nodes download (CNI version per default OSP, the crictl rule and its fallback)
# from an operating-system-manager checkout at TAG, and compares it with that version's entry in
# shared/catalog/node-binaries.yaml. Exit 1 on a difference (the diff is printed), 2 on bad usage.
#
# usage: scripts/check-node-binaries.sh OSM_REPO TAG...
#   OSM_REPO: a git directory of kubermatic/operating-system-manager with its tags (bare is fine).
#   PRINT=1 prints the extracted entry instead of comparing (to add a new OSM release to the data file).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 OSM_REPO TAG..." >&2; exit 2; }
REPO=$1; shift
DATA=shared/catalog/node-binaries.yaml

extract() { # tag -> the entry as node-binaries.yaml spells it, shippedBy left out
  local tag=$1 files f chain first=""
  files=$(git -C "$REPO" ls-tree --name-only "$tag" deploy/osps/default/ | grep '/osp-.*\.yaml$') ||
    { echo "check-node-binaries: $tag has no deploy/osps/default/osp-*.yaml" >&2; return 2; }
  echo "  - version: $tag"
  echo "    cni:"
  for f in $files; do
    local name cni
    name=$(basename "$f" .yaml)
    cni=$(git -C "$REPO" show "$tag:$f" | sed -n 's/.*CNI_VERSION="${CNI_VERSION:-\(v[0-9.]*\)}".*/\1/p' | sort -u)
    [ "$(printf '%s\n' "$cni" | grep -c .)" = 1 ] ||
      { echo "check-node-binaries: $tag $f: expected one CNI_VERSION default, found: ${cni:-none}" >&2; return 1; }
    echo "$cni $name"
  done | sort -V | awk '{ if ($1 != v) { if (v != "") print "      " v ": [" l "]"; v = $1; l = $2 } else l = l ", " $2 }
                       END { print "      " v ": [" l "]" }'
  # The crictl chain: each `semverCompare "X" .KubeVersion` followed by its CRI_TOOLS_RELEASE, then the
  # else branch. Every OSP must carry the same chain.
  for f in $files; do
    chain=$(git -C "$REPO" show "$tag:$f" | awk '
      /semverCompare "[^"]*" \.KubeVersion/ && !done { match($0, /"[^"]*"/); when = substr($0, RSTART, RLENGTH); seen = 1; next }
      /CRI_TOOLS_RELEASE="v[0-9.]+"/ && !done {
        match($0, /v[0-9.]+/); rel = substr($0, RSTART, RLENGTH)
        if (when != "") { print "      - {when: " when ", release: " rel "}"; when = "" }
        else if (inelse) { print "    crictlFallback: " rel; done = 1 }
        next }
      /\{\{-? *else *-?\}\}/ && !done && seen { inelse = 1 }')
    if [ -z "$first" ]; then first=$chain; elif [ "$chain" != "$first" ]; then
      echo "check-node-binaries: $tag $f: crictl chain differs from the other OSPs'" >&2; return 1; fi
  done
  [ -n "$first" ] || { echo "check-node-binaries: $tag: no crictl chain found" >&2; return 1; }
  echo "    crictl:"
  printf '%s\n' "$first"
}

recorded() { # tag -> that entry of the data file, shippedBy and comments left out
  awk -v t="  - version: $1" '$0 == t { on = 1; print; next } /^  - version:/ { on = 0 } on' "$DATA" |
    grep -v -e '^ *#' -e 'shippedBy:'
}

status=0
for tag in "$@"; do
  want=$(extract "$tag") || exit $?
  if [ -n "${PRINT:-}" ]; then printf '%s\n' "$want"; continue; fi
  have=$(recorded "$tag" || true)
  if [ -z "$have" ]; then echo "check-node-binaries: $tag: no entry in $DATA" >&2; status=1; continue; fi
  # crictlFallback is printed inside the chain; compare as sorted line sets in the data file's order.
  if diff <(printf '%s\n' "$want" | sort) <(printf '%s\n' "$have" | sort) >/dev/null; then
    echo "ok: $tag"
  else
    echo "DIFF: $tag (< $REPO, > $DATA)"; diff <(printf '%s\n' "$want") <(printf '%s\n' "$have") || true
    status=1
  fi
done
exit $status
