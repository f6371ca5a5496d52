"""A dataset in the old layout (version 2, folders without ``key=``): pull still reads it, and the next sync pass
moves it to layout 3 in one commit without a row twice.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here by
trackiod.testing.folder_hub.FolderHub, which applies the real huggingface_hub commit operations to a folder.
The version 2 dataset is written as trackiod 0.1 wrote it (same columns, plain folder names). Everything else
is real: a SQLite store, the sync engine, ``trackiod pull``, Parquet files read back with DuckDB.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import CommitOperationAdd

from tests.support.stores import new_run
from trackio_shim.settings import TrackiodSettings
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, run_keys
from trackiod.read.series import read_series
from trackiod.store.writer import Store
from trackiod.sync.engine import SyncEngine
from trackiod.sync.layout import RUNS_SCHEMA, Marks, collect, run_record, runs_with_state
from trackiod.sync.migration import is_old_layout
from trackiod.sync.pull import pull
from trackiod.sync.state import RepoState
from trackiod.testing.folder_hub import FolderHub

REPO = "me/old"


def _log(store: Store, run_id: int, first: int, count: int) -> None:
    steps = np.arange(first, first + count, dtype=np.int64)
    with store.conn:
        store.write_series(run_id, store.key_id("x"), steps, steps * 1.0, steps * 2.0)
        store.count_keys({(run_id, store.key_id("x")): ("scalar", count, int(steps[-1]))})
        store.update_run(run_id, updated_at=time.time() + first, last_step=int(steps[-1]))


def test_old_layout_is_pulled_then_moved_to_the_new_one_without_a_row_twice(tmp_path: Path) -> None:
    settings = TrackiodSettings.load({}, home=tmp_path / "home", sync_dataset=REPO, hub=f"folder:{tmp_path / 'hub'}")
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    engine = SyncEngine(settings, hub)
    store = Store(settings.db_path)
    run_id = new_run(store)
    _log(store, run_id, 0, 100)
    # What trackiod with layout 2 committed: plain folders, and its watermark saying tick 1, layout 2.
    state = engine.files.load(REPO)
    conn = open_reader(settings.db_path)
    try:
        conn.execute("BEGIN")
        marks = Marks()
        (delta,) = collect(conn, runs_with_state(conn), marks)
        conn.execute("COMMIT")
    finally:
        conn.close()
    old = tmp_path / "old"
    old_points = f"points/proj/r1/{state.source}-00000001.parquet"
    record = {k: v for k, v in run_record(delta.run).items() if k not in ("job_key", "world_size")}
    files = {
        old_points: delta.points,
        "runs/proj/r1.parquet": pa.Table.from_pylist([record], schema=pa.schema(list(RUNS_SCHEMA)[:-2])),
    }
    for path, table in files.items():
        (old / path).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, old / path)
    (old / "trackiod.json").write_text(json.dumps({"layout_version": 2}))
    hub.ensure_repo(REPO, "dataset", private=True)
    hub.commit(REPO, "dataset", [CommitOperationAdd(p, str(old / p)) for p in [*files, "trackiod.json"]], "v2")
    engine.files.save(RepoState(REPO, state.source, tick=1, marks=marks, layout=2))

    # Pull reads the version 2 dataset.
    pulled = TrackiodSettings.load({}, home=tmp_path / "pulled")
    assert pull(pulled, str(hub.revision_dir(REPO))) == ["proj/r1"]
    conn = open_reader(pulled.db_path)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        assert read_series(conn, run["id"], run_keys(conn, run["id"])["x"][0])[0].tolist() == list(range(100))
    finally:
        conn.close()

    # The next pass moves it: every row once, in key=value folders, and none of this node's old files left.
    _log(store, run_id, 100, 50)
    store.close()
    assert engine.sync_repo(REPO).committed
    root = hub.revision_dir(REPO)
    listing = [str(f.relative_to(root)) for f in root.rglob("*.parquet")]
    assert not [p for p in listing if is_old_layout(p)], listing
    assert json.loads((root / "trackiod.json").read_text())["layout_version"] == 3
    steps = duckdb.sql(f"SELECT step FROM '{root}/points/**/*.parquet' ORDER BY step").fetchall()
    assert [s for (s,) in steps] == list(range(150))
    assert duckdb.sql(f"SELECT count(*) FROM '{root}/runs/**/*.parquet'").fetchone() == (1,)
    assert engine.files.load(REPO).layout == 3
