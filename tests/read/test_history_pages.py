"""History rows built a page and a window at a time equal the rows built value by value.

The reference below is the per-value algorithm history rows had before pages and windows (issue 16, part 6):
for every step of the union (or, with ``keys``, the intersection), each key's value where it has one, and the
latest of their timestamps. The run mixes dense and sparse keys, keys that start late, values logged twice for
one step, whole and fractional numbers; windows and pages are made tiny so that every boundary is crossed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.stores import new_run
from trackiod.read import history
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, history_rows, run_keys
from trackiod.read.series import logged_value, read_series
from trackiod.store.writer import Store


def reference(conn: Any, run: dict[str, Any], keys: list[str] | None, lo: int | None, hi: int | None) -> list[Any]:
    available = run_keys(conn, run["id"])
    names = list(available) if keys is None else keys
    cols = {n: read_series(conn, run["id"], available[n][0], lo, hi) for n in names}
    sets = [set(c[0].tolist()) for c in cols.values()]
    steps = sorted(set.union(*sets) if keys is None else set.intersection(*sets))
    out = []
    for step in steps:
        row: dict[str, Any] = {"_step": step}
        stamp = 0.0
        for name, (s, t, v) in cols.items():
            j = int(np.searchsorted(s, step))
            if j < s.size and s[j] == step:
                row[name] = logged_value(float(v[j]))
                stamp = max(stamp, float(t[j]))
        row["_timestamp"] = stamp
        row["_runtime"] = max(0.0, stamp - float(run["created_at"]))
        out.append(row)
    return out


@pytest.fixture
def run_db(tmp_path: Path) -> Path:
    path = tmp_path / "h.db"
    store = Store(path)
    run_id = new_run(store)
    rng = np.random.default_rng(5)
    dense = np.arange(0, 5_000, dtype=np.int64)
    sparse = np.arange(0, 5_000, 7, dtype=np.int64)
    late = np.arange(3_000, 6_000, dtype=np.int64)
    with store.conn:
        ids = {name: store.key_id(name) for name in ("dense", "sparse", "late")}
        store.write_series(run_id, ids["dense"], dense, 1e9 + dense, rng.random(dense.size))
        store.write_series(run_id, ids["sparse"], sparse, 1e9 + sparse + 0.5, np.round(rng.random(sparse.size) * 9))
        store.write_series(run_id, ids["late"], late, 1e9 + late, rng.random(late.size))
        store.write_series(run_id, ids["dense"], np.array([10, 4_000]), np.array([2e9, 2e9]), np.array([1.0, 2.5]))
        store.count_keys({(run_id, i): ("scalar", 1, 5_999) for i in ids.values()})
    store.close()
    return path


@pytest.mark.parametrize("keys", [None, ["dense"], ["sparse", "late"], ["late", "dense", "sparse"]])
@pytest.mark.parametrize("bounds", [(None, None), (100, 4_200), (5_500, None)])
def test_pages_and_windows_match_the_value_by_value_rows(
    run_db: Path, monkeypatch: pytest.MonkeyPatch, keys: list[str] | None, bounds: tuple[Any, Any]
) -> None:
    monkeypatch.setattr(history, "WINDOW_POINTS", 700)
    monkeypatch.setattr(history, "PAGE_ROWS", 333)
    conn = open_reader(run_db)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        got = list(history_rows(conn, run, keys, *bounds))
        assert got == reference(conn, run, keys, *bounds)
        assert [list(r) for r in got[:50]] == [list(r) for r in reference(conn, run, keys, *bounds)[:50]], "key order"
    finally:
        conn.close()


def test_samples_spread_over_the_union_of_steps(run_db: Path) -> None:
    conn = open_reader(run_db)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        full = reference(conn, run, None, None, None)
        got = list(history_rows(conn, run, samples=500))
        assert len(got) == 500 and got[0] == full[0] and got[-1] == full[-1]
        by_step = {r["_step"]: r for r in full}
        assert all(by_step[r["_step"]] == r for r in got)
    finally:
        conn.close()
