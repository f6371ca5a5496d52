"""The architecture as a contract: the import-linter contracts in pyproject.toml (docs/architecture.md) hold.

Layers per package, the shim's one seam to the daemon, no test double imported by production code, no import
cycle. scripts/test.sh runs `lint-imports` too; this test keeps the rule inside `pytest tests`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"an import contract is broken (docs/architecture.md):\n{done.stdout}\n{done.stderr}"
    assert "0 broken" in done.stdout
