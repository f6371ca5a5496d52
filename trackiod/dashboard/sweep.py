"""``/api/sweep``: a project's config and summary columns in one compact binary answer for the sweep view.

Layout (as ``/api/chart?format=bin``): ``uint32 header length | JSON header (padded to 8 bytes) | float64 LE
columns``, config columns first then summary columns, each ``n`` values long (NaN: the run has no value). The
header names the runs (ids, names, states, newest first) and each column (its key, its categories when it is
categorical, and how many distinct values it has). 10,000 runs x 20 keys is 1.6 MB of exact doubles, parsed by
the browser as typed arrays without a JSON number in sight.
"""

from __future__ import annotations

import json
import struct
import threading

import apsw
import numpy as np

from trackiod.read.sweep import SweepColumns, sweep_columns


_STAMP_SQL = (
    "SELECT COUNT(*), MAX(r.updated_at), SUM(r.id) FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=?"
)


class SweepAnswers:
    """Encoded answers per project, reused until a run of that project is added, removed or updated.

    Decoding every run's config is most of the cost (10,000 JSON objects); the stamp that tells whether any of
    them changed is one indexed aggregate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[tuple[object, ...], bytes]] = {}

    def get(self, conn: apsw.Connection | None, project: str) -> bytes:
        if conn is None:
            return sweep_binary(None, project)
        stamp = tuple(conn.execute(_STAMP_SQL, (project,)).fetchone() or ())
        with self._lock:
            cached = self._answers.get(project)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        body = sweep_binary(conn, project)
        with self._lock:
            self._answers[project] = (stamp, body)
        return body


def sweep_binary(conn: apsw.Connection | None, project: str) -> bytes:
    """The encoded answer; an empty one (no runs) while there is no database yet."""
    columns = sweep_columns(conn, project) if conn is not None else SweepColumns([], [], [])
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
    parts.extend(np.ascontiguousarray(c.values, dtype="<f8").tobytes() for c in (*columns.config, *columns.summary))
    return b"".join(parts)
