"""The writer copies the WAL into the database every ``checkpoint_pages`` pages, at the commit that passes them.

A checkpoint's pause grows with what it copies; once a second at 1M points/s it was 75-100 ms and set the
log() -> ACK p99 (docs/benchmarks.md, "round 5: ingest and ACK"). These tests check the WAL file stays near
the threshold under many large commits, that a reader's snapshot is honoured meanwhile, and that the daemon's
setting reaches the store. Real SQLite files throughout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.support.stores import new_run
from trackio_shim.settings import TrackiodSettings
from trackiod.daemon.writer import build_writer
from trackiod.ingest.ingest import IngestHooks
from trackiod.read.connection import open_reader
from trackiod.read.series import read_series
from trackiod.store.writer import Store

PAGES = 32
COMMIT_POINTS = 4_096  # about 25 pages of chunks a commit
COMMITS = 60  # about 1,500 pages in all: 47 times the threshold


def _commit(store: Store, run_id: int, key_id: int, start: int) -> None:
    steps = np.arange(start, start + COMMIT_POINTS, dtype=np.int64)
    with store.conn:
        store.write_series(run_id, key_id, steps, steps.astype(np.float64), np.sin(steps.astype(np.float64)))


def test_the_wal_stays_near_checkpoint_pages_under_many_commits(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db", checkpoint_pages=PAGES)
    run_id, key_id = new_run(store), store.key_id("loss")
    page = int(store.conn.execute("PRAGMA page_size").fetchone()[0])
    wal = Path(f"{store.path}-wal")
    largest = 0
    for i in range(COMMITS):
        _commit(store, run_id, key_id, i * COMMIT_POINTS)
        largest = max(largest, wal.stat().st_size)
    written = store.path.stat().st_size
    # One commit may take the WAL past the threshold before the checkpoint copies it; it never holds two.
    assert largest <= (PAGES + 2 * 40) * (page + 24), f"WAL reached {largest} bytes for a {PAGES}-page threshold"
    assert written > 10 * largest, "the commits were too small to test the bound"
    store.close()


def test_a_reader_sees_every_point_while_the_wal_is_checkpointed(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db", checkpoint_pages=PAGES)
    run_id, key_id = new_run(store), store.key_id("loss")
    reader = open_reader(store.path)
    for i in range(COMMITS // 2):
        _commit(store, run_id, key_id, i * COMMIT_POINTS)
        steps = read_series(reader, run_id, key_id)[0]
        assert len(steps) == (i + 1) * COMMIT_POINTS
    reader.close()
    store.close()


def test_the_daemon_setting_reaches_the_store(tmp_path: Path) -> None:
    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(tmp_path), "TRACKIOD_CHECKPOINT_PAGES": "77"})
    settings.ensure_dirs()
    writer = build_writer(settings, IngestHooks(send=lambda sid, message: None), boot_id=os.urandom(4))
    try:
        assert writer.store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 77
    finally:
        writer.attachments.stop(timeout=5.0)
        writer.store.close()
