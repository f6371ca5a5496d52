"""Reduce the series of one chart to a shared grid of pixel columns, keeping each column's min and max.

The server knows the chart's width in pixels. Every series of a chart (one metric, many runs) is cut into the
same ``width`` equal spans of x; each span keeps its lowest and highest value, in the order they occurred, at two
fixed x positions inside the column. A line through them covers the same pixels as the full series (within one
pixel column a line shows its vertical extent), so spikes survive and nothing is averaged away. Because the grid
is shared, all runs of a chart come back aligned on one x array of at most ``2 * width`` values: the browser
draws 100 runs without joining 100 different x arrays.

Sparse charts (no run has more than two points per pixel, and the union of their x values fits in the grid) are
sent exactly instead (:func:`align_exact`).
"""

from __future__ import annotations

import numpy as np

#: Widest chart the server will reduce for; wider requests are clamped (a 4K screen is 3,840 pixels).
MAX_WIDTH = 4096


def finite(y: np.ndarray) -> np.ndarray:
    """``y`` with infinities as NaN: a chart cannot draw them, and NaN is sent as a gap (null)."""
    ok = np.isfinite(y)
    return y if bool(ok.all()) else np.where(ok, y, np.nan)


def minmax_columns(x: np.ndarray, y: np.ndarray, x0: float, x1: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel column's min and max of ``y`` (``x`` ascending), in the order they occurred.

    Returns ``(cols, vals)``: the columns that have data, and a ``(len(cols), 2)`` array holding, per column, the
    extreme that came first and the one that came second, so a line through them keeps the series' shape. A
    column whose points are all NaN holds NaN twice (a gap). Columns are ``width`` equal spans of ``[x0, x1]``.
    """
    width = max(1, min(int(width), MAX_WIDTH))
    if not x.size:
        return np.empty(0, np.int64), np.empty((0, 2))
    step = ((x1 - x0) or 1.0) / width
    # Column boundaries by binary search: cheaper than computing a column for each of a million points.
    inner = np.searchsorted(x, x0 + np.arange(1, width) * step, side="left")
    bounds = np.concatenate(([np.searchsorted(x, x0, side="left")], inner, [np.searchsorted(x, x1, side="right")]))
    cols = np.flatnonzero(bounds[1:] > bounds[:-1])
    starts, ends = bounds[cols], bounds[cols + 1]
    nan = np.isnan(y)
    low = np.where(nan, np.inf, y) if nan.any() else y
    high = np.where(nan, -np.inf, y) if low is not y else y
    counts = ends - starts
    vals = np.empty((cols.size, 2))
    if cols.size and counts.min() == counts.max() and ends[-1] - starts[0] == counts[0] * cols.size:
        # Evenly filled, contiguous columns (the usual case): one 2-D pass instead of a loop.
        per = int(counts[0])
        lo2 = low[starts[0] : ends[-1]].reshape(cols.size, per)
        hi2 = high[starts[0] : ends[-1]].reshape(cols.size, per)
        min_at, max_at = lo2.argmin(axis=1), hi2.argmax(axis=1)
        rows = np.arange(cols.size)
        mins, maxs = lo2[rows, min_at], hi2[rows, max_at]
    elif cols.size and int(counts.max()) * cols.size <= 2 * y.size:
        # Nearly even columns: gather them into a padded 2-D block (padding can never win a min or a max).
        per = int(counts.max())
        offsets = np.arange(per)
        idx = starts[:, None] + offsets[None, :]
        pad = offsets[None, :] >= counts[:, None]
        np.minimum(idx, y.size - 1, out=idx)
        lo2 = np.where(pad, np.inf, low[idx])
        hi2 = np.where(pad, -np.inf, high[idx])
        min_at, max_at = lo2.argmin(axis=1), hi2.argmax(axis=1)
        rows = np.arange(cols.size)
        mins, maxs = lo2[rows, min_at], hi2[rows, max_at]
    else:
        min_at = np.empty(cols.size, np.int64)
        max_at = np.empty(cols.size, np.int64)
        for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            min_at[i] = low[s:e].argmin()
            max_at[i] = high[s:e].argmax()
        mins, maxs = low[starts + min_at], high[starts + max_at]
    min_first = min_at <= max_at
    vals[:, 0] = np.where(min_first, mins, maxs)
    vals[:, 1] = np.where(min_first, maxs, mins)
    vals[~np.isfinite(vals)] = np.nan  # columns with only NaN
    return cols, vals


def align_exact(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every point of every series on the union of their x values; NaN where a series has no point there."""
    if not xs:
        return np.empty(0), []
    grid = np.unique(np.concatenate(xs))
    out = []
    for x, y in zip(xs, ys):
        column = np.full(grid.size, np.nan)
        if x.size:
            column[np.searchsorted(grid, x)] = y
        out.append(column)
    return grid, out


def align_columns(
    xs: list[np.ndarray], ys: list[np.ndarray], x0: float, x1: float, width: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """All series reduced to the shared column grid; columns no series has data in are left out."""
    width = max(1, min(int(width), MAX_WIDTH))
    step = ((x1 - x0) or 1.0) / width
    table = np.full((len(xs), width, 2), np.nan)
    used = np.zeros(width, bool)
    for i, (x, y) in enumerate(zip(xs, ys)):
        cols, vals = minmax_columns(x, y, x0, x1, width)
        table[i, cols] = vals
        used[cols] = True
    keep = np.flatnonzero(used)
    grid = np.empty((keep.size, 2))
    grid[:, 0] = x0 + (keep + 0.25) * step
    grid[:, 1] = x0 + (keep + 0.75) * step
    return grid.ravel(), [table[i, keep].ravel() for i in range(len(xs))]


def align(
    xs: list[np.ndarray], ys: list[np.ndarray], width: int, x_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, list[np.ndarray], bool]:
    """One chart's series on one x array: ``(x, [y per series], reduced)``; exact when that is small enough."""
    width = max(1, min(int(width), MAX_WIDTH))
    ys = [finite(y) for y in ys]
    dense = any(x.size > 2 * width for x in xs)
    if not dense and sum(x.size for x in xs) <= 200 * width:
        grid, cols = align_exact(xs, ys)
        if grid.size <= 4 * width:
            return grid, cols, False
    if x_range is None:
        lows = [float(x[0]) for x in xs if x.size]
        highs = [float(x[-1]) for x in xs if x.size]
        x_range = (min(lows), max(highs)) if lows else (0.0, 1.0)
    grid, cols = align_columns(xs, ys, x_range[0], x_range[1], width)
    return grid, cols, True
