"""A whole numeric series for a reduction (the dashboard's charts): every value, its steps known from the chunk rows.

A chart of 100 runs x 100,000 steps reduces 10M points to pixel columns. :func:`~trackiod.read.series.read_series`
reads each chunk's ``steps`` and ``vals`` BLOBs and joins them into fresh arrays: half of what it reads is steps
that the chunk rows already give (``step_min``, ``step_max``, ``n`` and the ``even`` flag of schema version 9,
through :func:`~trackiod.read.sampled.series_index`), and the fresh 800 KB arrays of each series cost more in page
faults than the reading (docs/benchmarks.md, rounds 4 and 5). Here only the ``vals`` BLOBs are read, through one
incremental BLOB handle moved from chunk to chunk, into a buffer the caller reuses for every series; when a
series' steps are one unbroken range they stay a :class:`StepSpan` (no array at all). The result is what
``read_series`` gives: one value per step, the last written, in step order.
"""

from __future__ import annotations

from typing import Any

import apsw
import numpy as np

from trackio_shim.errors import TrackiodError
from trackiod.read.sampled import SeriesIndex, even_column, index_of_chunks, series_index


class StepSpan:
    """The steps ``low, low + 1, ..., high`` without their array: what a reduction asks of an ndarray of steps
    (``size``, ``dtype``, ``searchsorted``, ``max``), answered by arithmetic; ``np.asarray`` makes the array."""

    dtype = np.dtype(np.int64)

    def __init__(self, low: int, high: int) -> None:
        self.low = int(low)
        self.high = int(high)
        self.size = max(0, self.high - self.low + 1)

    def searchsorted(self, v: Any, side: str = "left") -> Any:
        """Where ``v`` would go, as ``np.searchsorted(np.asarray(self), v, side)`` answers (an int for a scalar)."""
        a = np.asarray(v)
        if a.dtype.kind == "f":  # whole steps: s < v iff s < ceil(v); s <= v iff s <= floor(v)
            a = np.ceil(a) if side == "left" else np.floor(a)
        at = np.clip(a - self.low + (1 if side == "right" else 0), 0, self.size).astype(np.intp)
        return at if at.ndim else int(at)

    def max(self) -> int:
        return self.high

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.arange(self.low, self.high + 1, dtype=dtype or np.int64)

    def __repr__(self) -> str:
        return f"StepSpan({self.low}, {self.high})"


#: A series' steps (or other x values, ascending): an array, or an unbroken range of steps without one.
Steps = np.ndarray | StepSpan


class Scratch:
    """A float64 buffer reused for every series of one request (fresh memory is paid for in page faults)."""

    def __init__(self) -> None:
        self.buf = np.empty(0)

    def take(self, size: int) -> np.ndarray:
        if self.buf.size < size:
            self.buf = np.empty(max(size, 2 * self.buf.size))
        return self.buf[:size]


class ChartChunks:
    """The chunk rows of every series of one chart, read in one query (they were two queries per series: at 100
    runs a chart's queries cost ~15 % of its request, docs/benchmarks.md round 5).

    Use it inside one read transaction (``with conn:``) that also covers every :meth:`read`: the writer folds a
    series' tail chunks into sealed ones (new ids), so rows read outside that snapshot may name chunks gone.
    """

    def __init__(self, conn: apsw.Connection, series: list[tuple[int, int]]) -> None:
        self.conn = conn
        self.rows: dict[tuple[int, int], np.ndarray] = {}
        self.complete = False  # False: too many runs and keys for one query; each series is read alone
        run_ids = sorted({run_id for run_id, _ in series})
        key_ids = sorted({key_id for _, key_id in series})
        if not series or len(run_ids) + len(key_ids) > 900:  # SQLite's limit on bound parameters: per series
            return
        meta = np.array(
            conn.execute(
                f"SELECT run_id, key_id, id, n, step_min, step_max, {even_column(conn)}, length(vals) FROM chunks "
                f"WHERE run_id IN ({','.join('?' * len(run_ids))}) AND key_id IN ({','.join('?' * len(key_ids))}) "
                "ORDER BY run_id, key_id, id",
                (*run_ids, *key_ids),
            ).fetchall(),
            dtype=np.int64,
        ).reshape(-1, 8)
        cuts = np.flatnonzero((meta[1:, 0] != meta[:-1, 0]) | (meta[1:, 1] != meta[:-1, 1])) + 1
        for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), len(meta)]):
            if stop > start:
                self.rows[(int(meta[start, 0]), int(meta[start, 1]))] = meta[start:stop, 2:]
        self.complete = True

    def read(self, run_id: int, key_id: int, scratch: Scratch) -> tuple[Steps, np.ndarray]:
        """What :func:`read_step_values` gives, from the rows read already (or, for a chart of more runs and
        keys than one query may name, read alone)."""
        if not self.complete:
            return read_step_values(self.conn, run_id, key_id, scratch)
        rows = self.rows.get((run_id, key_id), np.empty((0, 6), np.int64))
        _check_lengths(rows[:, 0], rows[:, 1], rows[:, 5])
        return _values(self.conn, index_of_chunks(self.conn, rows[:, :5]), scratch)


def read_step_values(conn: apsw.Connection, run_id: int, key_id: int, scratch: Scratch) -> tuple[Steps, np.ndarray]:
    """``(steps, values)`` of one whole numeric series, as ``read_series`` gives them without times.

    ``steps`` is a :class:`StepSpan` when they are one unbroken range written in order (the common case), else
    an int64 array. ``values`` may be a view of ``scratch``: valid until its next use; copy it to keep it.

    Raises:
        TrackiodError: a chunk's ``vals`` BLOB does not hold ``n`` values (a damaged file).
    """
    with conn:  # one read snapshot: the writer folds a series' tail chunks into sealed ones (new ids)
        index = series_index(conn, run_id, key_id)
        if index.chunk_ids.size:
            lengths = conn.execute(
                f"SELECT length(vals) FROM chunks WHERE id IN ({','.join('?' * index.chunk_ids.size)}) ORDER BY id",
                index.chunk_ids.tolist(),
            ).fetchall()
            _check_lengths(index.chunk_ids, np.diff(index.starts), np.array(lengths, np.int64).reshape(-1))
        read = _values(conn, index, scratch)
    return read


def _check_lengths(ids: np.ndarray, counts: np.ndarray, lengths: np.ndarray) -> None:
    """Every chunk's ``vals`` BLOB holds its ``n`` values (checked on the rows, not per BLOB handle).

    Raises:
        TrackiodError: one does not (a damaged file).
    """
    bad = np.flatnonzero(lengths != counts * 8)
    if bad.size:
        k = int(bad[0])
        raise TrackiodError(
            f"chunk {int(ids[k])} holds {int(lengths[k])} bytes of values for {int(counts[k])} points: the database "
            f"file is damaged (restore it from a backup or a sync mirror)"
        )


def _values(conn: apsw.Connection, index: SeriesIndex, scratch: Scratch) -> tuple[Steps, np.ndarray]:
    """The series' steps and its values read into ``scratch`` (lengths checked already)."""
    ids = index.chunk_ids.tolist()
    total = int(index.starts[-1])
    values = scratch.take(total)
    if ids:
        _read_vals(conn, ids, index.starts.tolist(), values)
    if index.span is not None:
        base, low, high = index.span
        return StepSpan(low, high), values[low - base : high - base + 1]
    if index.where is not None:
        return index.stored, values[index.where]
    return index.stored, values


def _read_vals(conn: apsw.Connection, ids: list[int], starts: list[int], out: np.ndarray) -> None:
    """Each chunk's ``vals`` BLOB into ``out`` at its first point's position (one handle, moved row to row).
    The lengths were checked on the chunk rows, so the loop only moves the handle and reads."""
    into = out.data.cast("B")
    blob = conn.blob_open("main", "chunks", "vals", ids[0], False)
    reopen, read_into = blob.reopen, blob.read_into
    try:
        read_into(into, 0, (starts[1] - starts[0]) * 8)
        for chunk_id, start, stop in zip(ids[1:], starts[1:-1], starts[2:]):
            reopen(chunk_id)
            read_into(into, start * 8, (stop - start) * 8)
    finally:
        blob.close()
