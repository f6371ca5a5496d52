"""Reads of a distributed run's ranks (docs/ranks.md): who joined, each rank's series, and aggregates across them.

Rank 0 logs the plain series; every other rank's series of a key is stored under its own series id
(``rank_keys``, offset by ``RANK_KEY_OFFSET``), so a rank read is a plain series read per rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw
import numpy as np

from trackiod.read.runs import run_keys
from trackiod.read.series import logged_value, merge_mixed, read_series, read_texts
from trackiod.store.schema import RANK_KEY_OFFSET, dict_rows


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


def rank_counts(conn: apsw.Connection, run_ids: list[int]) -> dict[int, int]:
    """``{run id: ranks that joined}`` for the given runs that are distributed (absent: a one-process run)."""
    if not run_ids:
        return {}
    marks = ",".join("?" * len(run_ids))
    return {
        int(run_id): int(count)
        for run_id, count in conn.execute(
            f"SELECT run_id, COUNT(*) FROM run_ranks WHERE run_id IN ({marks}) GROUP BY run_id", run_ids
        )
    }


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
                    steps, times, texts = merge_mixed(steps, times, texts, *more)
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
                    row[name] = logged_value(float(vals[j])) if numeric else vals[j]
                    stamp = max(stamp, float(times[j]))
            row["_timestamp"] = stamp
            yield row
