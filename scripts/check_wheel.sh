#!/usr/bin/env bash
# Build the sdist and the wheel the way a user's `pip install` does, install the wheel (no -e, no extras) into a
# clean virtual environment, and drive it end to end from outside the repository (scripts/wheel_smoke.py): a
# training script with autostart, `trackiod status/runs/export/show`, and Api() reading back. Then check that
# every extra resolves from the wheel's metadata. This is what CI could not see while setup.sh installed with
# -e: a wheel missing trackiod.mirrors could not start the daemon. Run by scripts/test.sh; works alone too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/trackiod-wheel.XXXXXX")"
cleanup() {
    # A daemon the smoke script left behind (it stops its own; this is the safety net) must not outlive us.
    if [[ -f "$WORK/home/daemon.json" ]]; then
        TRACKIOD_HOME="$WORK/home" "$WORK/venv/bin/trackiod" stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "check_wheel: building the sdist and, from it, the wheel"
"$BIN/python" -m build --quiet --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/*.whl)"
ls "$WORK"/dist/*.tar.gz >/dev/null

echo "check_wheel: the wheel holds every package and data file"
"$BIN/python" - "$WHEEL" "$ROOT" <<'PYEOF'
import sys
import zipfile
from pathlib import Path

wheel, root = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
missing = []
# Every package in the checkout (a folder with __init__.py under trackiod/ or shim/trackio_shim/) is in the wheel.
for base, prefix in ((root, root), (root / "shim", root / "shim")):
    pkg_root = base / ("trackiod" if base == root else "trackio_shim")
    for init in pkg_root.rglob("__init__.py"):
        rel = init.relative_to(prefix).as_posix()
        if rel not in names:
            missing.append(rel)
# trackio_shim_switch.pth: the switch (TRACKIO_SHIM_AS) is read at interpreter start from site-packages.
for data in ("trackio_shim/py.typed", "trackiod/dashboard/static/index.html", "trackio_shim_switch.pth"):
    if data not in names:
        missing.append(data)
if missing:
    sys.exit("check_wheel: the wheel lacks " + ", ".join(sorted(missing)))
print(f"check_wheel: {len(names)} files, every package present")
PYEOF

BASE_PY="$("$BIN/python" -c 'import sys; print(sys._base_executable)')"
echo "check_wheel: installing the wheel into a clean venv ($("$BASE_PY" --version))"
"$BASE_PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$WHEEL" >"$WORK/install.log" 2>&1 ||
    { cat "$WORK/install.log"; exit 1; }

echo "check_wheel: end to end from outside the repository"
(cd "$WORK" && env -u PYTHONPATH TRACKIOD_HOME="$WORK/home" "$WORK/venv/bin/python" -I "$ROOT/scripts/wheel_smoke.py")

echo "check_wheel: every extra resolves from the wheel"
extras="$("$BIN/python" -c 'import tomllib,sys; print(" ".join(tomllib.load(open(sys.argv[1],"rb"))["project"]["optional-dependencies"]))' "$ROOT/pyproject.toml")"
for extra in $extras; do
    "$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check --dry-run "$WHEEL[$extra]" \
        >"$WORK/extra.log" 2>&1 || { cat "$WORK/extra.log"; echo "check_wheel: extra [$extra] does not resolve" >&2; exit 1; }
    echo "check_wheel: [$extra] resolves"
done
echo "check_wheel: passed"
