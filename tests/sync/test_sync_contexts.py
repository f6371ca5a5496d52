"""Metric-context series in the dataset: ``context_points`` / ``context_texts``, and a watermark from before they
were exported.

The Hugging Face Hub cannot be reached from the test machines, so it is FAKED here by
trackiod.testing.folder_hub.FolderHub (the real huggingface_hub commit operations applied to a folder).
Everything else is real: a SQLite store, the sync engine, Parquet files, DuckDB. The round trip through a
daemon, every rank and ``trackiod pull`` is tests/sync/test_sync_ranks.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import numpy as np

from tests.support.stores import new_run
from trackio_shim.settings import TrackiodSettings
from trackiod.store.writer import Store
from trackiod.sync.engine import SyncEngine
from trackiod.testing.folder_hub import FolderHub

REPO = "me/runs"
VAL = '{"subset":"val"}'


def _write(store: Store, run_id: int, key_id: int, steps: np.ndarray) -> None:
    store.write_series(run_id, key_id, steps, steps.astype(np.float64), steps * 0.5)
    store.count_keys({(run_id, key_id): ("scalar", steps.size, int(steps[-1]))})


def test_context_series_reach_the_dataset_once_even_from_a_watermark_that_predates_them(tmp_path: Path) -> None:
    settings = TrackiodSettings.load({}, home=tmp_path / "home", sync_dataset=REPO, hub=f"folder:{tmp_path / 'hub'}")
    settings.ensure_dirs()
    hub = FolderHub(tmp_path / "hub")
    engine = SyncEngine(settings, hub)
    store = Store(settings.db_path)
    try:
        run_id = new_run(store)
        steps = np.arange(10, dtype=np.int64)
        with store.conn:
            _write(store, run_id, store.key_id("loss"), steps)
            store.update_run(run_id, updated_at=time.time())
        assert engine.sync_repo(REPO).committed
        # Context series written without moving the run's updated_at, and a watermark as a trackiod that did not
        # export context series left it (no context marks): the next pass must still find them, and only them.
        with store.conn:
            _write(store, run_id, store.key_id("acc", store.context_id(VAL)), steps)
            store.write_texts([(run_id, store.key_id("why", store.context_id(VAL)), 3, 1.0, "because")])
        path = settings.sync_dir / "me--runs.json"
        state = json.loads(path.read_text())
        del state["marks"]["context_series"], state["marks"]["context_text_rev"]
        path.write_text(json.dumps(state))
        assert engine.sync_repo(REPO).committed
        assert not engine.sync_repo(REPO).committed  # nothing new: no commit, nothing written twice
    finally:
        store.close()
    root = hub.revision_dir(REPO)
    glob = str(root / "{}" / "**" / "*.parquet")
    con = duckdb.connect()
    assert con.sql(f"SELECT count(*) FROM '{glob.format('points')}'").fetchone() == (10,)  # the plain series once
    rows = con.sql(
        f"SELECT key, context, rank, step, value, seq FROM '{glob.format('context_points')}' ORDER BY seq"
    ).fetchall()
    assert rows == [("acc", VAL, 0, s, s * 0.5, s) for s in range(10)]
    texts = con.sql(f"SELECT key, context, rank, step, value FROM '{glob.format('context_texts')}'").fetchall()
    assert texts == [("why", VAL, 0, 3, "because")]
    # The documented query: one context's series, filtered on the context's JSON.
    picked = con.sql(
        f"SELECT count(*) FROM '{glob.format('context_points')}' WHERE run_id = 'r1' AND (context->>'subset') = 'val'"
    ).fetchone()
    assert picked == (10,)
