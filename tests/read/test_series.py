"""The read side over a real SQLite file: a batch written by the daemon's RunBook read back as a run and its
history through query-only connections, and a reader refused when nothing has been logged yet.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from tests.support.stores import new_run as _new_run
from trackiod.ingest.batch import Batch
from trackiod.ingest.runs import RunBook
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, history_rows
from trackiod.store.writer import Store


def test_batch_to_store_to_history_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store(path)
    run_id = _new_run(store)
    notices: list[str] = []
    book = RunBook(store, {}, lambda sid, text: notices.append(text))
    batch = Batch()
    for step in range(5):
        batch.add(run_id, step, 100.0 + step, {"loss": 1.0 / (step + 1), "tag": f"s{step}", "nest": {"a": step}})
    batch.add(run_id, 2, 200.0, {"loss": 42.0, "_step": 1})  # a rewrite of step 2, plus a reserved key
    with store.conn:
        book.write_points(batch.columns())
        book.save_dirty()
    assert len(notices) == 1 and "'_step'" in notices[0]

    reader = open_reader(path)
    with pytest.raises(apsw.Error):  # readers cannot write
        reader.execute("DELETE FROM runs")
    row = get_run(reader, "proj", "r1")
    assert row is not None
    assert (row["config"], row["tags"], row["last_step"]) == ({"lr": 0.1}, ["t"], 4)
    assert row["summary"] == {"loss": 42, "tag": "s4", "nest/a": 4}  # the last value logged, whatever its step
    history = list(history_rows(reader, row))
    assert [h["_step"] for h in history] == [0, 1, 2, 3, 4]
    assert history[2] == {"_step": 2, "loss": 42, "tag": "s2", "nest/a": 2, "_timestamp": 200.0, "_runtime": 0.0}
    assert history[4]["loss"] == 0.2 and history[4]["_timestamp"] == 104.0
    assert [h["_step"] for h in history_rows(reader, row, keys=["tag"], min_step=1, max_step=3)] == [1, 2, 3]
    assert [h["_step"] for h in history_rows(reader, row, samples=3)] == [0, 2, 4]
    assert list(history_rows(reader, row, keys=["nope"])) == []
    reader.close()
    store.close()


def test_open_reader_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing has been logged"):
        open_reader(tmp_path / "missing.db")
