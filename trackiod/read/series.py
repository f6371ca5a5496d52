"""Reading one series of a run back: numbers from packed chunks, texts row by row, and the two merged.

The building block of every other read (history, ranks, contexts, the dashboard's charts); the chunks' byte
format is :mod:`trackiod.store.codec`'s.
"""

from __future__ import annotations

from typing import Any

import apsw
import numpy as np

from trackiod.read.media import rows_by_step
from trackiod.store.codec import decode_floats, decode_steps


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
    steps = decode_steps(b"".join([b[0] for b in blobs]))
    if with_times:
        times = decode_floats(b"".join([b[1] for b in blobs]))
    vals = decode_floats(b"".join([b[-1] for b in blobs]))
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
    """One text series as (steps, times, texts), sorted by step, one text per step (the last logged)."""
    steps, times, rows = rows_by_step(conn, "texts", "value", run_id, key_id, min_step, max_step)
    return steps, times, [r[2] for r in rows]


def logged_value(value: float) -> Any:
    """A stored float as it was most likely logged: an int when it is whole and below 2**53 (exact as a float)."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def merge_mixed(
    steps: np.ndarray, times: np.ndarray, texts: list[str], n_steps: np.ndarray, n_times: np.ndarray, n_vals: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Texts and numbers of one key as one step-sorted column; where a step has both, the later one wins."""
    all_steps = np.concatenate((steps, n_steps))
    all_times = np.concatenate((times, n_times))
    values: list[Any] = [*texts, *(logged_value(v) for v in n_vals.tolist())]
    order = np.lexsort((all_times, all_steps))
    ordered = all_steps[order]
    keep = np.ones(order.size, bool)
    keep[:-1] = ordered[1:] != ordered[:-1]
    idx = order[keep]
    return all_steps[idx], all_times[idx], [values[i] for i in idx.tolist()]
