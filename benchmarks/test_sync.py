"""A sync pass: export what changed to Parquet and commit it (to the folder-backed fake Hub: no network here).

Measured against a floor in the same run: pyarrow writing the same rows, from ready arrays, to one Parquet
file. A full pass reads the series from SQLite, builds the tables and writes one file per kind and run; an
incremental pass after 1% more points must cost a small fraction of a full one (it reads only the new tail).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = "bench/runs"
KEYS = ("train/loss", "train/lr", "train/grad_norm", "val/loss")
BATCH = 25_000


def _append(path: Path, start: int, stop: int) -> None:
    from trackiod.store.writer import Store

    store = Store(path)
    with store.conn:
        found = store.find_run("bench-sync", "r1", None)
        run_id = int(found["id"] if found else store.create_run("bench-sync", "r1", "r", {}, {}, "h", 1)["id"])
        key_ids = [store.key_id(k) for k in KEYS]
    rng = np.random.default_rng(start)
    for first in range(start, stop, BATCH):
        steps = np.arange(first, min(first + BATCH, stop), dtype=np.int64)
        with store.conn:
            for key_id in key_ids:
                store.write_series(run_id, key_id, steps, 1.7e9 + steps * 0.01, rng.random(steps.size))
            store.update_run(run_id, updated_at=time.time())
    store.close()


def test_sync_pass(benchmark: Any, tmp_path: Path, figures: Any, mode: Any) -> None:
    from trackio_shim.settings import TrackiodSettings
    from trackiod.sync.engine import SyncEngine
    from trackiod.testing.folder_hub import FolderHub

    test = "sync pass"
    points = mode.size("sync_points")
    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path / "home"), "TRACKIOD_SYNC_DATASET": REPO})
    settings.ensure_dirs()
    _append(settings.db_path, 0, points)
    engine = SyncEngine(settings, FolderHub(tmp_path / "hub"))

    started = time.perf_counter()
    outcome = engine.sync_repo(REPO)
    full_s = time.perf_counter() - started
    assert outcome.points == len(KEYS) * points

    rows = len(KEYS) * points
    floor_table = pa.table(
        {
            "project": pa.array(["bench-sync"] * rows),
            "run_id": pa.array(["r1"] * rows),
            "key": pa.array(np.repeat(np.array(KEYS, dtype=object), points)),
            "step": np.tile(np.arange(points, dtype=np.int64), len(KEYS)),
            "timestamp": np.random.default_rng(1).random(rows),
            "value": np.random.default_rng(2).random(rows),
            "seq": np.tile(np.arange(points, dtype=np.int64), len(KEYS)),
        }
    )
    started = time.perf_counter()
    pq.write_table(floor_table, tmp_path / "floor.parquet", compression="zstd")
    floor_s = time.perf_counter() - started

    extra = max(points // 100, 1)
    _append(settings.db_path, points, points + extra)
    started = time.perf_counter()
    outcome = engine.sync_repo(REPO)
    incremental_s = time.perf_counter() - started
    assert outcome.points == len(KEYS) * extra

    figures.add(test, "points exported in the full pass", rows, "points")
    figures.add(
        test, "full pass: read, build, write, commit", rows / full_s, "points/s", note=f"{full_s * 1000:.0f} ms"
    )
    figures.add(
        test, "floor: pyarrow write of the same rows", rows / floor_s, "points/s", note=f"{floor_s * 1000:.0f} ms"
    )
    figures.add(test, "full pass / floor", full_s / floor_s, "x")
    figures.add(test, "incremental pass (+1% points)", incremental_s * 1000, "ms")
    figures.add(test, "incremental / full", incremental_s / full_s, "x")
    assert incremental_s < full_s, "an incremental pass must not redo the full export"

    def again() -> None:
        _append(settings.db_path, points + extra, points + extra + 10)
        engine.sync_repo(REPO)

    benchmark.pedantic(again, rounds=1, iterations=1)
