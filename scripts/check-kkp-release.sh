#!/usr/bin/env bash
# Checks kubectl-kkp against a KKP release's charts, whose subchart dependencies are already vendored
# (charts/*.tgz or unpacked; nothing is downloaded here):
#
#  1. discovery: `kubectl-kkp-mirror REG --dry-run --offline` over the charts with VALUES_FILE, compared
#     with the images of KKP's own golden renders (`<chart>/test/*.yaml.out`) of the tests that use that
#     same values file, and with the three images KKP's mirror-images misses (cert-manager's acmesolver,
#     the Envoy Gateway data-plane envoy, envoy ratelimit);
#  2. retarget: `kubectl-kkp-retarget --registry REG` with the whole charts dir on a copy of VALUES_FILE, a
#     rerun on the result that must change nothing, then every chart of the values file's stack rendered
#     with the result by plain `helm template`; every image outside REG must be one the leak check named;
#  3. audit: the stack's charts rendered with the stock VALUES_FILE as installed releases in the test
#     suite's API server (an ignored test, needs cargo): every leak names the key `retarget -o set` sets.
#
# Usage: scripts/check-kkp-release.sh KKP_CHARTS_DIR VALUES_FILE
# Environment:
#   KKP_BIN_DIR   where the kubectl-kkp-* binaries are (default: target/release, else target/debug)
#   HELM          helm binary (default: helm)
#   REG           private registry used for the plan and retarget (default: reg.example:5000)
#   CHECK_CHARTS  space-separated chart paths below KKP_CHARTS_DIR to leave out of the retarget step
#                 (default: none; retarget keeps the charts of the values file's stack by itself: mla/*
#                 and iap for KKP's MLA values file, told by its `mlaSecrets`, all but mla/ otherwise)
#   KEEP_WORK     set to keep the work directory (printed at the end)
# Exit status: 0 when nothing is missing and every rendered non-REG image was named by the leak check;
# 1 otherwise; 2 on bad usage.
set -euo pipefail

if [[ $# -ne 2 || ! -d $1 || ! -f $2 ]]; then
  echo "usage: $0 KKP_CHARTS_DIR VALUES_FILE" >&2
  exit 2
fi
charts=$(cd "$1" && pwd)
values=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${KKP_BIN_DIR:-}
if [[ -z $bin ]]; then
  for d in "$here/target/release" "$here/target/debug"; do
    [[ -x $d/kubectl-kkp-mirror ]] && bin=$d && break
  done
fi
[[ -x ${bin:-}/kubectl-kkp-mirror && -x $bin/kubectl-kkp-retarget ]] || {
  echo "no kubectl-kkp-mirror/-retarget binaries (build first or set KKP_BIN_DIR)" >&2
  exit 2
}
helm=${HELM:-helm}
reg=${REG:-reg.example:5000}
for tool in jq "$helm"; do
  command -v "$tool" >/dev/null || { echo "$tool not found" >&2; exit 2; }
done
work=$(mktemp -d)
[[ -n ${KEEP_WORK:-} ]] || trap 'rm -rf "$work"' EXIT
status=0

# --- 1. discovery --------------------------------------------------------------------------------------
# Golden renders of KKP's own charts (not of vendored subcharts), split by the tests' values file.
mkdir -p "$work/golden-values" "$work/golden-all"
while IFS= read -r out; do
  rel=${out#"$charts"/}
  case /$rel in */charts/*/charts/* | */charts/*.tgz) continue ;; esac
  [[ $rel == */test/*.yaml.out ]] || continue
  [[ $rel == */charts/* ]] && continue
  name=${rel//\//_}
  cp "$out" "$work/golden-all/$name.yaml"
  if cmp -s "${out%.out}" "$values"; then cp "$out" "$work/golden-values/$name.yaml"; fi
done < <(find "$charts" -name '*.yaml.out' -path '*/test/*' | sort)
n_tests=$(find "$work/golden-values" -name '*.yaml' | wc -l)

plan() { "$bin/kubectl-kkp-mirror" "$reg" --dry-run -o json --offline "$@"; }
sources() { jq -r '.images[].source' "$1" | sort -u; }
plan --manifests "$work/golden-all" >"$work/golden-all.json"
sources "$work/golden-all.json" >"$work/golden-all.txt"
if ((n_tests > 0)); then
  plan --manifests "$work/golden-values" >"$work/golden-values.json"
  sources "$work/golden-values.json" >"$work/golden-values.txt"
else
  : >"$work/golden-values.txt"
fi
grep -h 'image:' "$work"/golden-all/*.yaml | sed -E 's/^[ -]*image: *//; s/["'\'']//g' | sort -u |
  grep -v '^$' >"$work/golden-grep.txt" || true

if ! plan --charts-path "$charts" --helm-values "$values" >"$work/ours.json" 2>"$work/ours.err"; then
  echo "DISCOVERY FAILED:" && cat "$work/ours.err"
  status=1
fi
sources "$work/ours.json" >"$work/ours.txt" 2>/dev/null || : >"$work/ours.txt"

missing=$(comm -23 "$work/golden-values.txt" "$work/ours.txt")
beyond=$(comm -13 "$work/golden-all.txt" "$work/ours.txt")
not_ce=$(comm -23 "$work/golden-all.txt" "$work/ours.txt")
echo "== discovery with $(basename "$values") (registry $reg)"
echo "golden renders: $(find "$work/golden-all" -name '*.yaml' | wc -l) files, $(wc -l <"$work/golden-all.txt") images" \
  "($(wc -l <"$work/golden-grep.txt") distinct 'image:' strings by grep)"
echo "golden renders of tests using this values file: $n_tests files, $(wc -l <"$work/golden-values.txt") images"
echo "our plan: $(wc -l <"$work/ours.txt") images, $(jq '.warnings | length' "$work/ours.json" 2>/dev/null || echo '?') warnings"
echo "missing (in those goldens, not in our plan): $(grep -c . <<<"$missing" || true)"
[[ -n $missing ]] && sed 's/^/  MISSING /' <<<"$missing" && status=1
for want in 'cert-manager-acmesolver:' 'envoyproxy/envoy:' 'envoyproxy/ratelimit:'; do
  if grep -q "$want" "$work/golden-all.txt" && ! grep -q "$want" "$work/ours.txt"; then
    echo "  MISSING the image KKP's own tool misses: $want"
    status=1
  fi
done
echo "in goldens of other test values only (not expected with this values file):"
sed 's/^/  /' <<<"${not_ce:-}" | grep . || echo "  (none)"
echo "in our plan but in no golden (charts without goldens, or values-dependent; check by origin):"
if [[ -n $beyond ]]; then
  while IFS= read -r img; do
    jq -r --arg i "$img" '.images[] | select(.source == $i) |
      "  \(.source)  <- \([.origins[] | "\(.name) \(.object)"] | unique | join(", "))"' "$work/ours.json"
  done <<<"$beyond"
else
  echo "  (none)"
fi

# --- 2. retarget and leak check ------------------------------------------------------------------------
# The whole charts dir, as a user types it after unpacking the release: retarget itself keeps the charts
# of the stack the values file belongs to (KKP's MLA values file: mla/* and iap; any other: all but mla/).
skip=${CHECK_CHARTS-}
mla_values=false
grep -q '^mlaSecrets:' "$values" && mla_values=true
in_stack() { # chart path below charts/ -> 0 when the values file's stack installs it
  if $mla_values; then [[ $1 == mla/* || $1 == iap ]]; else [[ $1 != mla/* ]]; fi
}
mkdir -p "$work/charts"
cp -a "$charts/." "$work/charts/"
# KKP's test/test.sh links point outside the charts directory; helm refuses dangling links.
find "$work/charts" -xtype l -delete
for c in $skip; do rm -rf "${work:?}/charts/$c"; done
cp "$values" "$work/values.yaml"
echo
echo "== retarget to $reg (the whole charts dir, stack: $($mla_values && echo usercluster-mla || echo main); left out by CHECK_CHARTS: ${skip:-none})"
retarget() {
  "$bin/kubectl-kkp-retarget" --registry "$reg" --charts-path "$work/charts" \
    --helm-values "$work/values.yaml" --helm-binary "$(command -v "$helm")" "$@"
}
rc=0
retarget -o "$work/checked.yaml" --yes >/dev/null 2>"$work/leaks.err" || rc=$?
grep -E '^  chart [^:]+: ' "$work/leaks.err" | sed -E 's/^  chart ([^:]+): .*: ([^ ]+)$/\1 \2/' |
  sort -u >"$work/leaks.txt" || true
if ((rc > 1)) || { ((rc == 1)) && [[ ! -s $work/leaks.txt ]]; }; then
  echo "RETARGET FAILED (exit $rc):" && cat "$work/leaks.err"
  exit 1
fi
echo "leak check: exit $rc, $(wc -l <"$work/leaks.txt") leaked (chart, image) pairs, $(cut -d' ' -f2 "$work/leaks.txt" | sort -u | wc -l) images"
if ((rc == 1)) && ! grep -q 'overwriteRegistry' "$work/leaks.err"; then
  echo "  the leak report gives no advice (overwriteRegistry / containerd mirror)"
  status=1
fi
# The result, written even with leaks, for an independent render.
retarget -o "$work/out.yaml" --yes --allow-leak '*' >/dev/null 2>"$work/retarget.err" || {
  echo "RETARGET FAILED:" && cat "$work/retarget.err"
  exit 1
}
# A rerun on the result changes nothing (issue 18: registry keys became REG/kkp).
rerun=0
"$bin/kubectl-kkp-retarget" --registry "$reg" --charts-path "$work/charts" --helm-values "$work/out.yaml" \
  --helm-binary "$(command -v "$helm")" --allow-leak '*' --diff >"$work/rerun.diff" 2>"$work/rerun.err" || rerun=$?
if ((rerun != 0)); then
  echo "RERUN WOULD CHANGE THE RESULT (exit $rerun):" && cat "$work/rerun.diff" "$work/rerun.err"
  status=1
else
  echo "rerun on the result: no change (retarget --diff exit 0)"
fi
mkdir -p "$work/rendered"
: >"$work/outside.txt"
: >"$work/grep-outside.txt"
while IFS= read -r chart; do
  rel=${chart#"$work/charts/"}
  [[ $chart == "$work/charts" ]] && rel=$(basename "$charts")
  case /$rel/ in */charts/*) continue ;; esac
  in_stack "$rel" || continue
  file="$work/rendered/${rel//\//_}.yaml"
  if ! "$helm" template "$(basename "$chart")" "$chart" --values "$work/out.yaml" >"$file" 2>"$file.err"; then
    echo "  RENDER FAILED $rel: $(head -c 300 "$file.err")"
    status=1
    continue
  fi
  # Every image the scanner finds outside REG (test hooks left out, as the leak check does) ...
  plan --manifests "$file" | jq -r '.images[] | .source as $s | .origins[] | "\($s)"' 2>/dev/null |
    grep -v "^$reg/" | sort -u | sed "s|^|$rel |" >>"$work/outside.txt" || true
  # ... and, as an independent look, every `image:` string outside REG the scanner did not report.
  grep -h 'image:' "$file" | sed -E 's/^[ -]*image: *//; s/["'\'']//g' | grep . | grep -v "^$reg/" |
    sort -u | sed "s|^|$rel |" >>"$work/grep-outside.txt" || true
done < <(find "$work/charts" -name Chart.yaml -exec dirname {} \; | sort)
sort -u -o "$work/outside.txt" "$work/outside.txt"
# Compare on normalised names: the leak check prints images as rendered.
norm() {
  sed -E 's#^([^ ]+) ([^/.:]+(:[^/]*)?)$#\1 docker.io/library/\2#; s#^([^ ]+) ([^/.:]+/[^/]+)$#\1 docker.io/\2#
    s#^([^ ]+) docker\.io/([^/]+)$#\1 docker.io/library/\2#; s#^([^ ]+ [^:@]+)$#\1:latest#'
}
norm <"$work/leaks.txt" | sort -u >"$work/leaks.norm"
norm <"$work/outside.txt" | sort -u >"$work/outside.norm"
unexplained=$(comm -23 "$work/outside.norm" "$work/leaks.norm")
unrendered=$(comm -13 "$work/outside.norm" "$work/leaks.norm")
echo "helm template of every chart with the result: $(cut -d' ' -f2 "$work/outside.norm" | sort -u | grep -c . || true) images outside $reg" \
  "(in $(cut -d' ' -f1 "$work/outside.norm" | sort -u | grep -c . || true) charts)"
echo "  not named by the leak check: $(grep -c . <<<"$unexplained" || true)"
[[ -n $unexplained ]] && sed 's/^/    NOT NAMED /' <<<"$unexplained" && status=1
[[ -n $unrendered ]] && sed 's/^/    named but not rendered outside (check) /' <<<"$unrendered"
norm <"$work/grep-outside.txt" | sort -u >"$work/grep-outside.norm"
grep_only=$(comm -23 "$work/grep-outside.norm" "$work/outside.norm")
echo "  'image:' strings outside $reg found by grep but not by the scanner: $(grep -c . <<<"$grep_only" || true)" \
  "(expected: Helm test hooks only, which neither discovery nor the leak check reads)"
[[ -n $grep_only ]] && sed 's/^/    /' <<<"$grep_only"
# 3. audit (issue 20): the stack's charts rendered with the stock values file, stored in the test suite's
# loopback API server as installed releases; every leaked chart image must name the values key that
# `retarget -o set` sets, but the hard-coded ones the leak check named above.
if command -v cargo >/dev/null; then
  hard=$(cut -d' ' -f2 "$work/leaks.txt" | sort -u | tr '\n' ' ')
  if KKP_CHARTS_DIR="$work/charts" KKP_VALUES="$values" KKP_HARD_CODED="$hard" \
    cargo test -q --manifest-path "$here/Cargo.toml" --locked --test integration -- --ignored --nocapture \
    audit_names_the_key_retarget_sets_for_every_chart_image_of_a_kkp_release >"$work/audit.log" 2>&1; then
    echo "audit: $(grep -m1 'charts,' "$work/audit.log")"
  else
    echo "AUDIT CHECK FAILED:" && grep -v '^ *[0-9]*: \|^ *at ' "$work/audit.log" | tail -30
    status=1
  fi
else
  echo "audit: skipped (no cargo to run the test suite's API server)"
fi
echo "named leaks (hard-coded in templates):"
sed 's/^/  /' "$work/leaks.txt"
grep -m1 'No values key' "$work/leaks.err" | sed 's/^ */  advice: /' || true
[[ -n ${KEEP_WORK:-} ]] && echo "work directory: $work"
exit $status
