"""The images a project's runs logged, across runs: the dashboard's media gallery, filtered by run, key and step.

One query over the ``media`` table (only rows that are files: images, and video and audio where stored), newest
step first, a page at a time, with the keys and the step range of the whole selection so the page can offer
filters without a second pass.
"""

from __future__ import annotations

import json
from typing import Any

import apsw

#: Kinds the gallery shows: values stored as files a browser can show on its own.
GALLERY_KINDS = ("image", "video", "audio")
#: Fields of a value's stored meta the gallery passes on.
_FIELDS = ("caption", "width", "height", "format")

_FROM = (
    "FROM media m JOIN runs r ON r.id = m.run_id JOIN projects p ON p.id = r.project_id JOIN keys k ON k.id = m.key_id "
    "WHERE p.name=? AND m.kind IN ('image', 'video', 'audio') AND m.path IS NOT NULL"
)


def gallery(
    conn: apsw.Connection,
    project: str,
    runs: list[str] | None = None,
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    offset: int = 0,
    limit: int = 60,
) -> dict[str, Any]:
    """``{"total", "items": [{"run", "run_name", "key", "step", "kind", "path", ...}], "keys": [{"key", "count"}],
    "steps": [lo, hi]}``: ``items`` is one page (newest step first, then run and key), ``keys`` and ``steps`` cover
    the runs asked for (before the key and step filters, so the filters can be widened again)."""
    args: list[Any] = [project]
    where = ""
    if runs:
        where += f" AND r.run_key IN ({','.join('?' * len(runs))})"
        args.extend(runs)
    facets: list[Any] = conn.execute(
        f"SELECT k.name, COUNT(*), MIN(m.step), MAX(m.step) {_FROM}{where} GROUP BY k.name ORDER BY k.name", args
    ).fetchall()
    if keys:
        where += f" AND k.name IN ({','.join('?' * len(keys))})"
        args.extend(keys)
    if min_step is not None:
        where += " AND m.step >= ?"
        args.append(min_step)
    if max_step is not None:
        where += " AND m.step <= ?"
        args.append(max_step)
    counted: Any = conn.execute(f"SELECT COUNT(*) {_FROM}{where}", args).fetchone()
    total = int(counted[0])
    items = []
    for run_key, run_name, key, step, kind, meta, path in conn.execute(
        f"SELECT r.run_key, r.name, k.name, m.step, m.kind, m.meta, m.path {_FROM}{where} "
        "ORDER BY m.step DESC, r.id DESC, k.name LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ):
        fields = json.loads(meta or "{}")
        items.append(
            {
                "run": run_key,
                "run_name": run_name,
                "key": key,
                "step": step,
                "kind": kind,
                "path": path,
                **{f: fields[f] for f in _FIELDS if f in fields},
            }
        )
    steps = [min(f[2] for f in facets), max(f[3] for f in facets)] if facets else [None, None]
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "items": items,
        "keys": [{"key": name, "count": count} for name, count, _, _ in facets],
        "steps": steps,
    }
