"""Reads of stored rich values (the ``media`` table) through query-only connections.

A value comes back as a plain dict in wandb's history style: ``_type`` (histogram, array, image, table, html,
video, audio, object3d, plotly, plot or gallery), ``step``, and the kind's fields (``values``/``bins``,
``dtype``/``shape``/``data``, ``path`` relative to ``TRACKIOD_HOME/media``, ``caption``, ``width``, ``height``,
``format``, ``columns``, ``rows``; a video's ``fps`` and ``frames``, audio's ``sample_rate``, ``channels`` and
``duration``, a plotly figure's ``traces``, a chart's ``spec``, ``chart``, ``fields`` and ``strings`` beside its
table's ``path``, a gallery's ``items`` (each ``kind``, ``path`` and that kind's fields) and ``count``).
"""

from __future__ import annotations

import json
from typing import Any

import apsw
import numpy as np

#: The (table, columns) pairs rows_by_step reads: trackiod.read.series.read_texts and read_media below.
_READABLE = {("texts", "value"), ("media", "kind, meta, body, path")}


def media_keys(conn: apsw.Connection, run_id: int) -> dict[str, tuple[int, str, int]]:
    """``{name: (key_id, kind, count)}`` for every key with rich values in a run (kind of its latest value)."""
    out: dict[str, tuple[int, str, int]] = {}
    for name, key_id, kind, count in conn.execute(
        "SELECT k.name, m.key_id, (SELECT kind FROM media WHERE run_id=m.run_id AND key_id=m.key_id "
        "ORDER BY step DESC LIMIT 1), COUNT(*) FROM media m JOIN keys k ON k.id = m.key_id "
        "WHERE m.run_id=? GROUP BY m.key_id ORDER BY k.name",
        (run_id,),
    ):
        out[name] = (key_id, kind, count)
    return out


def value(kind: str, step: int, meta_json: str, body: bytes | None, path: str | None) -> dict[str, Any]:
    """One stored rich value as a dict (see the module docstring)."""
    fields: dict[str, Any] = {"_type": kind, "step": step, **json.loads(meta_json)}
    fields.pop("files", None)
    if body is not None:
        fields["data"] = bytes(body)
    if path is not None:
        fields["path"] = path
    return fields


def rows_by_step(
    conn: apsw.Connection,
    table: str,
    columns: str,
    run_id: int,
    key_id: int,
    min_step: int | None = None,
    max_step: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """One key's rows ``(step, ts, *columns)`` of ``table`` (texts, media), sorted by step, with the steps and
    times as arrays; ``min_step``/``max_step`` inclusive."""
    if (table, columns) not in _READABLE:  # both go into the SQL text: only the pairs this module knows
        raise ValueError(f"rows_by_step: cannot read {columns!r} from {table!r}")
    rows: list[Any] = conn.execute(
        f"SELECT step, ts, {columns} FROM {table} WHERE run_id=? AND key_id=? AND step BETWEEN ? AND ? ORDER BY step",
        (
            run_id,
            key_id,
            -(2**63) if min_step is None else min_step,
            2**63 - 1 if max_step is None else max_step,
        ),
    ).fetchall()
    return np.asarray([r[0] for r in rows], np.int64), np.asarray([r[1] for r in rows], np.float64), rows


def read_media(
    conn: apsw.Connection, run_id: int, key_id: int, min_step: int | None = None, max_step: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """One key's rich values as (steps, times, values), sorted by step."""
    steps, times, rows = rows_by_step(conn, "media", "kind, meta, body, path", run_id, key_id, min_step, max_step)
    return steps, times, [value(r[2], r[0], r[3], r[4], r[5]) for r in rows]
