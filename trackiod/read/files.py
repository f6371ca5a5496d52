"""Reads of the files ``save()`` copied for a run (``run_files``), with where each copy lives.

Used by the read API (``Run.files()``) and the dashboard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw

from trackiod.store.schema import dict_rows


def list_files(conn: apsw.Connection, files_dir: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The files save() copied for a run: name, size, sha256, copies, policy, and the local copy's path."""
    rows = dict_rows(
        conn,
        "SELECT name, size, sha256, copies, policy, updated_at FROM run_files WHERE run_id=? ORDER BY name",
        (run["id"],),
    )
    for row in rows:
        row["path"] = str(files_dir / run["project"] / run["run_key"] / row["name"])
    return rows
