"""Querying a week of synced ticks with DuckDB over the dataset glob, against the same rows in one file.

A week of sync ticks (2016 five-minute ticks) of 10 runs, 10 keys and 30 steps per tick (6M points) is laid out
as sync leaves it: ``points/project=…/run_id=…/`` folders whose part files were merged after each tick by the
compaction policy sync uses (trackiod.sync.compaction.choose, COMPACT_AT), so each run's folder ends as it would
on the Hub. The same rows are also written as one file (the floor), and, for reference, as one file per run per
tick (the layout before compaction). Each query runs on each layout in the same process; figures are the best
of three (the machine is shared) and the budget is a ratio against the one file: within 2x.

A sweep is the other shape: many short runs, each a few ticks, all ended. Sync leaves one file per tick per run
before compaction and, since an ended run's folders are merged down to one, one file per run after; files never
merge across runs (the ``run_id=`` folders forbid it, docs/sync.md), so the sweep's figures are reported against
the one file without a budget: the 2x needs a layout whose folders stop at the project.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

KEYS = [f"k{i}" for i in range(10)]
STEPS_PER_TICK = 30
SOURCE = "0a1b2c3d"


def _run_table(run: int, ticks: int) -> pa.Table:
    """All ticks of one run, tick after tick (rows of tick t are t * len(KEYS) * STEPS_PER_TICK onwards)."""
    t, k, j = np.indices((ticks, len(KEYS), STEPS_PER_TICK)).reshape(3, -1)
    steps = (t * STEPS_PER_TICK + j).astype(np.int64)
    n = steps.size
    return pa.table(
        {
            "project": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), ["bench"]).cast(pa.string()),
            "run_id": pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [f"r{run}"]).cast(pa.string()),
            "key": pa.DictionaryArray.from_arrays(k.astype(np.int32), KEYS).cast(pa.string()),
            "step": steps,
            "timestamp": 1.7e9 + steps * 10.0,
            "value": np.random.default_rng(run).random(n),
            "seq": steps,
        }
    )


def _best(query: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = query()
        best = min(best, time.perf_counter() - started)
    return best, result


@pytest.mark.timeout(1800)
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
    per_tick = len(KEYS) * STEPS_PER_TICK
    for run in range(runs):
        whole = _run_table(run, ticks)
        everything.append(whole)
        folder: dict[str, pa.Table] = {}  # the run's files on the Hub: name -> rows
        for tick in range(1, ticks + 1):
            table = whole.slice((tick - 1) * per_tick, per_tick)
            if tick <= uncompacted_ticks:
                (parts / f"r{run}").mkdir(parents=True, exist_ok=True)
                pq.write_table(table, parts / f"r{run}" / f"{tick:08d}.parquet", compression="zstd")
            folder[f"{SOURCE}-{tick:08d}.parquet"] = table
            sizes = [(int(name[9:17]), name, part.num_rows) for name, part in folder.items()]
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


@pytest.mark.timeout(1800)
def test_dataset_query_sweep_of_short_runs(tmp_path: Path, figures: Any, mode: Any) -> None:
    import duckdb

    from trackiod.sync.compaction import COMPACT_AT
    from trackiod.sync.layout import run_folder, write_atomic

    test = "dataset query, sweep"
    runs, ticks = mode.size("dataset_sweep_runs"), 3
    per_tick, one = len(KEYS) * STEPS_PER_TICK, tmp_path / "one.parquet"
    everything = []
    for run in range(runs):
        whole = _run_table(run, ticks)
        everything.append(whole)
        folder = run_folder("points", "bench", f"r{run}")
        for tick in range(1, ticks + 1):  # before the run ended: one part file per tick
            write_atomic(
                whole.slice((tick - 1) * per_tick, per_tick), tmp_path / "ticks" / folder / f"{tick:08d}.parquet"
            )
        write_atomic(whole, tmp_path / "ended" / folder / f"{SOURCE}-{ticks:08d}-c.parquet")  # after it ended
    whole_sweep = pa.concat_tables(everything)
    pq.write_table(whole_sweep, one, compression="zstd")
    # Reference for a layout whose folders stop at the project (not built): the sweep's rows in COMPACT_AT files
    # of consecutive runs, as compaction across runs would leave them.
    project = tmp_path / "project" / "points" / "project=bench"
    project.mkdir(parents=True)
    bounds = np.linspace(0, whole_sweep.num_rows, COMPACT_AT + 1).astype(int)
    for i, (low, high) in enumerate(itertools.pairwise(bounds.tolist())):
        pq.write_table(whole_sweep.slice(low, high - low), project / f"{SOURCE}-{i:08d}-c.parquet", compression="zstd")
    rows = whole_sweep.num_rows
    del everything, whole_sweep
    con = duckdb.connect()
    queries = {
        "final value per run (a sweep's table)": (
            "SELECT run_id, arg_max(value, step) FROM {src} WHERE project = 'bench' AND key = 'k3' "
            "GROUP BY run_id ORDER BY run_id"
        ),
        "one run's metric (documented query)": (
            "SELECT step, arg_max(value, seq) AS value FROM {src} WHERE project = 'bench' AND run_id = 'r1' "
            "AND key = 'k3' GROUP BY step ORDER BY step"
        ),
    }
    for name, sql in queries.items():
        one_s, expected = _best(lambda sql=sql: con.sql(sql.format(src=f"'{one}'")).fetchall())
        figures.add(test, f"{name}: one file", one_s * 1000, "ms")
        for layout, files in (("ticks", runs * ticks), ("ended", runs), ("project", COMPACT_AT)):
            glob = str(tmp_path / layout / "points" / "**" / "*.parquet")
            glob_s, got = _best(lambda sql=sql, glob=glob: con.sql(sql.format(src=f"'{glob}'")).fetchall())
            assert got == expected, (name, layout)
            label = {
                "ticks": "one file per tick",
                "ended": "ended runs merged, one file per run",
                "project": "reference, merged across runs (not built)",
            }[layout]
            figures.add(test, f"{name}: {label}", glob_s * 1000, "ms", note=f"{files} files")
            figures.add(test, f"{name}: {label} / one file", glob_s / one_s, "x", note="no budget: see the docstring")
    figures.add(test, "points", rows, "points", note=f"{runs} runs x {ticks} ticks x {len(KEYS)} keys")
