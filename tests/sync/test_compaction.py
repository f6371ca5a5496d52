"""Compaction of the dataset's part files, and the partition layout engines prune on.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here by
trackiod.testing.folder_hub.FolderHub: it applies the real huggingface_hub ``CommitOperationAdd`` /
``CommitOperationDelete`` objects to a folder, one revision folder per commit swapped in by one rename, as a
Hub commit is atomic. Readers resolve the current revision once per read, as a reader of the Hub pinned to a
commit does. Everything else is real: a SQLite store, the sync engine, Parquet files, pyarrow and DuckDB readers.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.support.stores import new_run
from trackio_shim.settings import TrackiodSettings
from trackiod.store.writer import Store
from trackiod.sync.compaction import choose, part_tick
from trackiod.sync.engine import SyncEngine
from trackiod.testing.folder_hub import FolderHub

REPO = "me/runs"
PER_TICK = 50


def _settings(tmp_path: Path) -> TrackiodSettings:
    return TrackiodSettings.load({}, home=tmp_path / "home", sync_dataset=REPO, hub=f"folder:{tmp_path / 'hub'}")


def _log_tick(store: Store, run_id: int, tick: int) -> None:
    """One tick's points of keys "a" and "b": steps tick*PER_TICK ... (tick+1)*PER_TICK - 1."""
    steps = np.arange(tick * PER_TICK, (tick + 1) * PER_TICK, dtype=np.int64)
    with store.conn:
        for key in ("a", "b"):
            store.write_series(run_id, store.key_id(key), steps, steps.astype(np.float64), steps * 0.5)
            store.count_keys({(run_id, store.key_id(key)): ("scalar", steps.size, int(steps[-1]))})
        store.update_run(run_id, updated_at=time.time() + tick, last_step=int(steps[-1]))


def _read_steps(root: Path) -> dict[str, list[int]]:
    """Each key's steps as one pinned revision of the dataset holds them (pyarrow dataset scan)."""
    table = ds.dataset(str(root / "points"), format="parquet").to_table(columns=["key", "step"])
    out: dict[str, list[int]] = {}
    for key, step in zip(table["key"].to_pylist(), table["step"].to_pylist()):
        out.setdefault(key, []).append(step)
    return out


def test_choose_keeps_files_bounded_and_merges_geometrically() -> None:
    assert part_tick("abcd0123-00000007.parquet", "abcd0123") == 7
    assert part_tick("abcd0123-00000009-c.parquet", "abcd0123") == 9
    assert part_tick("ffff0000-00000007.parquet", "abcd0123") is None  # another node's file is never touched
    small = [(t, f"p{t}", 10) for t in range(1, 5)]
    assert choose(small, 4) == []
    big = [(0, "base", 10_000), *[(t, f"p{t}", 10) for t in range(1, 6)]]
    assert choose(big, 4) == ["p1", "p2", "p3", "p4", "p5"]  # the big old file is left alone
    even = [(t, f"p{t}", 10) for t in range(1, 7)]
    assert choose(even, 4) == [f"p{t}" for t in range(1, 7)]


def test_compaction_under_concurrent_readers_never_shows_a_row_twice_or_misses_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    engine = SyncEngine(settings, hub, compact_at=4)
    store = Store(settings.db_path)
    run_id = new_run(store)
    problems: list[str] = []
    reads = {"pyarrow": 0, "duckdb": 0}
    done = threading.Event()
    synced = [0]  # ticks whose commit finished: a reader must see at least these rows

    def reader() -> None:
        try:
            read_until_done(duckdb.connect())
        except Exception as exc:  # a reader's failure is the test's failure
            problems.append(repr(exc))

    def read_until_done(con: duckdb.DuckDBPyConnection) -> None:
        while not done.is_set():
            floor = synced[0] * PER_TICK
            if not hub.repo_dir(REPO).is_dir():
                continue
            root = hub.revision_dir(REPO)  # pinned to one commit, as hf:// readers at a revision are
            if not (root / "points").is_dir():
                continue
            for key, steps in _read_steps(root).items():
                if sorted(steps) != list(range(len(steps))) or len(steps) < floor:
                    problems.append(f"pyarrow {key}: {len(steps)} rows, {len(set(steps))} distinct, floor {floor}")
            reads["pyarrow"] += 1
            glob = str(root / "points" / "**" / "*.parquet")
            count, distinct = con.sql(
                f"SELECT count(*), count(DISTINCT (key, step)) FROM read_parquet('{glob}')"
            ).fetchone() or (0, 0)
            if count != distinct or count < 2 * floor:
                problems.append(f"duckdb: {count} rows, {distinct} distinct, floor {2 * floor}")
            reads["duckdb"] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    ticks = 40
    try:
        for tick in range(ticks):
            _log_tick(store, run_id, tick)
            assert engine.sync_repo(REPO).committed
            synced[0] = tick + 1
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        store.close()
    assert not problems, problems[:5]
    assert reads["pyarrow"] > 0 and reads["duckdb"] > 0
    compactions = [c for c in hub.commits(REPO) if c["message"].startswith("trackiod compaction")]
    assert compactions, "no compaction commit"
    # Every row exactly once at the end, and the run's folder stays small: compact_at plus about log2(ticks).
    final = _read_steps(hub.revision_dir(REPO))
    assert {k: sorted(v) for k, v in final.items()} == {k: list(range(ticks * PER_TICK)) for k in ("a", "b")}
    folder = hub.revision_dir(REPO) / "points" / "project=proj" / "run_id=r1"
    files = list(folder.glob("*.parquet"))
    assert len(files) <= 4 + math.ceil(math.log2(ticks)) + 1, sorted(f.name for f in files)
    state = engine.files.load(REPO)
    assert state.parts["points/project=proj/run_id=r1"] == len(files)


def test_hive_partitions_are_recognised_and_pruned(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    engine = SyncEngine(settings, hub)
    store = Store(settings.db_path)
    try:
        ids = [new_run(store, f"r{i}") for i in range(3)]
        for tick in range(2):
            for run_id in ids:
                _log_tick(store, run_id, tick)
            engine.sync_repo(REPO)
    finally:
        store.close()
    root = hub.revision_dir(REPO)
    assert sorted(p.name for p in (root / "points" / "project=proj").iterdir()) == [
        "run_id=r0",
        "run_id=r1",
        "run_id=r2",
    ]
    # pyarrow: the folders are Hive partitions (the files' own columns are dictionaries, as pyarrow infers them).
    dataset = ds.dataset(
        str(root / "points"), format="parquet", partitioning=ds.HivePartitioning.discover(infer_dictionary=True)
    )
    assert len(list(dataset.get_fragments())) == 6
    assert len(list(dataset.get_fragments(filter=ds.field("run_id") == "r1"))) == 2
    # DuckDB detects the partitions from the glob and reads only the files of the run asked for.
    glob = str(root / "points" / "**" / "*.parquet")
    plan = "\n".join(
        str(row[1])
        for row in duckdb.sql(f"EXPLAIN ANALYZE SELECT count(*) FROM '{glob}' WHERE run_id = 'r1'").fetchall()
    )
    assert "Scanning Files: 2/6" in plan, plan
    assert duckdb.sql(f"SELECT count(*) FROM '{glob}' WHERE run_id = 'r1'").fetchone() == (2 * 2 * PER_TICK,)
    # pandas (pyarrow's directory read) reads the same rows with the partition columns merged.
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(root / "points")
    assert len(frame) == 3 * 2 * 2 * PER_TICK and set(frame["run_id"].astype(str)) == {"r0", "r1", "r2"}
