"""Columnar answers over a project's runs: ``/api/sweep`` (binary) and ``/api/runs?format=columns`` (JSON).

Both start from :func:`trackiod.read.run_columns.run_columns` (every run's config and summary decoded and
flattened, the costly part at 10,000 runs), which is kept per project and reused until a run of that project is
added, removed or updated (one indexed aggregate tells).

``/api/sweep`` layout (as ``/api/chart?format=bin``): ``uint32 header length | JSON header (padded to 8 bytes) |
float64 LE columns``, config columns first then summary columns, each ``n`` values long (NaN: the run has no
value). The header names the runs (ids, names, states, newest first) and each column (its key, its categories when
it is categorical, and how many distinct values it has). 10,000 runs x 20 keys is 1.6 MB of exact doubles that the
browser reads as typed arrays, with no JSON number to parse.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from typing import Any

import apsw

from trackiod.read.run_columns import RunColumns, project_stamp, run_columns
from trackiod.read.sweep import sweep_columns

#: Projects whose decoded columns are kept (the most recently decoded): 10,000 runs hold some tens of MB.
KEPT_PROJECTS = 4


class ProjectColumns:
    """Decoded run columns and their encoded answers per project, reused while the project's stamp holds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[tuple[Any, ...], RunColumns, dict[str, Any]]] = {}

    def _entry(self, conn: apsw.Connection, project: str) -> tuple[RunColumns, dict[str, Any]]:
        stamp = project_stamp(conn, project)
        with self._lock:
            cached = self._cached.get(project)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        columns = run_columns(conn, project)
        answers: dict[str, Any] = {}
        with self._lock:
            self._cached.pop(project, None)
            self._cached[project] = (stamp, columns, answers)
            while len(self._cached) > KEPT_PROJECTS:
                del self._cached[next(iter(self._cached))]
        return columns, answers

    def sweep(self, conn: apsw.Connection | None, project: str) -> bytes:
        if conn is None:
            return sweep_binary(RunColumns(0, {"id": [], "name": [], "state": []}, {}, {}))
        columns, answers = self._entry(conn, project)
        if "sweep" not in answers:
            answers["sweep"] = sweep_binary(columns)
        return answers["sweep"]  # type: ignore[no-any-return]

    def runs_json(self, conn: apsw.Connection, project: str) -> str:
        """``{"format": "columns", "n", "columns": {field: [...]}, "config": {key: [...]}, "summary": {...}}``."""
        columns, answers = self._entry(conn, project)
        if "runs" not in answers:
            parts = [
                f'"{part}":{{{",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in getattr(columns, part).items())}}}'
                for part in ("base", "config", "summary")
            ]
            answers["runs"] = f'{{"format":"columns","n":{columns.count},{",".join(parts)}}}'
        return answers["runs"]  # type: ignore[no-any-return]


def _dump(values: list[Any]) -> str:
    """A column as JSON; NaN and infinities as the strings "NaN", "Infinity" (browsers' JSON has no such numbers)."""
    try:
        return json.dumps(values, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(values), allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def sweep_binary(runs: RunColumns) -> bytes:
    """The ``/api/sweep`` answer for these runs."""
    columns = sweep_columns(runs)
    header = {
        "n": len(columns.run_keys),
        "runs": columns.run_keys,
        "names": columns.names,
        "states": columns.states,
        "config": [
            {"key": c.key, "distinct": c.distinct, **({"categories": c.categories} if c.categories is not None else {})}
            for c in columns.config
        ],
        "summary": [{"key": c.key, "distinct": c.distinct} for c in columns.summary],
    }
    head = json.dumps(header, allow_nan=False).encode()
    head += b" " * (-(4 + len(head)) % 8)
    parts = [struct.pack("<I", len(head)), head]
    parts.extend(c.values.astype("<f8").tobytes() for c in (*columns.config, *columns.summary))
    return b"".join(parts)
