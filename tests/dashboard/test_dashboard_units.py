"""Units of the dashboard: the per-pixel reduction, the aligned tables, safe file paths, loopback names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trackiod.dashboard.app import is_loopback, safe_file
from trackiod.dashboard.downsample import align, align_exact, minmax_columns


def _brute(x: np.ndarray, y: np.ndarray, x0: float, x1: float, width: int) -> dict[int, tuple[float, float]]:
    # A point belongs to the column after the last edge at or below it. The edges are x0 + k * span / width in
    # floating point, as minmax_columns defines them: computing (x - x0) / span * width instead rounds some
    # points on an edge into the column before it (54 / 90 * 35 = 20.999...), which is a different rule, not
    # a better one.
    step = ((x1 - x0) or 1.0) / width
    edges = [x0 + k * step for k in range(1, width)]
    cols = np.array([sum(1 for e in edges if float(v) >= e) for v in x], dtype=np.int64)
    out = {}
    for c in np.unique(cols):
        part = y[cols == c]
        finite = part[~np.isnan(part)]
        out[int(c)] = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
    return out


_NAN = float("nan")


@settings(max_examples=200, deadline=None)
# Found by hypothesis: x = 55 lies exactly on edge 21 of 35 over [1, 91].
@example([0.0, _NAN, _NAN, 0.0, _NAN, _NAN, 0.0, 0.0, _NAN, _NAN, _NAN, _NAN, 0.0], 35, True)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=1, max_size=400),
    st.integers(1, 50),
    st.booleans(),
)
def test_minmax_columns_matches_brute_force(values: list[float], width: int, uneven: bool) -> None:
    y = np.array(values)
    # Uneven float x, or whole-number steps as the store returns them (int64).
    x = np.cumsum(np.arange(1, y.size + 1)).astype(np.float64) if uneven else np.arange(y.size, dtype=np.int64)
    cols, vals = minmax_columns(x, y, float(x[0]), float(x[-1]), width)
    expected = _brute(x, y, float(x[0]), float(x[-1]), width)
    assert sorted(expected) == cols.tolist()
    for c, (first, second) in zip(cols.tolist(), vals.tolist()):
        lo, hi = expected[c]
        if np.isnan(lo):
            assert np.isnan(first) and np.isnan(second)
        else:
            assert sorted((first, second)) == [lo, hi]


def test_minmax_columns_enters_each_column_where_the_series_does() -> None:
    x = np.arange(8, dtype=float)
    y = np.array([0, 9, 1, 1, 5, 5, -3, 5], dtype=float)  # column 0: max first; column 1: min last
    cols, vals = minmax_columns(x, y, 0.0, 7.0, 2)
    assert cols.tolist() == [0, 1]
    assert vals[0].tolist() == [0.0, 9.0], "the column starts at 0, its min"
    assert vals[1].tolist() == [5.0, -3.0], "the column starts at 5, its max"
    falling = np.linspace(10, 0, 1000)
    _, vals = minmax_columns(np.arange(1000), falling, 0, 999, 10)
    assert bool(np.all(vals[:, 0] > vals[:, 1])), "a falling series enters each column at its max"
    _, vals = minmax_columns(np.arange(1000), falling[::-1].copy(), 0, 999, 10)
    assert bool(np.all(vals[:, 0] < vals[:, 1])), "a rising one at its min"


def test_a_spike_survives_a_million_points() -> None:
    x = np.arange(1_000_000, dtype=float)
    y = np.zeros(x.size)
    y[123_457] = 42.0
    y[900_001] = -7.0
    grid, cols, reduced = align([x], [y], 800)
    assert reduced and grid.size <= 1600
    assert np.nanmax(cols[0]) == 42.0 and np.nanmin(cols[0]) == -7.0
    assert bool(np.all(np.diff(grid) > 0)), "one ascending x array"


def test_align_exact_puts_gaps_where_a_run_has_no_point() -> None:
    grid, cols = align_exact([np.array([0.0, 2.0]), np.array([1.0, 2.0])], [np.array([1.0, 3.0]), np.array([5.0, 6.0])])
    assert grid.tolist() == [0.0, 1.0, 2.0]
    assert np.isnan(cols[0][1]) and cols[0][2] == 3.0 and np.isnan(cols[1][0]) and cols[1][1] == 5.0


def test_align_reduces_when_any_run_is_dense_and_shares_one_grid() -> None:
    sparse = (np.arange(0, 10_000, 1000, dtype=float), np.ones(10))
    dense = (np.arange(10_000, dtype=float), np.random.default_rng(0).random(10_000))
    grid, cols, reduced = align([sparse[0], dense[0]], [sparse[1], dense[1]], 100)
    assert reduced and len(cols) == 2 and all(c.size == grid.size for c in cols)
    assert np.count_nonzero(~np.isnan(cols[0])) == 20, "ten points, each its own column (min = max)"


def test_infinities_are_sent_as_gaps() -> None:
    _, cols, _ = align([np.arange(3, dtype=float)], [np.array([1.0, np.inf, -np.inf])], 100)
    assert cols[0][0] == 1.0 and np.isnan(cols[0][1]) and np.isnan(cols[0][2])


@pytest.mark.parametrize(
    "relative",
    ["../x", "a/../../x", "/etc/passwd", "a\\..\\x", "a/./b", "a//b", "", "x\x00.js", ".."],
)
def test_safe_file_refuses(tmp_path: Path, relative: str) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "x").write_text("outside")
    assert safe_file(tmp_path / "root", relative) is None


def test_safe_file_follows_no_link_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    (root / "inside.txt").write_text("ok")
    (root / "out").symlink_to(tmp_path / "secret")
    assert safe_file(root, "inside.txt") == (root / "inside.txt").resolve()
    assert safe_file(root, "out") is None
    assert safe_file(root, "missing.txt") is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.0.1", False),
        ("example.com", False),
        ("localhost.evil.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected
