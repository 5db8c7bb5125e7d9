#!/bin/sh
# Launcher for `helm kkp …`: the kubectl-kkp in this plugin's directory (a release archive is a complete
# Helm plugin), else the one on PATH (e.g. from `kubectl krew install kkp`). Arguments and exit code
# pass through unchanged.
if [ -x "$HELM_PLUGIN_DIR/kubectl-kkp" ]; then
  exec "$HELM_PLUGIN_DIR/kubectl-kkp" "$@"
fi
if command -v kubectl-kkp >/dev/null 2>&1; then
  exec kubectl-kkp "$@"
fi
echo "error: kubectl-kkp is neither in $HELM_PLUGIN_DIR nor on PATH; install it first (kubectl krew install kkp, or unpack the release archive)" >&2
exit 127
