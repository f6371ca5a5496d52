"""The store on a real SQLite file in a temporary directory (apsw, WAL): schema version, chunks sealed across
small writes, the tail reloaded after a restart, the later value for a step winning; read back through the
same query functions the daemon and the read API use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.stores import new_run as _new_run
from trackiod.read.connection import open_reader
from trackiod.read.series import read_series, read_texts
from trackiod.store.codec import CHUNK_POINTS
from trackiod.store.schema import SCHEMA_VERSION
from trackiod.store.writer import Store


def _chunk_sizes(store: Store, run_id: int, key_id: int) -> list[int]:
    return [
        n
        for (n,) in store.conn.execute("SELECT n FROM chunks WHERE run_id=? AND key_id=? ORDER BY id", (run_id, key_id))
    ]


def _write(store: Store, run_id: int, key_id: int, steps: range | list[int], offset: float = 0.0) -> None:
    s = np.asarray(list(steps), np.int64)
    with store.conn:
        store.write_series(run_id, key_id, s, s.astype(np.float64) + 1000.0, s.astype(np.float64) + offset)


def test_store_schema_is_versioned(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    Store(tmp_path / "t.db").close()  # reopening does not migrate again


def test_store_seals_chunks_across_many_small_writes(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    run_id = _new_run(store)
    key_id = store.key_id("loss")
    for start in range(0, 3000, 30):  # 100 writes of 30 points
        _write(store, run_id, key_id, range(start, start + 30))
    sizes = _chunk_sizes(store, run_id, key_id)
    assert sizes.count(CHUNK_POINTS) == 2
    assert sum(sizes) == 3000  # every point exactly once: tail chunks are replaced when sealed
    assert all(n < CHUNK_POINTS for n in sizes if n != CHUNK_POINTS)
    reader = open_reader(tmp_path / "t.db")
    steps, times, vals = read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(3000))
    assert vals.tolist() == [float(i) for i in range(3000)]
    assert times.tolist() == [1000.0 + i for i in range(3000)]
    steps, _, vals = read_series(reader, run_id, key_id, min_step=1020, max_step=1030)
    assert steps.tolist() == list(range(1020, 1031)) and vals.tolist() == [float(i) for i in range(1020, 1031)]
    reader.close()
    store.close()


def test_store_reloads_the_tail_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = Store(path)
    run_id = _new_run(store)
    key_id = store.key_id("loss")
    for start in range(0, 1000, 100):
        _write(store, run_id, key_id, range(start, start + 100))
    assert _chunk_sizes(store, run_id, key_id) == [100] * 10
    store.close()

    store = Store(path)  # a restarted daemon: the tail is read back from the database
    assert store.key_id("loss") == key_id
    _write(store, run_id, key_id, range(1000, 1100))
    assert _chunk_sizes(store, run_id, key_id) == [CHUNK_POINTS, 1100 - CHUNK_POINTS]
    store.forget_tails(run_id)  # a finished run's tail is forgotten and re-read on resume
    _write(store, run_id, key_id, range(1100, 1110))
    assert sum(_chunk_sizes(store, run_id, key_id)) == 1110
    reader = open_reader(path)
    steps, _, vals = read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(1110)) and vals.tolist() == [float(i) for i in range(1110)]
    reader.close()
    store.close()


def test_store_later_value_for_a_step_wins(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    run_id = _new_run(store)
    key_id = store.key_id("x")
    _write(store, run_id, key_id, range(1100))  # one sealed chunk plus a tail
    _write(store, run_id, key_id, [5, 1050], offset=0.5)  # rewrites in the sealed chunk and in the tail
    _write(store, run_id, key_id, [5], offset=0.75)
    text_key = store.key_id("label")
    with store.conn:
        store.write_texts([(run_id, text_key, 3, 1.0, "old"), (run_id, text_key, 4, 1.0, "four")])
        store.write_texts([(run_id, text_key, 3, 2.0, "new")])
    reader = open_reader(tmp_path / "t.db")
    steps, _, vals = read_series(reader, run_id, key_id)
    assert steps.tolist() == list(range(1100))
    assert vals[5] == 5.75 and vals[1050] == 1050.5 and vals[6] == 6.0
    text_steps, _, texts = read_texts(reader, run_id, text_key)
    assert text_steps.tolist() == [3, 4] and texts == ["new", "four"]
    reader.close()
    store.close()
