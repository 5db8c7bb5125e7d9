#!/usr/bin/env bash
# Compares the embedded KKP catalog for one release with that release's sources.
#
#   scripts/check-kkp-catalog.sh KKP_DIR TAG          report every difference (exit 1 if any)
#   scripts/check-kkp-catalog.sh --facts KKP_DIR TAG  print the release's facts (tests/fixtures/kkp/releases/TAG.txt)
#
# KKP_DIR is a kubermatic/kubermatic checkout at TAG (a `git worktree` or `git archive` of the tag). The facts
# read from it: the images in pkg/resources/test/fixtures (rendered by a test build whose KKP tag is
# v0.0.0-test, read here as TAG), the default Kubernetes versions (pkg/defaulting/configuration.go), the CNI
# versions (pkg/cni/version.go), the machine-controller and operating-system-manager tags. The plan is
# `kubectl-kkp-mirror --dry-run --kkp-version TAG -o json` of $KKP_BIN (default target/debug/kubectl-kkp-mirror).
set -euo pipefail

facts_only=false
if [[ ${1:-} == --facts ]]; then
  facts_only=true
  shift
fi
if [[ $# -ne 2 ]]; then
  echo "usage: $0 [--facts] KKP_DIR TAG" >&2
  exit 2
fi
dir=$1
tag=$2
for f in pkg/defaulting/configuration.go pkg/cni/version.go pkg/resources/test/fixtures; do
  [[ -e $dir/$f ]] || { echo "error: $dir/$f: not found (is $dir a KKP checkout?)" >&2; exit 2; }
done

facts() {
  echo "# Facts of kubermatic/kubermatic $tag, printed by scripts/check-kkp-catalog.sh --facts."
  # Default Kubernetes versions: DefaultKubernetesVersioning.Versions.
  awk '/DefaultKubernetesVersioning = /{d=1} d&&/Versions: /{v=1;next} v&&/^\t\t},/{exit} v' \
    "$dir/pkg/defaulting/configuration.go" | grep -o 'v[0-9][0-9.]*' | sed 's/^v/kubernetes /'
  # CNI versions: supported + deprecated, per type.
  awk '/(supported|deprecated)CNIPluginVersions = /{d=1} d&&/^\t}/{d=0} d' "$dir/pkg/cni/version.go" |
    sed 's#//.*##' | awk '
      /CNIPluginTypeCanal/ {k="canal"} /CNIPluginTypeCilium/ {k="cilium"} /CNIPluginTypeNone/ {k=""}
      k { while (match($0, /"[^"]*"/)) { print "cni", k, substr($0, RSTART+1, RLENGTH-2); $0 = substr($0, RSTART+RLENGTH) } }' |
    sort -u -k2,2 -k3,3V
  grep -h -o 'machine-controller:v[0-9.]*\|operating-system-manager:v[0-9.]*' \
    "$dir"/pkg/resources/test/fixtures/deployment-*-machine-controller.yaml \
    "$dir"/pkg/resources/test/fixtures/deployment-*-operating-system-manager.yaml 2>/dev/null |
    sort -u | sed 's/:/ /;s/^/component /'
  # Fixture images: <kind>-<provider>-<version>-<name>.yaml; vcd is vmwareclouddirector.
  for f in "$dir"/pkg/resources/test/fixtures/*.yaml; do
    IFS=- read -r _ provider version _ <<<"${f##*/}"
    [[ $provider == vcd ]] && provider=vmwareclouddirector
    grep -h -o 'image: *[^ ]*' "$f" | sed 's/image: *//;s/"//g' |
      sed "s/:v0\.0\.0-test\$/:$tag/;s/^/fixture $version $provider /" || true
  done | sort -u
}

if $facts_only; then
  facts
  exit 0
fi

bin=${KKP_BIN:-target/debug/kubectl-kkp-mirror}
[[ -x $bin ]] || { echo "error: $bin: not built (cargo build, or set KKP_BIN)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
facts >"$work/facts"
diffs=0
report() { echo "$tag: $*"; diffs=$((diffs + 1)); }
sources() { jq -r '.images[].source' "$1" | sort -u; }

# Default Kubernetes versions: the plan without a configuration runs kube-apiserver for each.
"$bin" --dry-run --kkp-version "$tag" -o json >"$work/default.json" 2>>"$work/stderr"
jq -r '.kkpVersions // [] | .[]' "$work/default.json" | grep -qx "$tag" ||
  report "plan does not name release $tag: $(jq -c '.kkpVersions' "$work/default.json")"
awk '$1=="kubernetes"{print $2}' "$work/facts" | sort -u >"$work/k8s.want"
sources "$work/default.json" | sed -n 's#^registry.k8s.io/kube-apiserver:v##p' | sort -u >"$work/k8s.got"
comm -23 "$work/k8s.want" "$work/k8s.got" | sed 's/^/default Kubernetes version missing from the plan: /' >"$work/r"
comm -13 "$work/k8s.want" "$work/k8s.got" | sed 's/^/plan has a Kubernetes version KKP does not default to: /' >>"$work/r"

# CNI versions, as the catalog lists them.
"$bin" --list-kkp-versions -o json >"$work/releases.json"
jq -r --arg t "$tag" '.[] | select(.version==$t) | .cni | to_entries[] | .key as $k | .value[] | "cni \($k) \(.)"' \
  "$work/releases.json" | grep -v '^cni none' | sort -u >"$work/cni.got"
grep '^cni ' "$work/facts" | sort -u >"$work/cni.want"
comm -23 "$work/cni.want" "$work/cni.got" | sed 's/^/catalog misses CNI version: /' >>"$work/r"
comm -13 "$work/cni.want" "$work/cni.got" | sed 's/^/catalog has a CNI version KKP does not: /' >>"$work/r"

# Fixture images, per provider, with the fixtures' Kubernetes versions configured.
for provider in $(awk '$1=="fixture"{print $3}' "$work/facts" | sort -u); do
  {
    printf 'apiVersion: kubermatic.k8c.io/v1\nkind: KubermaticConfiguration\nmetadata: {name: kubermatic, namespace: kubermatic}\nspec:\n  versions:\n    versions:\n'
    awk -v p="$provider" '$1=="fixture" && $3==p {print "    - " $2}' "$work/facts" | sort -u
  } >"$work/config.yaml"
  "$bin" --dry-run --kkp-version "$tag" --config "$work/config.yaml" --provider-filter "$provider" -o json 2>>"$work/stderr" \
    >"$work/p.json"
  sources "$work/p.json" >"$work/p.got"
  awk -v p="$provider" '$1=="fixture" && $3==p {print $4}' "$work/facts" | sort -u >"$work/p.want"
  comm -23 "$work/p.want" "$work/p.got" | sed "s/^/plan misses $provider fixture image: /" >>"$work/r"
done
while read -r line; do report "$line"; done <"$work/r"
if ((diffs)); then
  echo "$tag: $diffs difference(s)" >&2
  exit 1
fi
echo "$tag: catalog matches the sources"
