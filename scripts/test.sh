#!/usr/bin/env bash
# The project's test command: makes sure the real peers the tests start are installed (helm 3 and 4,
# Debian's docker-registry, skopeo, openssl, htpasswd), then runs every test of the workspace.
# usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in docker-registry skopeo openssl htpasswd; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${missing[*]} from Debian" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker-registry skopeo openssl apache2-utils >/dev/null
  else
    echo "test.sh: missing ${missing[*]}; install: sudo apt-get install docker-registry skopeo openssl apache2-utils" >&2
    exit 1
  fi
fi
if ! { command -v helm3 && command -v helm4; } >/dev/null; then
  if [ -w /usr/local/bin ]; then scripts/install-helm.sh /usr/local/bin; else scripts/install-helm.sh "$HOME/.local/bin"; export PATH="$HOME/.local/bin:$PATH"; fi
fi
exec cargo test --workspace --locked "$@"
