#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run examples/demo.py end to end: three simulated training
# runs logged through trackio_shim, a daemon started on demand, and a look at the stored data.
#
# The demo keeps its data in ./demo-home (in the repository) unless TRACKIOD_HOME is set, so it never touches
# your real trackiod data. It stops the daemon it started when it ends (also when it fails), unless
# TRACKIOD_DEMO_KEEP=1.
# Works from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOME_DIR="${TRACKIOD_HOME:-$ROOT/demo-home}"
case "$HOME_DIR" in
    /*) ;;
    *) HOME_DIR="$PWD/$HOME_DIR" ;;  # a relative TRACKIOD_HOME means relative to where you ran this
esac
export TRACKIOD_HOME="$HOME_DIR"

"$ROOT/scripts/setup.sh"
BIN="$ROOT/.venv/bin"

echo
echo "demo: TRACKIOD_HOME=$TRACKIOD_HOME"
exec "$BIN/python" "$ROOT/examples/demo.py" "$@"
