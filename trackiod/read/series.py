"""Reads from the store through query-only connections: runs, series, history rows.

Used by the CLI, the read API (``trackio_shim.Api``) and, later, the dashboard. Readers never write and
never take the writer's lock (WAL), so they work with the daemon running or stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from trackio_shim.errors import TrackiodError
from trackiod.read.media import media_keys, read_media, rows_by_step
from trackiod.store.schema import RANK_KEY_OFFSET, configure, dict_rows, understood_version

RUN_JSON_COLUMNS = ("pids", "config", "summary", "tags", "metric_defs", "mirrors")


def open_reader(path: Path) -> apsw.Connection:
    """A connection that can only read (``PRAGMA query_only``).

    Raises:
        FileNotFoundError: there is no database at ``path`` yet (nothing was ever logged).
        TrackiodError: the database was written by a newer trackiod.
    """
    if not path.exists():
        raise FileNotFoundError(f"no trackiod database at {path}; nothing has been logged there yet")
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    configure(conn, readonly=True)
    conn.execute("PRAGMA query_only=ON")
    try:
        understood_version(conn)
    except TrackiodError:
        conn.close()
        raise
    return conn


def _run_dict(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in RUN_JSON_COLUMNS:
        out[column] = (
            json.loads(out[column]) if out.get(column) else ([] if column in ("pids", "tags", "mirrors") else {})
        )
    out.pop("summary_state", None)
    return out


_RUN_SELECT = "SELECT r.*, p.name AS project FROM runs r JOIN projects p ON p.id = r.project_id"


def list_projects(conn: apsw.Connection) -> list[dict[str, Any]]:
    return dict_rows(
        conn,
        "SELECT p.name, COUNT(r.id) AS runs, MAX(r.updated_at) AS last_update FROM projects p "
        "LEFT JOIN runs r ON r.project_id = p.id GROUP BY p.id ORDER BY p.name",
    )


def list_runs(conn: apsw.Connection, project: str | None = None) -> list[dict[str, Any]]:
    """Runs (newest first), optionally of one project, with JSON columns decoded."""
    if project is None:
        rows = dict_rows(conn, f"{_RUN_SELECT} ORDER BY r.id DESC")
    else:
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? ORDER BY r.id DESC", (project,))
    return [_run_dict(r) for r in rows]


def get_run(conn: apsw.Connection, project: str, run_key: str) -> dict[str, Any] | None:
    rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? AND r.run_key=?", (project, run_key))
    return _run_dict(rows[0]) if rows else None


def run_keys(conn: apsw.Connection, run_id: int) -> dict[str, tuple[int, str, int]]:
    """``{name: (key_id, kind, points)}`` for every key a run logged."""
    return {
        name: (key_id, kind, points)
        for name, key_id, kind, points in conn.execute(
            "SELECT k.name, k.id, rk.kind, rk.points FROM run_keys rk JOIN keys k ON k.id = rk.key_id "
            "WHERE rk.run_id=? ORDER BY k.name",
            (run_id,),
        )
    }


def read_series(
    conn: apsw.Connection,
    run_id: int,
    key_id: int,
    min_step: int | None = None,
    max_step: int | None = None,
    with_times: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One numeric series as (steps, times, values), sorted by step, one value per step (the last logged).

    ``with_times=False`` skips reading the timestamps (a third less to read); ``times`` then comes back empty.
    The arrays may be read-only views of the bytes read; copy one before changing it in place.
    """
    columns = "steps, times, vals" if with_times else "steps, vals"
    sql = f"SELECT {columns} FROM chunks WHERE run_id=? AND key_id=?"
    args: list[Any] = [run_id, key_id]
    if min_step is not None:
        sql += " AND step_max >= ?"
        args.append(min_step)
    if max_step is not None:
        sql += " AND step_min <= ?"
        args.append(max_step)
    blobs: list[Any] = conn.execute(sql + " ORDER BY id", args).fetchall()
    if not blobs:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
    # One bytes join per column, then one view: about half the cost of concatenating a view per chunk.
    steps = np.frombuffer(b"".join([b[0] for b in blobs]), "<i8")
    if with_times:
        times = np.frombuffer(b"".join([b[1] for b in blobs]), "<f8")
    vals = np.frombuffer(b"".join([b[-1] for b in blobs]), "<f8")
    if steps.size > 1 and not bool(np.all(steps[1:] > steps[:-1])):
        # Out-of-order or repeated steps: keep the last value written for each step, ordered by step.
        rev_steps = steps[::-1]
        uniq, first_in_rev = np.unique(rev_steps, return_index=True)
        idx = steps.size - 1 - first_in_rev
        steps, vals = uniq, vals[idx]
        if with_times:
            times = times[idx]
    if min_step is not None or max_step is not None:
        lo = np.searchsorted(steps, min_step, "left") if min_step is not None else 0
        hi = np.searchsorted(steps, max_step, "right") if max_step is not None else steps.size
        steps, vals = steps[lo:hi], vals[lo:hi]
        if with_times:
            times = times[lo:hi]
    return steps, (times if with_times else np.empty(0, np.float64)), vals


def read_texts(
    conn: apsw.Connection, run_id: int, key_id: int, min_step: int | None = None, max_step: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    steps, times, rows = rows_by_step(conn, "texts", "value", run_id, key_id, min_step, max_step)
    return steps, times, [r[2] for r in rows]


def _decode(value: float) -> Any:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _merge_mixed(
    steps: np.ndarray, times: np.ndarray, texts: list[str], n_steps: np.ndarray, n_times: np.ndarray, n_vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Texts and numbers of one key as one step-sorted column; where a step has both, the later one wins."""
    all_steps = np.concatenate((steps, n_steps))
    all_times = np.concatenate((times, n_times))
    values: list[Any] = [*texts, *(_decode(v) for v in n_vals.tolist())]
    order = np.lexsort((all_times, all_steps))
    ordered = all_steps[order]
    keep = np.ones(order.size, bool)
    keep[:-1] = ordered[1:] != ordered[:-1]
    idx = order[keep]
    return all_steps[idx], all_times[idx], [values[i] for i in idx.tolist()]


def history(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    samples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """History rows ``{"_step", "_timestamp", "_runtime", key: value...}`` in step order.

    With ``keys``, only rows where every one of those keys has a value (as wandb's scan_history). With
    ``samples``, at most that many rows, evenly spread over the steps and including the first and last.
    """
    available = run_keys(conn, run["id"])
    rich = {name: entry for name, entry in media_keys(conn, run["id"]).items() if name not in available}
    wanted = [*available, *rich] if keys is None else [k for k in keys if k in available or k in rich]
    if keys is not None and len(wanted) < len(keys):
        return
    columns: list[tuple[str, Any, Any, Any, bool]] = []
    for name in wanted:
        if name in rich:  # histograms, arrays, images, tables, HTML: dicts (trackiod.read.media)
            media_steps, media_times, media_vals = read_media(conn, run["id"], rich[name][0], min_step, max_step)
            columns.append((name, media_steps, media_times, media_vals, False))
            continue
        key_id, kind, _ = available[name]
        if kind == "text":
            steps, times, text_vals = read_texts(conn, run["id"], key_id, min_step, max_step)
            more_steps, more_times, more_vals = read_series(conn, run["id"], key_id, min_step, max_step)
            if more_steps.size:  # a key with numbers at some steps and text at others: one column
                steps, times, text_vals = _merge_mixed(steps, times, text_vals, more_steps, more_times, more_vals)
            columns.append((name, steps, times, text_vals, False))
        else:
            steps, times, vals = read_series(conn, run["id"], key_id, min_step, max_step)
            columns.append((name, steps, times, vals, True))
    if not columns:
        return
    if keys is None:
        all_steps = np.unique(np.concatenate([c[1] for c in columns]))
    else:
        all_steps = columns[0][1]
        for column in columns[1:]:
            all_steps = np.intersect1d(all_steps, column[1])
    if samples is not None and all_steps.size > samples:
        count = max(samples, 1)
        spread = np.linspace(0, all_steps.size - 1, count) if count > 1 else np.array([all_steps.size - 1])
        all_steps = all_steps[np.unique(spread.round().astype(np.int64))]
    positions = [np.searchsorted(c[1], all_steps) for c in columns]
    created = float(run["created_at"])
    for i, step in enumerate(all_steps.tolist()):
        row: dict[str, Any] = {"_step": step}
        stamp = 0.0
        for (name, steps, times, vals, numeric), pos in zip(columns, positions):
            j = int(pos[i])
            if j < steps.size and steps[j] == step:
                row[name] = _decode(float(vals[j])) if numeric else vals[j]
                stamp = max(stamp, float(times[j]))
        row["_timestamp"] = stamp
        row["_runtime"] = max(0.0, stamp - created)
        yield row


# ----------------------------------------------------------------------------- ranks (docs/ranks.md)
def run_ranks(conn: apsw.Connection, run_id: int) -> list[dict[str, Any]]:
    """The ranks that joined a distributed run: ``{rank, host, pid, local_rank, joined_at, exit_code, ended_at}``.

    Empty for a run logged by one process.
    """
    return dict_rows(
        conn,
        "SELECT rank, host, pid, local_rank, joined_at, exit_code, ended_at FROM run_ranks WHERE run_id=? "
        "ORDER BY rank",
        (run_id,),
    )


def rank_key_ids(conn: apsw.Connection, run_id: int, key: str) -> dict[int, tuple[int, str]]:
    """``{rank: (series key id, kind)}`` of every rank that logged ``key`` in a run (rank 0: the plain series)."""
    out: dict[int, tuple[int, str]] = {}
    row = conn.execute("SELECT id FROM keys WHERE name=?", (key,)).fetchone()
    if row is None:
        return out
    key_id = int(row[0])
    for rank, series_id, kind in conn.execute(
        "SELECT 0, rk.key_id, rk.kind FROM run_keys rk WHERE rk.run_id=? AND rk.key_id=? "
        "UNION ALL SELECT r.rank, rk.key_id, rk.kind FROM rank_keys r JOIN run_keys rk "
        "ON rk.run_id=? AND rk.key_id = ? + r.id WHERE r.key_id=?",
        (run_id, key_id, run_id, RANK_KEY_OFFSET, key_id),
    ):
        out[int(rank)] = (int(series_id), str(kind))
    return out


def read_rank_series(
    conn: apsw.Connection,
    run_id: int,
    key: str,
    ranks: list[int] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{rank: (steps, times, values)}``: each rank's numeric series of ``key`` (all ranks, or those asked)."""
    found = rank_key_ids(conn, run_id, key)
    wanted = sorted(found) if ranks is None else [r for r in ranks if r in found]
    return {rank: read_series(conn, run_id, found[rank][0], min_step, max_step) for rank in wanted}


def rank_aggregates(
    conn: apsw.Connection,
    run_id: int,
    key: str,
    ranks: list[int] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-step aggregates of ``key`` across ranks: ``steps, mean, min, max, std, count``, computed at read time.

    Each rank contributes its last value at a step; non-finite values (NaN, inf) are left out, and ``count``
    says how many ranks contributed. ``std`` is the population standard deviation (ddof=0) across ranks.
    """
    parts = read_rank_series(conn, run_id, key, ranks, min_step, max_step)
    if parts:
        steps = np.concatenate([p[0] for p in parts.values()])
        vals = np.concatenate([p[2] for p in parts.values()])
    else:
        steps, vals = np.empty(0, np.int64), np.empty(0, np.float64)
    finite = np.isfinite(vals)
    steps, vals = steps[finite], vals[finite]
    order = np.argsort(steps, kind="stable")
    steps, vals = steps[order], vals[order]
    uniq, starts = np.unique(steps, return_index=True)
    if uniq.size == 0:
        empty = np.empty(0, np.float64)
        return {"steps": uniq, "mean": empty, "min": empty, "max": empty, "std": empty, "count": uniq.copy()}
    count = np.diff(np.append(starts, steps.size))
    mean = np.add.reduceat(vals, starts) / count
    spread = np.add.reduceat((vals - np.repeat(mean, count)) ** 2, starts)
    return {
        "steps": uniq,
        "mean": mean,
        "min": np.minimum.reduceat(vals, starts),
        "max": np.maximum.reduceat(vals, starts),
        "std": np.sqrt(spread / count),
        "count": count,
    }


def rank_history(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    ranks: list[int] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> Iterator[dict[str, Any]]:
    """History rows ``{"_rank", "_step", "_timestamp", key: value...}`` per rank, ordered by rank then step."""
    names = list(run_keys(conn, run["id"])) if keys is None else keys
    per_rank: dict[int, dict[str, tuple[np.ndarray, np.ndarray, Any, bool]]] = {}
    for name in names:
        found = rank_key_ids(conn, run["id"], name)
        for rank, (series_id, kind) in found.items():
            if ranks is not None and rank not in ranks:
                continue
            if kind == "text":
                steps, times, texts = read_texts(conn, run["id"], series_id, min_step, max_step)
                more = read_series(conn, run["id"], series_id, min_step, max_step)
                if more[0].size:
                    steps, times, texts = _merge_mixed(steps, times, texts, *more)
                per_rank.setdefault(rank, {})[name] = (steps, times, texts, False)
            else:
                steps, times, vals = read_series(conn, run["id"], series_id, min_step, max_step)
                per_rank.setdefault(rank, {})[name] = (steps, times, vals, True)
    for rank in sorted(per_rank):
        columns = per_rank[rank]
        all_steps = np.unique(np.concatenate([c[0] for c in columns.values()]))
        positions = {name: np.searchsorted(c[0], all_steps) for name, c in columns.items()}
        for i, step in enumerate(all_steps.tolist()):
            row: dict[str, Any] = {"_rank": rank, "_step": step}
            stamp = 0.0
            for name, (steps, times, vals, numeric) in columns.items():
                j = int(positions[name][i])
                if j < steps.size and steps[j] == step:
                    row[name] = _decode(float(vals[j])) if numeric else vals[j]
                    stamp = max(stamp, float(times[j]))
            row["_timestamp"] = stamp
            yield row
