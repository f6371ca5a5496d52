#!/usr/bin/env bash
# Install trackiod and its development tools into ./.venv (created if missing). Idempotent: when everything
# pyproject.toml asks for (runtime, dev, the torch CPU build, and the integrations and bench extras the tests
# use) is already installed, and trackiod is installed in editable mode from this checkout, it changes nothing.
# Works from any directory. Override the interpreter with PYTHON=python3.12.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
    BASE="${PYTHON:-python3}"
    if ! "$BASE" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        echo "setup: trackiod needs Python 3.10 or newer; '$BASE' is $("$BASE" --version 2>&1 || echo missing)." >&2
        echo "setup: set PYTHON to a suitable interpreter, e.g. PYTHON=python3.11 $0" >&2
        exit 1
    fi
    echo "setup: creating $VENV with $("$BASE" --version 2>&1)"
    "$BASE" -m venv "$VENV"
fi

# Exit 0 when the venv already satisfies pyproject.toml (runtime and dev dependencies) and holds an editable
# install of this checkout; non-zero otherwise (then pip runs).
satisfied() {
    # -I: not the current directory on sys.path, where a build's trackiod.egg-info would shadow the install.
    "$PY" -I - "$ROOT" <<'PYEOF' 2>/dev/null
import json
import sys
from importlib import metadata
from pathlib import Path

root = Path(sys.argv[1])
try:
    import tomllib
    from packaging.requirements import Requirement
except ImportError:
    sys.exit(1)
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
extras = project.get("optional-dependencies", {})
wanted = list(project.get("dependencies", [])) + list(extras.get("dev", [])) + list(extras.get("torch", []))
wanted += list(extras.get("integrations", [])) + list(extras.get("bench", []))
for spec in wanted:
    req = Requirement(spec)
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
dist = metadata.distribution("trackiod")
if dist.version != project["version"]:
    sys.exit(1)
direct = json.loads(dist.read_text("direct_url.json") or "{}")
if direct.get("url") != root.as_uri() or not direct.get("dir_info", {}).get("editable"):
    sys.exit(1)
PYEOF
}

# The browser tests drive Debian's chromium (never a browser downloaded by Playwright). Install it when it is
# missing and we may (root with apt-get, as on CI); otherwise the browser tests skip and say why.
install_chromium() {
    [[ -x /usr/bin/chromium ]] && return 0
    if [[ "${TRACKIOD_SKIP_CHROMIUM:-0}" == "1" ]]; then
        echo "setup: TRACKIOD_SKIP_CHROMIUM=1: not installing chromium; browser tests will skip"
        return 0
    fi
    if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: /usr/bin/chromium is missing and this is not root with apt-get; browser tests will skip" \
            "(install Debian's chromium package to run them)"
        return 0
    fi
    echo "setup: installing Debian's chromium for the browser tests (apt-get install chromium)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
        echo "setup: apt-get could not install chromium; browser tests will skip" >&2
    fi
}
install_chromium

if satisfied; then
    echo "setup: $VENV is up to date"
else
    echo "setup: installing trackiod (editable) with its dev dependencies, torch (CPU), the integrations' frameworks" \
        "and the peer trackers of the benchmarks into $VENV"
    "$PY" -m pip install --quiet -e "$ROOT[dev,torch,integrations,bench]"
    echo "setup: done"
fi
