#!/usr/bin/env bash
# Install everything (scripts/setup.sh), then run every check: ruff lint, ruff format, mypy, the import contracts
# (import-linter), the built wheel in a clean venv (scripts/check_wheel.sh), the test suite
# (all markers; GPU tests skip themselves without a GPU) and the benchmark suite in quick mode
# (--benchmark-disable: each benchmark runs once, untimed). Exits non-zero if any step fails; runs them all
# either way and prints a summary. Works from any directory.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
"$ROOT/scripts/setup.sh" || { echo "test: setup failed" >&2; exit 1; }
BIN="$ROOT/.venv/bin"

failed=()
passed=()
step() {
    local name="$1"
    shift
    echo
    echo "==> $name: $*"
    if "$@"; then
        passed+=("$name")
    else
        local rc=$?
        echo "==> $name FAILED (exit code $rc)" >&2
        failed+=("$name")
    fi
}

pytest_benchmarks() {
    # setup.sh installed the bench extra, so the peer comparison must run here, not skip.
    TRACKIOD_BENCH_REQUIRE_PEERS=1 "$BIN/python" -m pytest benchmarks --benchmark-disable
    local rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "benchmarks: pytest collected no benchmarks (tolerated)"
        return 0
    fi
    return $rc
}

step "ruff check" "$BIN/ruff" check .
step "ruff format" "$BIN/ruff" format --check .
step "mypy" "$BIN/mypy" shim/trackio_shim trackiod
# The architecture as a contract: layers, the shim's one seam to the daemon, no test double in production, no
# import cycle (pyproject.toml [tool.importlinter], docs/architecture.md).
step "import contracts" "$BIN/lint-imports"
# The wheel a user's `pip install` builds, installed into a clean venv and driven from outside the checkout.
step "wheel" "$ROOT/scripts/check_wheel.sh"
# Exit code 5 (no tests collected) is a failure here, like any other non-zero code.
step "pytest tests" "$BIN/python" -m pytest tests
if compgen -G "benchmarks/test_*.py" >/dev/null || compgen -G "benchmarks/*_test.py" >/dev/null; then
    step "pytest benchmarks" pytest_benchmarks
else
    echo
    echo "==> pytest benchmarks: skipped (no test files in benchmarks/)"
fi

echo
echo "==> passed: ${passed[*]:-none}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "==> FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "==> all checks passed"
