"""Querying a week of synced ticks with DuckDB over the dataset glob, against the same rows in one file.

A week of sync ticks (2016 five-minute ticks) of 10 runs, 10 keys and 30 steps per tick (6M points) is laid out
as sync leaves it: ``points/project=…/run_id=…/`` folders whose part files were merged after each tick by the
compaction policy sync uses (trackiod.sync.compaction.choose, COMPACT_AT), so each run's folder ends as it would
on the Hub. The same rows are also written as one file (the floor), and, for reference, as one file per run per
tick (the layout before compaction). Each query runs on each layout in the same process; figures are the best
of three (the machine is shared) and the budget is a ratio against the one file: within 2x.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

KEYS = [f"k{i}" for i in range(10)]
STEPS_PER_TICK = 30
SOURCE = "0a1b2c3d"


def _tick(run: int, tick: int) -> pa.Table:
    steps = np.arange(tick * STEPS_PER_TICK, (tick + 1) * STEPS_PER_TICK, dtype=np.int64)
    n = steps.size * len(KEYS)
    rng = np.random.default_rng(run * 100_000 + tick)
    return pa.table(
        {
            "project": pa.array(["bench"] * n),
            "run_id": pa.array([f"r{run}"] * n),
            "key": pa.array(np.repeat(np.array(KEYS, dtype=object), steps.size)),
            "step": np.tile(steps, len(KEYS)),
            "timestamp": 1.7e9 + np.tile(steps, len(KEYS)) * 10.0,
            "value": rng.random(n),
            "seq": np.tile(steps, len(KEYS)),
        }
    )


def _best(query: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = query()
        best = min(best, time.perf_counter() - started)
    return best, result


def test_dataset_query_week_of_ticks(tmp_path: Path, figures: Any, mode: Any) -> None:
    import duckdb

    from trackiod.sync.compaction import COMPACT_AT, choose
    from trackiod.sync.layout import run_folder, write_atomic

    test = "dataset query"
    runs, ticks = mode.size("dataset_runs"), mode.size("dataset_ticks")
    uncompacted_ticks = min(ticks, mode.size("dataset_uncompacted_ticks"))
    compacted, one, parts = tmp_path / "compacted", tmp_path / "one.parquet", tmp_path / "parts"
    everything: list[pa.Table] = []
    files = 0
    started = time.perf_counter()
    for run in range(runs):
        folder: dict[str, pa.Table] = {}  # the run's files on the Hub: name -> rows
        for tick in range(1, ticks + 1):
            table = _tick(run, tick)
            everything.append(table)
            if tick <= uncompacted_ticks:
                (parts / f"r{run}").mkdir(parents=True, exist_ok=True)
                pq.write_table(table, parts / f"r{run}" / f"{tick:08d}.parquet", compression="zstd")
            folder[f"{SOURCE}-{tick:08d}.parquet"] = table
            sizes = [(int(name[9:17]), name, t.num_rows) for name, t in folder.items()]
            merge = choose(sizes, COMPACT_AT)
            if merge:
                merged = pa.concat_tables([folder.pop(name) for name in merge])
                folder[f"{SOURCE}-{tick:08d}-c.parquet"] = merged
        base = compacted / run_folder("points", "bench", f"r{run}")
        for name, table in folder.items():
            write_atomic(table, base / name)
        files += len(folder)
    build_s = time.perf_counter() - started
    rows = sum(t.num_rows for t in everything)
    pq.write_table(pa.concat_tables(everything), one, compression="zstd")
    del everything

    glob = str(compacted / "points" / "**" / "*.parquet")
    con = duckdb.connect()
    one_run = (
        "SELECT step, arg_max(value, seq) AS value FROM {src} WHERE project = 'bench' AND run_id = 'r1' "
        "AND key = 'k3' GROUP BY step ORDER BY step"
    )
    all_runs = (
        "SELECT run_id, key, max(step), min(value), max(value), count(*) FROM {src} GROUP BY run_id, key ORDER BY 1, 2"
    )
    for name, sql in (("one run's metric (documented query)", one_run), ("every run and key (full scan)", all_runs)):
        one_s, expected = _best(lambda sql=sql: con.sql(sql.format(src=f"'{one}'")).fetchall())
        glob_s, got = _best(lambda sql=sql: con.sql(sql.format(src=f"'{glob}'")).fetchall())
        assert got == expected, name
        figures.add(test, f"{name}: one file", one_s * 1000, "ms")
        figures.add(test, f"{name}: dataset glob", glob_s * 1000, "ms", note=f"{files} files")
        figures.budget(test, f"{name}: glob / one file", glob_s / one_s, "x", 2.0)
        if name.startswith("one run"):
            parts_s, got = _best(lambda sql=sql: con.sql(sql.format(src=f"'{parts}/**/*.parquet'")).fetchall(), 1)
            assert uncompacted_ticks < ticks or got == expected
            figures.add(
                test,
                f"{name}: uncompacted, one file per run per tick (reference)",
                parts_s * 1000,
                "ms",
                note=f"{runs * uncompacted_ticks} files, {uncompacted_ticks} ticks",
            )
    figures.add(test, "points", rows, "points", note=f"{runs} runs x {ticks} ticks x {len(KEYS)} keys")
    figures.add(test, "files in the compacted dataset", files, "files", note=f"{files / runs:.0f} per run")
    figures.add(test, "building the layouts (simulated ticks and compaction)", build_s, "s")
    assert files / runs <= COMPACT_AT + np.log2(rows / runs) + 1
    figures.check(test)
