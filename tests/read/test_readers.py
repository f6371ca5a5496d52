"""``Readers``: the kept, mapped query-only connections of the dashboard's threads and of ``trackio_shim.Api``.

A connection is kept per thread (apsw serialises one connection's use), sees what the writer commits after it
was opened, and is closed by ``close()``; a read API kept across writes answers with the new data.
"""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import numpy as np
import pytest

from tests.support.stores import new_run
from trackiod.read.connection import Readers
from trackiod.store.writer import Store


def test_one_kept_connection_per_thread_closed_by_close(tmp_path: Path) -> None:
    readers = Readers(tmp_path / "none.db")
    assert readers.get() is None
    with pytest.raises(FileNotFoundError, match="nothing has been logged"):
        readers.open()
    Store(tmp_path / "none.db").close()
    first = readers.open()
    assert readers.open() is first and readers.get() is first
    other: list[apsw.Connection] = []
    thread = threading.Thread(target=lambda: other.append(readers.open()))
    thread.start()
    thread.join()
    assert other and other[0] is not first
    readers.close()
    with pytest.raises(apsw.ConnectionClosedError):
        first.execute("SELECT 1")
    again = readers.open()  # a new one after close()
    assert again is not first and again.execute("SELECT 1").fetchall() == [(1,)]
    readers.close()


def test_a_kept_api_sees_what_was_written_after_its_first_read(env: dict[str, str]) -> None:
    from trackio_shim import Api
    from trackio_shim.settings import TrackiodSettings

    settings = TrackiodSettings.load()
    settings.ensure_dirs()
    store = Store(settings.db_path)
    run_id = new_run(store)
    with store.conn:
        key = store.key_id("loss")
        store.write_series(run_id, key, np.arange(10), np.full(10, 1e9), np.arange(10) * 1.0)
        store.count_keys({(run_id, key): ("scalar", 10, 9)})
    api = Api()
    run = api.run("proj/r1")
    assert len(run.history(pandas=False)) == 10
    with store.conn:
        store.write_series(run_id, key, np.arange(10, 30), np.full(20, 1e9), np.arange(10, 30) * 1.0)
    store.close()
    assert [r["_step"] for r in api.run("proj/r1").history(samples=3, pandas=False)] == [0, 14, 29]
    assert sum(1 for _ in run.scan_history()) == 30
