"""A run's history as rows (wandb's ``history()`` / ``scan_history()``), built from whole columns a page at a time.

Each key is read as one column (:func:`~trackiod.read.series.read_series`, texts, rich values); the rows' steps
are the union of the columns' steps (or, with ``keys``, their intersection); each column is then aligned to those
steps with one binary search, and rows are made from Python lists a page at a time, so a row costs one dict and
no per-value numpy access. A full scan of a large run reads its numeric keys in step windows of about
:data:`WINDOW_POINTS` points each, so memory stays bounded by the window, not by the run; ``samples`` picks
rows evenly spread over the steps (the first and last included) before any row is made, and for numeric keys
reads only those rows' points (:mod:`trackiod.read.sampled`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import apsw
import numpy as np

from trackiod.read.keys import run_keys
from trackiod.read.media import media_keys, read_media
from trackiod.read.sampled import points_at, series_index
from trackiod.read.series import merge_mixed, read_series, read_texts

#: Points per numeric key read at a time by a scan of the whole history.
WINDOW_POINTS = 262_144
#: Rows made from one set of Python lists.
PAGE_ROWS = 8192
#: Rows wider than this are made with ``dict(zip(...))`` rather than a generated dict display (see _row_maker).
MAX_DISPLAY_KEYS = 256

_MISSING = object()
_EXACT_INT = 2.0**53

Column = tuple[str, np.ndarray, np.ndarray, Any, bool]


def rows(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    samples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """History rows ``{"_step", key: value..., "_timestamp", "_runtime"}`` in step order, made lazily.

    With ``keys``, only rows where every one of those keys has a value (as wandb's scan_history). With
    ``samples``, at most that many rows, evenly spread over the steps and including the first and last.
    """
    return chain.from_iterable(pages(conn, run, keys, min_step, max_step, samples))


def pages(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    samples: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of :func:`rows` a page (a list) at a time, made lazily.

    A caller streaming rows chains the pages (``itertools.chain.from_iterable``), so that no generator runs
    once per row: at a million rows a second, a generator step per row and per layer is a third of the cost.
    """
    run_id = int(run["id"])
    available = run_keys(conn, run_id)
    rich = {name: entry for name, entry in media_keys(conn, run_id).items() if name not in available}
    wanted = [*available, *rich] if keys is None else [k for k in keys if k in available or k in rich]
    if not wanted or (keys is not None and len(wanted) < len(keys)):
        return
    numeric_only = not any(name in rich or available[name][1] == "text" for name in wanted)
    created = float(run["created_at"])
    if samples is not None and numeric_only:
        yield _sampled(
            conn,
            run_id,
            [(name, available[name][0]) for name in wanted],
            keys is None,
            samples,
            min_step,
            max_step,
            created,
        )
        return
    windows: list[tuple[int | None, int | None]] = [(min_step, max_step)]
    if samples is None and numeric_only:
        windows = _windows(conn, run_id, [available[name][0] for name in wanted], min_step, max_step)
    for lo, hi in windows:
        columns = _read_columns(conn, run_id, wanted, available, rich, lo, hi)
        steps = _row_steps([c[1] for c in columns], union=keys is None)
        if samples is not None:
            steps = _spread(steps, samples)
        for start in range(0, steps.size, PAGE_ROWS):
            yield _page(columns, steps[start : start + PAGE_ROWS], created)


def _sampled(
    conn: apsw.Connection,
    run_id: int,
    key_ids: list[tuple[str, int]],
    union: bool,
    samples: int,
    min_step: int | None,
    max_step: int | None,
    created: float,
) -> list[dict[str, Any]]:
    """The sampled rows of numeric keys, reading each key's chunk index and then only the sampled points.

    In one read transaction: the daemon may fold a live run's tail chunks (delete and rewrite them) between
    reading the index and reading the points; the snapshot keeps the indexed chunks there.
    """
    with conn:
        indexes = [series_index(conn, run_id, key_id, min_step, max_step) for _, key_id in key_ids]
        ranges = [index.span[1:] for index in indexes if index.span is not None]
        if len(ranges) == len(indexes) and len(set(ranges)) == 1:  # every key at every step of one range
            low, high = ranges[0]
            steps = low + _spread_positions(max(high - low + 1, 0), samples)
        else:
            steps = _spread(_row_steps([index.steps for index in indexes], union), samples)
        columns: list[Column] = []
        for (name, _), index in zip(key_ids, indexes):
            col_steps, times, vals = points_at(conn, index, steps)
            columns.append((name, col_steps, times, vals, True))
    return _page(columns, steps, created)


def _spread(steps: np.ndarray, samples: int) -> np.ndarray:
    """At most ``samples`` of ``steps``, evenly spread over them, the first and last included."""
    if steps.size <= samples:
        return steps
    out: np.ndarray = steps[_spread_positions(steps.size, samples)]
    return out


def _spread_positions(size: int, samples: int) -> np.ndarray:
    """The positions of at most ``samples`` of ``size`` rows, evenly spread, the first and last included."""
    if size <= samples:
        return np.arange(size, dtype=np.int64)
    count = max(samples, 1)
    spread = np.linspace(0, size - 1, count) if count > 1 else np.array([size - 1])
    out: np.ndarray = np.unique(spread.round().astype(np.int64))
    return out


def _windows(
    conn: apsw.Connection, run_id: int, key_ids: list[int], min_step: int | None, max_step: int | None
) -> list[tuple[int | None, int | None]]:
    """Step windows of about WINDOW_POINTS points per key (from the chunks' step ranges and counts)."""
    marks = ",".join("?" * len(key_ids))
    row = conn.execute(
        f"SELECT MIN(step_min), MAX(step_max), SUM(n) FROM chunks WHERE run_id=? AND key_id IN ({marks})",
        (run_id, *key_ids),
    ).fetchone()
    if row is None or row[0] is None or not row[2] or row[2] / len(key_ids) <= WINDOW_POINTS:
        return [(min_step, max_step)]
    points = int(row[2])
    lo = int(row[0]) if min_step is None else max(int(row[0]), min_step)
    hi = int(row[1]) if max_step is None else min(int(row[1]), max_step)
    if hi < lo:
        return [(min_step, max_step)]
    count = -(-points // (len(key_ids) * WINDOW_POINTS))
    width = -(-(hi - lo + 1) // count)
    return [(start, min(hi, start + width - 1)) for start in range(lo, hi + 1, width)]


def _read_columns(
    conn: apsw.Connection,
    run_id: int,
    wanted: list[str],
    available: dict[str, tuple[int, str, int]],
    rich: dict[str, tuple[int, str, int]],
    lo: int | None,
    hi: int | None,
) -> list[Column]:
    """``(name, steps, times, values, numeric)`` of each wanted key within ``[lo, hi]``."""
    columns: list[Column] = []
    for name in wanted:
        if name in rich:  # histograms, arrays, images, tables, HTML: dicts (trackiod.read.media)
            media_steps, media_times, media_vals = read_media(conn, run_id, rich[name][0], lo, hi)
            columns.append((name, media_steps, media_times, media_vals, False))
            continue
        key_id, kind, _ = available[name]
        if kind == "text":
            steps, times, text_vals = read_texts(conn, run_id, key_id, lo, hi)
            more_steps, more_times, more_vals = read_series(conn, run_id, key_id, lo, hi)
            if more_steps.size:  # a key with numbers at some steps and text at others: one column
                steps, times, text_vals = merge_mixed(steps, times, text_vals, more_steps, more_times, more_vals)
            columns.append((name, steps, times, text_vals, False))
        else:
            steps, times, vals = read_series(conn, run_id, key_id, lo, hi)
            columns.append((name, steps, times, vals, True))
    return columns


def _row_steps(all_steps: list[np.ndarray], union: bool) -> np.ndarray:
    """The steps that get a row: the union of the columns' (sorted, unique) steps, or their intersection."""
    first = all_steps[0]
    if all(s.size == first.size and np.array_equal(s, first) for s in all_steps[1:]):
        return first  # the common case: every key logged at the same steps
    if not union:
        out = first
        for steps in all_steps[1:]:
            out = np.intersect1d(out, steps, assume_unique=True)
        return out
    merged = np.concatenate(all_steps)
    merged.sort()
    keep = np.ones(merged.size, bool)
    keep[1:] = merged[1:] != merged[:-1]
    return merged[keep]


def _logged_values(values: np.ndarray) -> list[Any]:
    """Stored floats as they were most likely logged: ints where whole and below 2**53 (see ``logged_value``)."""
    with np.errstate(invalid="ignore"):
        whole = (np.trunc(values) == values) & (np.abs(values) < _EXACT_INT)
    if not whole.any():
        out: list[Any] = values.tolist()
        return out
    mixed = values.astype(object)
    mixed[whole] = values[whole].astype(np.int64).astype(object)
    out = mixed.tolist()
    return out


def _page(columns: list[Column], steps: np.ndarray, created: float) -> list[dict[str, Any]]:
    """The rows of ``steps`` (a page), each key present where its column has that step."""
    if not steps.size:
        return []
    lists: list[list[Any]] = []
    stamp = np.zeros(steps.size)
    complete = True
    for _, col_steps, times, vals, numeric in columns:
        pos = np.searchsorted(col_steps, steps)
        np.minimum(pos, max(col_steps.size - 1, 0), out=pos)
        present = col_steps[pos] == steps if col_steps.size else np.zeros(steps.size, bool)
        if numeric:
            values = _logged_values(vals[pos]) if col_steps.size else [None] * steps.size
        else:
            values = [vals[j] for j in pos.tolist()] if col_steps.size else [None] * steps.size
        if bool(present.all()):
            np.maximum(stamp, times[pos], out=stamp)
        else:
            complete = False
            if col_steps.size:
                np.maximum(stamp, np.where(present, times[pos], 0.0), out=stamp)
            for i in np.flatnonzero(~present).tolist():
                values[i] = _MISSING
        lists.append(values)
    runtime = np.maximum(stamp - created, 0.0)
    names = ["_step", *(c[0] for c in columns), "_timestamp", "_runtime"]
    if complete:
        return list(map(_row_maker(tuple(names)), steps.tolist(), *lists, stamp.tolist(), runtime.tolist()))
    rows = zip(steps.tolist(), *lists, stamp.tolist(), runtime.tolist())
    return [{name: value for name, value in zip(names, row) if value is not _MISSING} for row in rows]


@functools.lru_cache(maxsize=64)
def _row_maker(names: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    """A function of one row's values returning the row as a dict keyed by ``names``.

    The function's body is a dict display (``{k0: v0, k1: v1, ...}``), which CPython builds 2-3x faster than
    ``dict(zip(names, values))``: for a one-key scan that is the difference between 0.6M and 1.5M rows/s. The
    source is made of positions only; the names are passed in as values, never written into it.
    """
    if len(names) > MAX_DISPLAY_KEYS:
        return lambda *values: dict(zip(names, values))
    params = ", ".join(f"k{i}" for i in range(len(names)))
    values = ", ".join(f"v{i}" for i in range(len(names)))
    display = ", ".join(f"k{i}: v{i}" for i in range(len(names)))
    factory = eval(f"lambda {params}: lambda {values}: {{{display}}}")
    maker: Callable[..., dict[str, Any]] = factory(*names)
    return maker
