"""A numeric series at a few of its steps, reading only the points asked for (``history(samples=N)``).

A sampled history of a long run wants a few hundred rows out of millions: reading every key's whole columns, as
a chart does, costs 24 bytes a point (240 MB for 1M steps x 10 keys). Here a series' chunk rows (``n``,
``step_min``, ``step_max`` and the ``even`` flag of schema version 9) give its steps without reading them
wherever chunks are evenly spaced, and only the other chunks' ``steps`` BLOBs are read. Each asked-for step's
time and value are then read, 8 bytes each, from the one chunk holding its last write, through SQLite's
incremental BLOB I/O. The result is what :func:`~trackiod.read.series.read_series` gives at those steps: the
value written last wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw
import numpy as np

from trackiod.store.codec import decode_floats, decode_steps
from trackiod.store.schema import EVEN_CHUNKS_VERSION, understood_version


@dataclass(frozen=True)
class SeriesIndex:
    """Where each step of one series is stored: enough to read any of its points alone.

    ``span``: ``(base, low, high)`` when the series' points are the unbroken range of steps from ``base``, written
    in step order, of which ``low..high`` (inclusive) are asked for: the common case, where nothing per point is
    made. Otherwise ``stored`` holds the sorted, unique steps and ``where[i]`` the position, in the series' points
    in write order, of the last write of ``stored[i]`` (None: the same position). ``chunk_ids`` and ``starts``
    (the first position of each chunk, then the total) map a position to a chunk and an offset in it.
    """

    span: tuple[int, int, int] | None
    stored: np.ndarray
    where: np.ndarray | None
    chunk_ids: np.ndarray
    starts: np.ndarray

    @property
    def steps(self) -> np.ndarray:
        """The sorted, unique steps asked for."""
        if self.span is None:
            return self.stored
        return np.arange(self.span[1], self.span[2] + 1, dtype=np.int64)

    def positions(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of ``steps`` (sorted) the series has, and the write position of each of those."""
        if self.span is not None:
            base, low, high = self.span
            present = (steps >= low) & (steps <= high)
            return present, steps[present] - base
        if not self.stored.size:
            return np.zeros(steps.size, bool), np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(self.stored, steps), self.stored.size - 1)
        present = self.stored[pos] == steps
        pos = pos[present]
        return present, (pos if self.where is None else self.where[pos])


def series_index(
    conn: apsw.Connection, run_id: int, key_id: int, min_step: int | None = None, max_step: int | None = None
) -> SeriesIndex:
    """The index of one numeric series within ``[min_step, max_step]``, from its chunks' rows."""
    sql = f"SELECT id, n, step_min, step_max, {even_column(conn)} FROM chunks WHERE run_id=? AND key_id=?"
    args: list[Any] = [run_id, key_id]
    if min_step is not None:
        sql += " AND step_max >= ?"
        args.append(min_step)
    if max_step is not None:
        sql += " AND step_min <= ?"
        args.append(max_step)
    meta = np.array(conn.execute(sql + " ORDER BY id", args).fetchall(), dtype=np.int64).reshape(-1, 5)
    return index_of_chunks(conn, meta, min_step, max_step)


def even_column(conn: apsw.Connection) -> str:
    """What to select for a chunk's ``even`` flag: the column from schema version 9 on, else 0 (steps read)."""
    return "even" if understood_version(conn) >= EVEN_CHUNKS_VERSION else "0"


def index_of_chunks(
    conn: apsw.Connection, meta: np.ndarray, min_step: int | None = None, max_step: int | None = None
) -> SeriesIndex:
    """The index of one series from its chunk rows already read: ``meta`` holds one ``(id, n, step_min,
    step_max, even)`` int64 row per chunk, in id order (a chart reads every series' rows in one query)."""
    ids, counts, lows, highs, even = meta.T
    starts = np.zeros(ids.size + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    # An even chunk's gap between steps (0 for the others, whose steps are read).
    strides = np.where(even == 1, (highs - lows) // np.maximum(counts - 1, 1), 0)
    strides[(even == 1) & (counts == 1)] = 1
    if ids.size and bool((strides == 1).all() and (lows[1:] == highs[:-1] + 1).all()):
        low = int(lows[0]) if min_step is None else max(int(lows[0]), min_step)
        high = int(highs[-1]) if max_step is None else min(int(highs[-1]), max_step)
        return SeriesIndex((int(lows[0]), low, high), np.empty(0, np.int64), None, ids, starts)
    raw = _raw_steps(conn, ids, counts, lows, strides)
    ascending = bool((strides > 0).all() and (lows[1:] > highs[:-1]).all())
    where = None
    if not ascending and raw.size > 1 and not bool((raw[1:] > raw[:-1]).all()):
        # Rewound or repeated steps: the last write of each step, ordered by step (as read_series).
        uniq, first_in_rev = np.unique(raw[::-1], return_index=True)
        raw, where = uniq, raw.size - 1 - first_in_rev
    if min_step is not None or max_step is not None:
        lo = int(np.searchsorted(raw, min_step, "left")) if min_step is not None else 0
        hi = int(np.searchsorted(raw, max_step, "right")) if max_step is not None else raw.size
        where = np.arange(lo, hi, dtype=np.int64) if where is None else where[lo:hi]
        raw = raw[lo:hi]
    return SeriesIndex(None, raw, where, ids, starts)


def _raw_steps(
    conn: apsw.Connection,
    ids: np.ndarray,
    counts: np.ndarray,
    lows: np.ndarray,
    strides: np.ndarray,
) -> np.ndarray:
    """Every point's step in write order: computed for evenly spaced chunks, read for the others."""
    unknown = ids[strides == 0].tolist()
    read: dict[int, np.ndarray] = {}
    for first in range(0, len(unknown), 500):  # well under SQLite's limit on bound parameters
        part = unknown[first : first + 500]
        marks = ",".join("?" * len(part))
        for chunk_id, blob in conn.execute(f"SELECT id, steps FROM chunks WHERE id IN ({marks})", part):
            read[chunk_id] = decode_steps(blob)
    parts = [
        read[chunk_id] if stride == 0 else low + stride * np.arange(count, dtype=np.int64)
        for chunk_id, count, low, stride in zip(ids.tolist(), counts.tolist(), lows.tolist(), strides.tolist())
    ]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def points_at(
    conn: apsw.Connection, index: SeriesIndex, steps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, times, values)`` of the series at those of ``steps`` (sorted) it has, read point by point."""
    present, written = index.positions(steps)
    if not written.size:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
    chunk = np.searchsorted(index.starts, written, "right") - 1
    offsets = (written - index.starts[chunk]) * 8
    chunk_ids = index.chunk_ids[chunk].tolist()
    return steps[present], _floats_at(conn, "times", chunk_ids, offsets), _floats_at(conn, "vals", chunk_ids, offsets)


def _floats_at(conn: apsw.Connection, column: str, chunk_ids: list[int], offsets: np.ndarray) -> np.ndarray:
    """One float64 from ``column`` of each chunk at each byte offset (one BLOB handle, moved from row to row)."""
    out = bytearray(8 * len(chunk_ids))
    blob = conn.blob_open("main", "chunks", column, chunk_ids[0], False)
    try:
        for k, (chunk_id, offset) in enumerate(zip(chunk_ids, offsets.tolist())):
            if k:
                blob.reopen(chunk_id)
            blob.seek(offset)
            blob.read_into(out, 8 * k, 8)
    finally:
        blob.close()
    return decode_floats(bytes(out))
