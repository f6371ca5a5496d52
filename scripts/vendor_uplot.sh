#!/usr/bin/env bash
# Fetch the pinned uPlot release from the npm registry and copy what the dashboard serves into
# trackiod/dashboard/static/vendor/uplot/: the ES module build, its stylesheet and its licence. Run it to
# refresh the vendored copy (change UPLOT_VERSION, run, check the dashboard, commit). Needs npm or curl+tar.
# Works from any directory.
set -euo pipefail

UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/trackiod/dashboard/static/vendor/uplot"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
if command -v npm >/dev/null 2>&1; then
    npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null
else
    registry="${NPM_CONFIG_REGISTRY:-https://registry.npmjs.org}"
    curl -fsSL -o "uplot-$UPLOT_VERSION.tgz" "${registry%/}/uplot/-/uplot-$UPLOT_VERSION.tgz"
fi
tar -xzf "uplot-$UPLOT_VERSION.tgz"

got="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' package/package.json | head -n1)"
if [[ "$got" != "$UPLOT_VERSION" ]]; then
    echo "vendor_uplot: asked for $UPLOT_VERSION, the tarball says $got" >&2
    exit 1
fi

mkdir -p "$DEST"
cp package/dist/uPlot.esm.js "$DEST/uPlot.esm.js"
cp package/dist/uPlot.min.css "$DEST/uPlot.min.css"
cp package/LICENSE "$DEST/LICENSE"
echo "$UPLOT_VERSION" > "$DEST/VERSION"
sha256sum "$DEST/uPlot.esm.js" "$DEST/uPlot.min.css" | sed "s#$DEST/##" > "$DEST/SHA256SUMS"
echo "vendor_uplot: uPlot $UPLOT_VERSION in $DEST"
