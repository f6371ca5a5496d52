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
from trackiod.sync.compaction import choose, choose_final, part_tick
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


def test_an_ended_runs_folder_is_merged_into_one_file_within_the_cap() -> None:
    three = [(t, f"p{t}", 10) for t in range(1, 4)]
    assert choose_final(three, 16) == ["p1", "p2", "p3"]  # below compact_at: an ended run's files still merge
    assert choose_final(three[:1], 16) == []  # one file: nothing to do
    big = [(0, "base", 10_000), *[(t, f"p{t}", 10) for t in range(1, 6)]]
    assert choose_final(big, 4, limit=1_000) == choose(big, 4)  # past the cap: the geometric rule


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


def test_a_sweep_of_short_runs_ends_with_one_file_per_run_under_concurrent_readers(tmp_path: Path) -> None:
    """Runs of three ticks each, overlapping, never reach ``compact_at``; once a run has ended, each of its folders
    is merged down to one file, in the same atomic commit as any other compaction, while readers read."""
    settings = _settings(tmp_path)
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    engine = SyncEngine(settings, hub, compact_at=4)
    store = Store(settings.db_path)
    runs = 12
    ids = [new_run(store, f"r{i:02d}") for i in range(runs)]
    problems: list[str] = []
    reads = [0]
    done = threading.Event()
    floor: dict[str, int] = {}  # run -> rows of each key committed so far: a reader must see at least these

    def reader() -> None:
        con = duckdb.connect()
        try:
            while not done.is_set():
                wanted = dict(floor)
                if not hub.repo_dir(REPO).is_dir() or not (hub.revision_dir(REPO) / "points").is_dir():
                    continue
                root = hub.revision_dir(REPO)  # pinned to one commit
                glob = str(root / "points" / "**" / "*.parquet")
                rows = con.sql(
                    f"SELECT run_id, key, count(*), count(DISTINCT step), min(step), max(step) "
                    f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY run_id, key"
                ).fetchall()
                seen = {(run, key): (n, distinct, low, high) for run, key, n, distinct, low, high in rows}
                for (run, key), (n, distinct, low, high) in seen.items():
                    if n != distinct or low != 0 or high != n - 1:
                        problems.append(f"{run}/{key}: {n} rows, {distinct} distinct, steps {low}..{high}")
                for run, n in wanted.items():
                    for key in ("a", "b"):
                        if seen.get((run, key), (0,))[0] < n:
                            problems.append(f"{run}/{key}: fewer than the {n} rows committed")
                reads[0] += 1
        except Exception as exc:  # a reader's failure is the test's failure
            problems.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for tick in range(runs + 3):
            logged = {}
            for i, run_id in enumerate(ids):
                if i <= tick < i + 3:  # run i logs during ticks i, i+1, i+2 ...
                    _log_tick(store, run_id, tick - i)
                    logged[f"r{i:02d}"] = (tick - i + 1) * PER_TICK
                elif tick == i + 3:  # ... and ends at the next one (run 0 is marked crashed: it may come back)
                    with store.conn:
                        state = "crashed" if i == 0 else "finished"
                        store.update_run(run_id, state=state, updated_at=time.time() + tick)
            assert engine.sync_repo(REPO).committed
            floor.update(logged)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
        store.close()
    assert not problems, problems[:5]
    assert reads[0] > 0
    root = hub.revision_dir(REPO)
    for i in range(runs):
        files = sorted(f.name for f in (root / "points" / "project=proj" / f"run_id=r{i:02d}").iterdir())
        assert len(files) == (3 if i == 0 else 1) and (i == 0 or files[0].endswith("-c.parquet")), (i, files)
    table = ds.dataset(str(root / "points"), format="parquet").to_table()
    assert table.num_rows == runs * 2 * 3 * PER_TICK
    state = engine.files.load(REPO)
    assert sorted(n for folder, n in state.parts.items() if folder.startswith("points/")) == [1] * (runs - 1) + [3]


def test_ended_runs_due_at_once_are_merged_a_few_folders_per_commit(tmp_path: Path) -> None:
    """As after an upgrade from a trackiod that did not merge ended runs: many ended runs' folders are due at once;
    each commit compacts at most ``folders_per_compaction`` of them, and the others stay due for the next."""
    settings = _settings(tmp_path)
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    store = Store(settings.db_path)
    try:
        ids = [new_run(store, f"r{i}") for i in range(3)]
        older = SyncEngine(settings, hub, compact_at=4, folders_per_compaction=0)  # merges nothing, as before
        for tick in range(2):
            for run_id in ids:
                _log_tick(store, run_id, tick)
            older.sync_repo(REPO)
        with store.conn:
            for run_id in ids:
                store.update_run(run_id, state="finished", updated_at=time.time() + 10)
        engine = SyncEngine(settings, hub, compact_at=4, folders_per_compaction=2)
        counts = []
        for tick in range(2, 4):
            _log_tick(store, ids[0], tick)  # something to commit
            engine.sync_repo(REPO)
            state = engine.files.load(REPO)
            counts.append(sorted(n for folder, n in state.parts.items() if folder.startswith("points/")))
    finally:
        store.close()
    assert counts[0] == [1, 1, 2]  # two folders merged after the first commit, one left due
    assert counts[1] == [1, 1, 1]  # and it after the next (run r0's new part merged again: it ended)
    final = _read_steps(hub.revision_dir(REPO))
    assert sorted(final["a"]) == sorted([*range(4 * PER_TICK), *range(2 * PER_TICK), *range(2 * PER_TICK)])


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
