"""A chart request reduces each series as soon as it is read (trackiod.dashboard.downsample.SeriesReducer) instead
of holding all of them for :func:`align`: 100 series of 100,000 points were 160 MB of fresh memory per request,
whose page faults cost more than the reading (docs/benchmarks.md, round 4). The answer must be the same."""

from __future__ import annotations

import numpy as np
import pytest

from trackiod.dashboard.downsample import SeriesReducer, align


def _series(rng: np.random.Generator, start: int, points: int, gaps: bool) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(start, start + points, dtype=np.int64)
    y = np.cumsum(rng.standard_normal(points))
    if gaps and points:
        y[rng.integers(0, points, max(1, points // 50))] = np.nan
        y[rng.integers(0, points)] = np.inf
    return x, y


@pytest.mark.parametrize("sizes", [[5_000, 3, 10_000, 0, 400], [10, 20, 30], [1_000, 1_000], [0, 0]])
@pytest.mark.parametrize("zoom", [None, (100.0, 900.0)])
def test_the_same_answer_as_align(sizes: list[int], zoom: tuple[float, float] | None) -> None:
    rng = np.random.default_rng(sum(sizes))
    series = [_series(rng, i * 7, n, gaps=i % 2 == 0) for i, n in enumerate(sizes)]
    if zoom is not None:
        series = [(x[(x >= zoom[0]) & (x <= zoom[1])], y[(x >= zoom[0]) & (x <= zoom[1])]) for x, y in series]
    # What the chart request knows beforehand: the zoom, or the steps stored (the chunks' bounds).
    stored = [(int(x[0]), int(x[-1])) for x, _ in series if x.size]
    known = zoom or ((float(min(s[0] for s in stored)), float(max(s[1] for s in stored))) if stored else None)
    width = 300
    expected = align([x for x, _ in series], [y for _, y in series], width, zoom)
    reducer = SeriesReducer(width, known, zoom)
    for x, y in series:
        reducer.add(x, y)
    grid, columns, reduced = reducer.result()
    assert reduced == expected[2]
    np.testing.assert_array_equal(grid, expected[0])
    assert len(columns) == len(expected[1])
    for got, want in zip(columns, expected[1]):
        np.testing.assert_array_equal(got, want)
    if any(x.size > 2 * width for x, _ in series):
        assert sum(part is None for part in reducer.parts) >= 1, "a dense series is not kept whole"
