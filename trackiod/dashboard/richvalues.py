"""The run page's reads of rich values (images, tables, histograms, HTML, arrays, videos, audio, 3-D objects,
plotly figures, wandb.plot charts, galleries) and of alerts and artifacts.

Rows come from the ``media`` table through :mod:`trackiod.read.media`; files (images, HTML, tables) stay where
the daemon wrote them under ``TRACKIOD_HOME/media`` and the browser loads them through ``/media/PATH``. Only a
table's page of rows is read here, from its ``.table.json``. Histograms come back both as logged (for a step
slider) and as one heatmap over steps, every step's counts spread onto shared bin edges.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from trackiod.read.media import media_keys, read_media

#: Steps of one histogram key sent at most (evenly spaced, always with the first and the last).
MAX_HISTOGRAM_STEPS = 200
#: Rows of the shared bin grid of a histogram heatmap.
HEATMAP_BINS = 64
#: Table rows per page at most.
MAX_TABLE_PAGE = 500
#: Array values a summary reads at most to compute min, max and mean.
ARRAY_STATS_LIMIT = 1 << 22
#: Rows of a chart's table sent at most (wandb keeps at most 10,000 rows in a chart's table).
MAX_CHART_ROWS = 10_000
#: The fields of each file kind a step's value is sent with (the file itself loads from /media/PATH).
_FILE_FIELDS = {
    "image": ("width", "height", "format"),
    "html": (),
    "video": ("format", "fps", "frames", "width", "height"),
    "audio": ("format", "sample_rate", "channels", "duration"),
    "object3d": ("format",),
    "plotly": ("traces",),
}


def media_index(conn: apsw.Connection, run_id: int) -> list[dict[str, Any]]:
    """Every rich-value key of a run: ``{key, kind, count, steps}`` (steps ascending)."""
    out = []
    for name, (key_id, kind, count) in media_keys(conn, run_id).items():
        steps = [
            int(s)
            for (s,) in conn.execute(
                "SELECT step FROM media WHERE run_id=? AND key_id=? ORDER BY step", (run_id, key_id)
            )
        ]
        out.append({"key": name, "kind": kind, "count": count, "steps": steps})
    return out


def _even(items: list[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks.tolist()]


def media_values(
    conn: apsw.Connection,
    media_dir: Path,
    run_id: int,
    key: str,
    step: int | None,
    offset: int,
    limit: int,
) -> dict[str, Any] | None:
    """One key's values shaped for its kind (docs/dashboard.md, ``/api/media/values``); None if it has none."""
    found = media_keys(conn, run_id).get(key)
    if found is None:
        return None
    key_id, kind, _ = found
    if kind == "table":
        return _table(conn, media_dir, run_id, key_id, key, step, offset, limit)
    if kind == "plot":
        return _chart(conn, media_dir, run_id, key_id, key, step)
    _, _, values = read_media(conn, run_id, key_id)
    values = [v for v in values if v["_type"] == kind]
    if kind in _FILE_FIELDS:
        fields = ("step", "path", "caption", *_FILE_FIELDS[kind])
        return {"key": key, "kind": kind, "values": [{f: v[f] for f in fields if f in v} for v in values]}
    if kind == "gallery":
        return {"key": key, "kind": kind, "values": [{"step": v["step"], "items": v["items"]} for v in values]}
    if kind == "histogram":
        return {"key": key, "kind": kind, **_histograms(_even(values, MAX_HISTOGRAM_STEPS))}
    return {"key": key, "kind": kind, "values": [_array_summary(v) for v in _even(values, MAX_HISTOGRAM_STEPS)]}


def _histograms(values: list[dict[str, Any]]) -> dict[str, Any]:
    """The histograms as logged plus a heatmap: each step's counts spread onto shared edges by bin overlap."""
    if not values:
        return {"values": [], "heatmap": {"steps": [], "edges": [], "counts": []}}
    lo = min(v["bins"][0] for v in values)
    hi = max(v["bins"][-1] for v in values)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, HEATMAP_BINS + 1)
    rows = []
    for v in values:
        bins, counts = np.asarray(v["bins"], float), np.asarray(v["values"], float)
        # Cumulative count at every shared edge, counts assumed uniform within each logged bin.
        cumulative = np.concatenate(([0.0], np.cumsum(counts)))
        at_edges = np.interp(edges, bins, cumulative, left=0.0, right=float(cumulative[-1]))
        rows.append(np.diff(at_edges).round(6).tolist())
    return {
        "values": [{"step": v["step"], "bins": v["bins"], "values": v["values"]} for v in values],
        "heatmap": {"steps": [v["step"] for v in values], "edges": edges.tolist(), "counts": rows},
    }


def _array_summary(value: dict[str, Any]) -> dict[str, Any]:
    out = {"step": value["step"], "dtype": value.get("dtype"), "shape": value.get("shape")}
    data = value.get("data")
    if isinstance(data, bytes) and value.get("dtype"):
        array = np.frombuffer(data, np.dtype(value["dtype"]).newbyteorder("<"))[:ARRAY_STATS_LIMIT]
        numeric = array.astype(np.float64)
        finite = numeric[np.isfinite(numeric)]
        if finite.size:
            out.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
        out["nonfinite"] = int(numeric.size - finite.size)
        out["preview"] = [_finite(x) for x in numeric[:8].tolist()]
    return out


def _finite(x: float) -> Any:
    return x if math.isfinite(x) else str(x)


def _table(
    conn: apsw.Connection,
    media_dir: Path,
    run_id: int,
    key_id: int,
    key: str,
    step: int | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    steps = [
        int(s)
        for (s,) in conn.execute("SELECT step FROM media WHERE run_id=? AND key_id=? ORDER BY step", (run_id, key_id))
    ]
    chosen = step if step is not None else steps[-1]
    _, _, values = read_media(conn, run_id, key_id, chosen, chosen)
    out: dict[str, Any] = {
        "key": key,
        "kind": "table",
        "steps": steps,
        "step": chosen,
        "offset": offset,
        "limit": limit,
    }
    if not values or values[0]["_type"] != "table":
        return {**out, "columns": [], "rows": [], "total": 0, "error": f"no table at step {chosen}"}
    value = values[0]
    try:
        body = json.loads((media_dir / value["path"]).read_text())
    except (OSError, ValueError) as exc:
        return {**out, "columns": value.get("columns", []), "rows": [], "total": 0, "error": f"table file: {exc}"}
    rows = body.get("data", [])
    return {
        **out,
        "columns": body.get("columns", []),
        "rows": _clean(rows[offset : offset + limit]),
        "total": len(rows),
    }


def _chart(
    conn: apsw.Connection, media_dir: Path, run_id: int, key_id: int, key: str, step: int | None
) -> dict[str, Any]:
    """A wandb.plot chart at one step (the latest by default): its spec and its table's rows, for drawing."""
    steps = [
        int(s)
        for (s,) in conn.execute("SELECT step FROM media WHERE run_id=? AND key_id=? ORDER BY step", (run_id, key_id))
    ]
    chosen = step if step is not None else steps[-1]
    _, _, values = read_media(conn, run_id, key_id, chosen, chosen)
    out: dict[str, Any] = {"key": key, "kind": "plot", "steps": steps, "step": chosen}
    if not values or values[0]["_type"] != "plot":
        return {**out, "columns": [], "rows": [], "total": 0, "error": f"no chart at step {chosen}"}
    value = values[0]
    out.update({f: value.get(f) for f in ("spec", "chart", "fields", "strings", "path")})
    try:
        body = json.loads((media_dir / value["path"]).read_text())
    except (OSError, ValueError) as exc:
        return {**out, "columns": value.get("columns", []), "rows": [], "total": 0, "error": f"table file: {exc}"}
    rows = body.get("data", [])
    return {**out, "columns": body.get("columns", []), "rows": _clean(rows[:MAX_CHART_ROWS]), "total": len(rows)}


def _clean(value: Any) -> Any:
    """Cells made safe for JSON.parse: NaN and infinities become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def run_artifacts(conn: apsw.Connection, run_id: int) -> dict[str, list[dict[str, Any]]]:
    """Artifact versions a run produced and used: ``{"produced": [...], "used": [...]}``."""
    sql = (
        "SELECT p.name AS project, a.name, a.type, v.version, v.digest, v.size, v.file_count, v.description, "
        "v.created_at, (SELECT group_concat(alias) FROM artifact_aliases x WHERE x.version_id = v.id) AS aliases "
        "FROM artifact_versions v JOIN artifacts a ON a.id = v.artifact_id JOIN projects p ON p.id = a.project_id"
    )
    columns = ("project", "name", "type", "version", "digest", "size", "file_count", "description", "created_at")

    def rows(where: str) -> list[dict[str, Any]]:
        out = []
        for row in conn.execute(f"{sql} {where} ORDER BY a.name, v.version", (run_id,)):
            item = dict(zip(columns, row[:-1]))
            item["version"] = f"v{item['version']}"
            item["aliases"] = row[-1].split(",") if row[-1] else []
            out.append(item)
        return out

    return {
        "produced": rows("WHERE v.producer_run_id=?"),
        "used": rows("WHERE v.id IN (SELECT version_id FROM artifact_usage WHERE run_id=?)"),
    }
