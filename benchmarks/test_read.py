"""Reading one 1M-point series through the store (``trackiod.read.series.read_series``); budget <= 100 ms.

The database is built the way the daemon builds it: ``Store.write_series`` in batches (sealed 1,024-point
chunks plus a tail that is re-folded as it grows), for four keys of one run written interleaved, so the
series read is not one contiguous run of rows. It is read through a query-only connection, as the CLI, the
read API and the dashboard do.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks._support import percentiles

READ_BUDGET_MS = 100.0
KEYS = ("train/loss", "train/lr", "train/grad_norm", "val/loss")
BATCH = 25_000  # points per write_series call: about one daemon commit of 10-key frames at 1M points/s


def _build(path: Path, points: int) -> tuple[int, int, float]:
    from trackiod.store.writer import Store

    store = Store(path)
    started = time.perf_counter()
    with store.conn:
        run_id = int(store.create_run("bench-read", "r1", "reader", {}, {}, "host", 1)["id"])
        key_ids = [store.key_id(k) for k in KEYS]
    rng = np.random.default_rng(0)
    for start in range(0, points, BATCH):
        steps = np.arange(start, min(start + BATCH, points), dtype=np.int64)
        times = 1.7e9 + steps * 0.01
        with store.conn:
            for key_id in key_ids:
                store.write_series(run_id, key_id, steps, times, rng.random(steps.size))
    elapsed = time.perf_counter() - started
    store.close()
    return run_id, key_ids[len(key_ids) // 2], elapsed


@pytest.mark.benchmark(group="read")
def test_read_series_1m(benchmark: Any, tmp_path: Path, figures: Any, mode: Any) -> None:
    from trackiod.read.connection import open_reader
    from trackiod.read.series import read_series

    test = "read one series"
    points = mode.size("read_points")
    run_id, key_id, build_s = _build(tmp_path / "read.db", points)
    figures.add(test, "build: write_series, 4 keys interleaved", 4 * points / build_s, "points/s")
    conn = open_reader(tmp_path / "read.db")
    try:
        steps, times, vals = read_series(conn, run_id, key_id)  # warm the page cache, check the result
        assert steps.size == points and times.size == points and vals.size == points
        assert bool(np.all(np.diff(steps) == 1)), "steps come back sorted, each once"

        timings = []
        for _ in range(mode.size("read_repeats")):
            started = time.perf_counter()
            read_series(conn, run_id, key_id)
            timings.append((time.perf_counter() - started) * 1000)
        p = percentiles(timings, (50, 90))
        figures.add(test, "points in the series", points, "points")
        figures.budget(test, "read_series p50", p["p50"], "ms", READ_BUDGET_MS * points / 1_000_000)
        figures.add(test, "read_series max", max(timings), "ms", note=f"n={len(timings)}")
        figures.add(test, "read_series points/s", points / (p["p50"] / 1000), "points/s")

        benchmark(read_series, conn, run_id, key_id)
    finally:
        conn.close()
    # The dashboard and the read API map the file (open_reader(mapped=True)): pages are not copied in.
    mapped = open_reader(tmp_path / "read.db", mapped=True)
    try:
        read_series(mapped, run_id, key_id)
        timings = []
        for _ in range(mode.size("read_repeats")):
            started = time.perf_counter()
            read_series(mapped, run_id, key_id)
            timings.append((time.perf_counter() - started) * 1000)
        m = percentiles(timings, (50,))
        figures.add(test, "read_series p50, mapped connection", m["p50"], "ms", note=f"ratio {m['p50'] / p['p50']:.2f}")
    finally:
        mapped.close()
    figures.check(test)
