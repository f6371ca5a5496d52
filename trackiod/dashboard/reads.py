"""The dashboard's reads: the queries behind the JSON API.

Every connection comes from :class:`trackiod.read.connection.Readers` (one mapped, query-only connection per
server thread; ``PRAGMA query_only``, WAL), so the dashboard never writes and never blocks the daemon's writer.
Run rows are sent as JSON arrays with the stored config and summary JSON spliced in as they are: decoding and
re-encoding 10,000 configs would cost more than the query.
"""

from __future__ import annotations

import json
import math
from typing import Any

import apsw
import numpy as np

from trackiod.read.run_columns import BASE_FIELDS
from trackiod.read.series import read_series

#: The columns of a run row in ``/api/runs``, in order: the runs table's plain fields, then config and summary
#: as JSON objects.
RUN_COLUMNS = (*BASE_FIELDS, "config", "summary")

_RUN_ROW_SQL = (
    "SELECT r.run_key, r.name, r.state, r.created_at, r.updated_at, r.ended_at, r.host, r.group_name, "
    "r.job_type, r.notes, r.last_step, r.exit_code, r.tags, r.config, r.summary "
    "FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=?"
)


def _clean_json(raw: str | None, empty: str) -> str:
    """Stored JSON made safe for browsers' JSON.parse: NaN and infinities become strings, as in summaries."""
    if not raw:
        return empty
    if "NaN" not in raw and "Infinity" not in raw:
        return raw
    return json.dumps(json.loads(raw), default=str, allow_nan=False, cls=_FiniteEncoder)


class _FiniteEncoder(json.JSONEncoder):
    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        return super().iterencode(_finite(o), _one_shot)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


_RUNS_IN_SQL = (
    "SELECT json_group_array(json_array(r.run_key, r.name, r.state, r.created_at, r.updated_at, r.ended_at, "
    "r.host, r.group_name, r.job_type, r.notes, r.last_step, r.exit_code, json(r.tags), json(r.config), "
    "json(r.summary)) ORDER BY r.id DESC), "
    "MAX(instr(r.config, 'NaN') OR instr(r.config, 'Infinity') OR instr(r.summary, 'NaN') "
    "OR instr(r.summary, 'Infinity')) "
    "FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=?"
)


def runs_json(conn: apsw.Connection, project: str, updated_after: float | None = None) -> str:
    """``{"columns": [...], "rows": [[...], ...]}`` for one project's runs, newest first.

    With ``updated_after``, only runs changed since then (for live refreshes of a big table). SQLite builds the
    rows (twice as fast as Python for 10,000 runs) unless a config or summary holds NaN or an infinity, which
    SQLite's JSON would turn into null or 9e999; then Python writes them as the strings "NaN", "Infinity".
    """
    where = ""
    args: list[Any] = [project]
    if updated_after is not None:
        where = " AND r.updated_at > ?"
        args.append(updated_after)
    columns = json.dumps(list(RUN_COLUMNS))
    row = conn.execute(_RUNS_IN_SQL + where, args).fetchone()
    if row is not None and not row[1]:
        return f'{{"columns":{columns},"rows":{row[0] or "[]"}}}'
    rows = []
    dumps = json.dumps
    for run in conn.execute(_RUN_ROW_SQL + where + " ORDER BY r.id DESC", args):
        head = dumps(run[:12], allow_nan=False)[:-1]
        tags = run[12] or "[]"
        rows.append(f"{head},{tags},{_clean_json(run[13], '{}')},{_clean_json(run[14], '{}')}]")
    return f'{{"columns":{columns},"rows":[{",".join(rows)}]}}'


def run_ids(conn: apsw.Connection, project: str, run_keys: list[str]) -> dict[str, dict[str, Any]]:
    """``{run_key: {"id", "created_at", "metric_defs"}}`` for the runs of ``project`` named by id (or by name)."""
    if not run_keys:
        return {}
    marks = ",".join("?" * len(run_keys))
    found: dict[str, dict[str, Any]] = {}
    for key, rid, created, defs, name in conn.execute(
        f"SELECT r.run_key, r.id, r.created_at, r.metric_defs, r.name FROM runs r JOIN projects p "
        f"ON p.id = r.project_id WHERE p.name=? AND (r.run_key IN ({marks}) OR r.name IN ({marks}))",
        (project, *run_keys, *run_keys),
    ):
        info = {"id": rid, "run": key, "created_at": created, "metric_defs": json.loads(defs or "[]")}
        if key in run_keys:
            found[key] = info
        elif name in run_keys and name not in found:
            found[name] = info  # trackio's links select runs by name; the newest run with that name wins
    return found


def metric_keys(conn: apsw.Connection, run_db_ids: list[int]) -> list[dict[str, Any]]:
    """Every key the given runs logged: name, kind, the number of runs that have it, their total points, and
    ``contexts``, how many series of it carry a context (``log(..., context=...)``; drawn as extra lines)."""
    if not run_db_ids:
        return []
    marks = ",".join("?" * len(run_db_ids))
    out: dict[str, dict[str, Any]] = {
        name: {"key": name, "kind": kind, "runs": runs, "points": points, "contexts": 0}
        for name, kind, runs, points in conn.execute(
            f"SELECT k.name, MAX(rk.kind), COUNT(*), SUM(rk.points) FROM run_keys rk JOIN keys k "
            f"ON k.id = rk.key_id WHERE rk.run_id IN ({marks}) GROUP BY k.id",
            run_db_ids,
        )
    }
    for name, kind, runs, points, series in conn.execute(
        f"SELECT kc.base_name, MAX(rk.kind), COUNT(DISTINCT rk.run_id), SUM(rk.points), COUNT(*) FROM run_keys rk "
        f"JOIN key_contexts kc ON kc.id = -rk.key_id WHERE rk.key_id < 0 AND rk.run_id IN ({marks}) "
        f"GROUP BY kc.base_name",
        run_db_ids,
    ):
        entry = out.setdefault(name, {"key": name, "kind": kind, "runs": 0, "points": 0, "contexts": 0})
        entry["runs"] = max(entry["runs"], runs)
        entry["points"] += points
        entry["contexts"] = series
    return [out[name] for name in sorted(out)]


def contexts_of(conn: apsw.Connection, run_db_ids: list[int], key: str) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """``{run db id: [(series key id, context)]}``: the series of ``key`` each run logged with a context, in context
    order (runs without any are left out). One query for a chart's runs, not one per run."""
    out: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    if not run_db_ids:
        return out
    marks = ",".join("?" * len(run_db_ids))
    for run_db_id, kid, body in conn.execute(
        "SELECT rk.run_id, rk.key_id, c.body FROM run_keys rk JOIN key_contexts kc ON kc.id = -rk.key_id "
        f"JOIN contexts c ON c.id = kc.context_id WHERE rk.run_id IN ({marks}) AND rk.key_id < 0 "
        "AND kc.base_name=? ORDER BY rk.run_id, c.body",
        (*run_db_ids, key),
    ):
        out.setdefault(int(run_db_id), []).append((int(kid), json.loads(body)))
    return out


def step_range(conn: apsw.Connection, series: list[tuple[int, int]]) -> tuple[float, float] | None:
    """The lowest and highest step stored for these ``(run db id, key id)`` series (from the chunks' bounds, no
    points read); None when none has a point. One query per key id (a chart's runs share the plain one)."""
    runs_of: dict[int, list[int]] = {}
    for run_db_id, kid in series:
        runs_of.setdefault(kid, []).append(run_db_id)
    lows: list[int] = []
    highs: list[int] = []
    for kid, run_db_ids in runs_of.items():
        marks = ",".join("?" * len(run_db_ids))
        row: Any = conn.execute(
            f"SELECT min(step_min), max(step_max) FROM chunks WHERE key_id=? AND run_id IN ({marks})",
            (kid, *run_db_ids),
        ).fetchone()
        if row[0] is not None:
            lows.append(row[0])
            highs.append(row[1])
    return (float(min(lows)), float(max(highs))) if lows else None


def key_id(conn: apsw.Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM keys WHERE name=?", (name,)).fetchone()
    return int(row[0]) if row else None


def step_metric(defs: list[dict[str, Any]], key: str) -> str | None:
    """The ``step_metric`` define_metric set for ``key`` (exact name, or the last matching glob)."""
    import fnmatch

    chosen = None
    for d in defs:
        name = d.get("name")
        if isinstance(name, str) and d.get("step_metric") and (name == key or fnmatch.fnmatchcase(key, name)):
            chosen = str(d["step_metric"])
    return chosen


def series_xy(
    conn: apsw.Connection,
    run: dict[str, Any],
    key: str,
    xaxis: str,
    after: int | None,
    series_id: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, x, y) of one run's numeric key, in drawing order; x per ``xaxis``, only steps after ``after``.

    ``xaxis`` is ``step``, ``time`` (epoch seconds), ``relative`` (seconds since the run started) or the name of
    another logged metric (its value at the same step; steps where it was not logged are left out). ``series_id``
    reads a series other than the plain key's (one logged with a context, see :func:`contexts_of`).
    """
    empty = np.empty(0, np.int64), np.empty(0), np.empty(0)
    kid = series_id if series_id is not None else key_id(conn, key)
    if kid is None:
        return empty
    lo = None if after is None else after + 1
    timed = xaxis in ("time", "relative")
    steps, times, vals = read_series(conn, run["id"], kid, min_step=lo, with_times=timed)
    if xaxis == "step":
        return steps, steps, vals  # int64 x: the reduction searches it without a float copy
    if xaxis == "time":
        return steps, times, vals
    if xaxis == "relative":
        return steps, times - float(run["created_at"]), vals
    xid = key_id(conn, xaxis)
    if xid is None or not steps.size:
        return empty
    x_steps, _, x_vals = read_series(conn, run["id"], xid, min_step=lo, with_times=False)
    common, mine, theirs = np.intersect1d(steps, x_steps, assume_unique=True, return_indices=True)
    x, y = x_vals[theirs], vals[mine]
    order = np.argsort(x, kind="stable")
    return common[order], x[order], y[order]
