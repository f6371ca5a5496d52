"""Reads of metric contexts: the series a run logged with ``context=`` (docs/storage.md, "Metric context").

A context series is stored under the negated id of its ``key_contexts`` row, so each is read as a plain series.
Used by the read API, the dashboard (extra lines per chart) and sync.
"""

from __future__ import annotations

import json
from typing import Any

import apsw
import numpy as np

from trackiod.read.series import logged_value, read_series


def run_contexts(conn: apsw.Connection, run_id: int) -> list[dict[str, Any]]:
    """Each series of a run that carries a context: ``{key, context, key_id, points}``."""
    rows: list[Any] = conn.execute(
        "SELECT kc.id, kc.base_name, c.body, rk.points FROM run_keys rk "
        "JOIN key_contexts kc ON kc.id = -rk.key_id JOIN contexts c ON c.id = kc.context_id "
        "WHERE rk.run_id=? AND rk.key_id < 0 ORDER BY kc.base_name, c.body",
        (run_id,),
    ).fetchall()
    return [{"key": name, "context": json.loads(body), "key_id": -kid, "points": n} for kid, name, body, n in rows]


def context_series(
    conn: apsw.Connection, run_id: int, key: str, context: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``key``'s series of a run, one per context (each a ``(steps, times, values)`` triple).

    With ``context``, only the series whose context contains every item of it. The context-free series,
    if any, comes first with context ``{}`` (when ``context`` is empty or None).
    """
    out: list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    wanted = context or {}
    if not wanted:
        row = conn.execute("SELECT id FROM keys WHERE name=?", (key,)).fetchone()
        if row is not None:
            plain = read_series(conn, run_id, int(row[0]))
            if plain[0].size:
                out.append(({}, plain))
    for series in run_contexts(conn, run_id):
        if series["key"] == key and all(series["context"].get(k) == v for k, v in wanted.items()):
            out.append((series["context"], read_series(conn, run_id, series["key_id"])))
    return out


def context_history(
    conn: apsw.Connection, run_id: int, context: dict[str, Any], keys: list[str] | None = None
) -> list[dict[str, Any]]:
    """History rows (``_step``, ``_timestamp`` and values) of the series whose context equals ``context``."""
    body = json.dumps(context, sort_keys=True, separators=(",", ":"))
    columns = []
    for series in run_contexts(conn, run_id):
        if json.dumps(series["context"], sort_keys=True, separators=(",", ":")) != body:
            continue
        if keys is None or series["key"] in keys:
            columns.append((series["key"], read_series(conn, run_id, series["key_id"])))
    if not columns:
        return []
    steps = np.unique(np.concatenate([c[1][0] for c in columns]))
    rows: dict[int, dict[str, Any]] = {int(s): {"_step": int(s), "_timestamp": 0.0} for s in steps.tolist()}
    for name, (s, t, v) in columns:
        for step, ts, value in zip(s.tolist(), t.tolist(), v.tolist()):
            row = rows[step]
            row[name] = logged_value(value)
            row["_timestamp"] = max(row["_timestamp"], ts)
    if keys is not None:
        return [r for r in rows.values() if all(k in r for k in keys)]
    return list(rows.values())
