"""Reduce the series of one chart to a shared grid of pixel columns, keeping each column's min and max.

The server knows the chart's width in pixels. Every series of a chart (one metric, many runs) is cut into the
same ``width`` equal spans of x; each span keeps its lowest and highest value (the one nearer the span's first
value first) at two fixed x positions inside the column. A line through them covers the same pixels as the full
series (within one pixel column a line shows its vertical extent), so spikes survive and nothing is averaged
away. Because the grid is shared, all runs of a chart come back aligned on one x array of at most ``2 * width``
values: the browser draws 100 runs without joining 100 different x arrays.

Sparse charts (no run has more than two points per pixel, and the union of their x values fits in the grid) are
sent exactly instead (:func:`align_exact`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trackiod.read.stepvalues import Steps

#: Widest chart the server will reduce for; wider requests are clamped (a 4K screen is 3,840 pixels).
MAX_WIDTH = 4096


def json_values(values: np.ndarray) -> list[Any]:
    """``values`` as a JSON-ready list with gaps as null: NaN, and infinities, which JSON cannot carry either."""
    out: list[Any] = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def finite(y: np.ndarray) -> np.ndarray:
    """``y`` with infinities as NaN: a chart cannot draw them, and NaN is sent as a gap (null)."""
    ok = np.isfinite(y)
    return y if bool(ok.all()) else np.where(ok, y, np.nan)


def minmax_columns(x: Steps, y: np.ndarray, x0: float, x1: float, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel column's min and max of ``y`` (``x`` ascending, int or float, or a :class:`StepSpan`).

    Returns ``(cols, vals)``: the columns that have data, and a ``(len(cols), 2)`` array holding each column's two
    extremes, the one nearer the column's first value first, so the line enters the column where the series
    does (exact for rising and falling stretches; within a noisy column either order covers the same pixels). A
    column whose points are all NaN holds NaN twice (a gap); infinities count as NaN (:func:`finite`). Columns are
    ``width`` equal spans of ``[x0, x1]``.
    """
    width = max(1, min(int(width), MAX_WIDTH))
    if not x.size:
        return np.empty(0, np.int64), np.empty((0, 2))
    step = ((x1 - x0) or 1.0) / width
    edges = x0 + np.arange(1, width) * step
    if x.dtype.kind in "iu":
        # Integer edges keep the search in integers (no float copy of x): for whole x, x >= e iff x >= ceil(e).
        edges = np.ceil(edges).astype(x.dtype)
        first_edge, last_edge = x.dtype.type(np.ceil(x0)), x.dtype.type(np.floor(x1))
    else:
        first_edge, last_edge = x0, x1
    # Column boundaries by binary search: cheaper than computing a column for each of a million points.
    inner = x.searchsorted(edges, side="left")
    lo, hi = int(x.searchsorted(first_edge, side="left")), int(x.searchsorted(last_edge, side="right"))
    bounds = np.clip(np.concatenate(([lo], inner, [hi])), lo, hi)
    cols = np.flatnonzero(bounds[1:] > bounds[:-1])
    if not cols.size:
        return cols, np.empty((0, 2))
    starts = bounds[cols] - lo
    part = y[lo:hi]
    # ufunc.reduceat: one pass over the points for all columns (about 40x faster than an argmin per column).
    mins = np.minimum.reduceat(part, starts)
    maxs = np.maximum.reduceat(part, starts)
    first = part[starts]
    if not (np.isfinite(mins).all() and np.isfinite(maxs).all()):
        # A NaN or an infinity somewhere (min and max carry a NaN through; an infinity is its column's extreme):
        # again without them. Testing the extremes instead of every point saves two passes over the points.
        part = finite(part)
        nan = np.isnan(part)
        mins = np.minimum.reduceat(np.where(nan, np.inf, part), starts)
        maxs = np.maximum.reduceat(np.where(nan, -np.inf, part), starts)
        first = part[starts]
        first = np.where(np.isnan(first), mins, first)
    with np.errstate(invalid="ignore"):  # all-NaN columns: inf - inf
        min_first = np.abs(first - mins) <= np.abs(maxs - first)
    vals = np.empty((cols.size, 2))
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
    return assemble([minmax_columns(x, y, x0, x1, width) for x, y in zip(xs, ys)], x0, x1, width)


def assemble(
    reduced: list[tuple[np.ndarray, np.ndarray]], x0: float, x1: float, width: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Series already reduced by :func:`minmax_columns` on one grid, as that grid's x array and a column each."""
    width = max(1, min(int(width), MAX_WIDTH))
    step = ((x1 - x0) or 1.0) / width
    table = np.full((len(reduced), width, 2), np.nan)
    used = np.zeros(width, bool)
    for i, (cols, vals) in enumerate(reduced):
        table[i, cols] = vals
        used[cols] = True
    keep = np.flatnonzero(used)
    grid = np.empty((keep.size, 2))
    grid[:, 0] = x0 + (keep + 0.25) * step
    grid[:, 1] = x0 + (keep + 0.75) * step
    return grid.ravel(), [table[i, keep].ravel() for i in range(len(reduced))]


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


class SeriesReducer:
    """One chart's series, each reduced as soon as it is read when the grid is known beforehand (``x_range``).

    :func:`align` needs every series at once, so a request held all of them: 100 series of 100,000 points are 160
    MB of fresh memory, and touching it (page faults) cost more than reading it. Given the range (the zoom, or for
    a step x-axis the chunks' step bounds), a series with more than two points per pixel, which makes the chart
    reduced (as in :func:`align`), is reduced at once and its points freed; the others are kept for the end. The
    answer is the one :func:`align` gives for the same series.
    """

    def __init__(self, width: int, x_range: tuple[float, float] | None, zoom: tuple[float, float] | None) -> None:
        self.width = max(1, min(int(width), MAX_WIDTH))
        self.x_range = x_range  # the grid's range when known beforehand (None: keep every series for align)
        self.zoom = zoom  # the range align is given (the request's xmin..xmax), when both are set
        self.parts: list[tuple[np.ndarray, np.ndarray] | None] = []
        self.reduced: list[tuple[np.ndarray, np.ndarray] | None] = []
        self.dense = False

    def add(self, x: Steps, y: np.ndarray, borrowed: bool = False) -> None:
        """Add one series; ``borrowed``: ``y`` is a buffer the caller reuses, copied if the series is kept."""
        if self.x_range is not None and x.size > 2 * self.width:
            self.dense = True
            self.reduced.append(minmax_columns(x, y, *self.x_range, self.width))
            self.parts.append(None)
        else:
            self.reduced.append(None)
            self.parts.append((np.asarray(x), y.copy() if borrowed else y))

    def result(self) -> tuple[np.ndarray, list[np.ndarray], bool]:
        """``(x, [y per series], reduced)`` as :func:`align` answers."""
        if not self.dense:
            kept = [p for p in self.parts if p is not None]
            return align([x for x, _ in kept], [y for _, y in kept], self.width, self.zoom)
        assert self.x_range is not None
        x0, x1 = self.x_range
        reduced = []
        for done, part in zip(self.reduced, self.parts):
            if done is None and part is not None:
                done = minmax_columns(part[0], finite(part[1]), x0, x1, self.width)
            if done is not None:
                reduced.append(done)
        grid, columns = assemble(reduced, x0, x1, self.width)
        return grid, columns, True
