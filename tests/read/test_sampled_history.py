"""``history(samples=N)`` reads only the sampled points (trackiod.read.sampled) and gives the rows a full read gives.

The reference is the value-by-value rows of tests/read/test_history_pages.py at the sampled steps: every step of
the union (or, with ``keys``, the intersection), ``samples`` of them evenly spread with the first and last. The
run mixes the layouts the index handles differently: keys at every step in one range (nothing read but the
points), a key every 10 steps (evenly spaced chunks, another gap), keys that start late or skip a range, a key
rewound and logged again (its steps read, the last write wins), and a file written before schema version 9.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest

from tests.read.test_history_pages import reference
from tests.support.stores import new_run
from trackiod.read import history
from trackiod.read.connection import open_reader
from trackiod.read.runs import get_run, history_rows
from trackiod.store import schema
from trackiod.store.codec import evenly_spaced
from trackiod.store.writer import Store


def _write_in_commits(store: Store, run_id: int, key_id: int, steps: np.ndarray, vals: np.ndarray) -> None:
    """As the daemon writes: commits of a few hundred points, so sealed chunks and tail chunks both occur."""
    for start in range(0, steps.size, 300):
        part = slice(start, start + 300)
        with store.conn:
            store.write_series(run_id, key_id, steps[part], 1e9 + steps[part] * 0.5, vals[part])


@pytest.fixture
def sampled_db(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    store = Store(path)
    run_id = new_run(store)
    rng = np.random.default_rng(11)
    every = np.arange(0, 6_000, dtype=np.int64)
    layouts = {
        "a": every,
        "b": every,
        "tenth": np.arange(0, 6_000, 10, dtype=np.int64),
        "late": np.arange(2_500, 6_000, dtype=np.int64),
        "gap": np.concatenate((np.arange(0, 2_000), np.arange(4_000, 6_000))).astype(np.int64),
        "rewound": every,
    }
    with store.conn:
        ids = {name: store.key_id(name) for name in layouts}
    for name, steps in layouts.items():
        whole = name == "b"  # whole numbers come back as ints
        vals = np.round(rng.random(steps.size) * 50) if whole else rng.random(steps.size)
        _write_in_commits(store, run_id, ids[name], steps, vals)
    again = np.arange(1_000, 1_500, dtype=np.int64)  # a rewind: these steps logged a second time, later
    _write_in_commits(store, run_id, ids["rewound"], again, np.full(again.size, -1.0))
    with store.conn:
        store.count_keys({(run_id, i): ("scalar", 1, 5_999) for i in ids.values()})
    store.close()
    return path


def _sampled_reference(conn: Any, run: dict[str, Any], keys: list[str] | None, samples: int, lo: Any, hi: Any) -> Any:
    full = reference(conn, run, keys, lo, hi)
    if len(full) <= samples:
        return full
    if samples == 1:
        return [full[-1]]  # one sample: the latest row
    picked = np.unique(np.linspace(0, len(full) - 1, samples).round().astype(np.int64))
    return [full[i] for i in picked.tolist()]


CASES = [None, ["a"], ["a", "b"], ["tenth"], ["late", "a"], ["gap", "tenth"], ["rewound"], ["rewound", "a"]]


@pytest.mark.parametrize("keys", CASES)
@pytest.mark.parametrize("samples", [1, 2, 97, 500, 10_000])
def test_sampled_rows_are_the_full_rows_at_the_sampled_steps(
    sampled_db: Path, keys: list[str] | None, samples: int
) -> None:
    conn = open_reader(sampled_db, mapped=True)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        got = list(history_rows(conn, run, keys, samples=samples))
        expected = _sampled_reference(conn, run, keys, samples, None, None)
        assert got == expected
        assert [list(r) for r in got] == [list(r) for r in expected], "key order"
    finally:
        conn.close()


@pytest.mark.parametrize("keys", [None, ["a"], ["rewound", "tenth"]])
@pytest.mark.parametrize("bounds", [(100, 4_200), (5_500, None), (None, 1_200), (7_000, None)])
def test_sampled_rows_within_step_bounds(sampled_db: Path, keys: list[str] | None, bounds: tuple[Any, Any]) -> None:
    conn = open_reader(sampled_db)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        assert list(history_rows(conn, run, keys, *bounds, samples=50)) == _sampled_reference(
            conn, run, keys, 50, *bounds
        )
    finally:
        conn.close()


def test_rewound_steps_read_the_last_write(sampled_db: Path) -> None:
    conn = open_reader(sampled_db)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        rows = list(history_rows(conn, run, ["rewound"], 1_000, 1_499, samples=10))
        assert len(rows) == 10 and all(r["rewound"] == -1 for r in rows)
    finally:
        conn.close()


def test_a_file_written_before_version_9_is_sampled_from_its_steps(sampled_db: Path) -> None:
    """Chunks without the ``even`` flag (an older file a reader opens before any daemon migrated it)."""
    conn = apsw.Connection(str(sampled_db))
    conn.execute("ALTER TABLE chunks DROP COLUMN even")
    conn.execute(f"PRAGMA user_version={schema.EVEN_CHUNKS_VERSION - 1}")
    conn.close()
    reader = open_reader(sampled_db)
    try:
        run = get_run(reader, "proj", "r1")
        assert run is not None
        for keys in (None, ["a"], ["rewound", "tenth"]):
            assert list(history_rows(reader, run, keys, samples=77)) == _sampled_reference(
                reader, run, keys, 77, None, None
            )
    finally:
        reader.close()


def test_the_writer_marks_evenly_spaced_chunks_and_the_migration_leaves_old_ones_unknown(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = apsw.Connection(str(path))
    for version, sql in enumerate(schema.MIGRATIONS[: schema.EVEN_CHUNKS_VERSION - 1]):
        with conn:
            conn.execute(sql)
            conn.execute(f"PRAGMA user_version={version + 1}")
    conn.execute(
        "INSERT INTO chunks(run_id, key_id, n, step_min, step_max, steps, times, vals) "
        "VALUES (99, 1, 1, 0, 0, ?, ?, ?)",
        (b"\0" * 8, b"\0" * 8, b"\0" * 8),
    )
    conn.close()
    store = Store(path)  # migrates
    try:
        assert store.conn.execute("SELECT even FROM chunks").fetchall() == [(0,)]
        run_id = new_run(store)
        with store.conn:
            key = store.key_id("k")
            store.write_series(run_id, key, np.arange(0, 3_000, 3), np.zeros(1_000), np.zeros(1_000))
            store.write_series(run_id, key, np.array([5, 4, 3000]), np.zeros(3), np.zeros(3))
        flags = store.conn.execute("SELECT n, even FROM chunks WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        assert flags == [(1000, 1), (3, 0)]
        with store.conn:  # the tail folds into a sealed chunk (uneven: the rewind is in it) and an even tail
            store.write_series(run_id, key, np.arange(3001, 3101), np.zeros(100), np.zeros(100))
        flags = store.conn.execute("SELECT n, even FROM chunks WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        assert flags == [(1024, 0), (79, 1)]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("steps", "even"),
    [
        ([], True),
        ([7], True),
        ([0, 1, 2, 3], True),
        ([5, 15, 25], True),
        ([0, 0, 2, 3], False),
        ([0, 2, 1, 3], False),
        ([3, 2, 1], False),
        ([0, 1, 3, 4, 6], False),
        ([0, 2, 3, 6], False),
    ],
)
def test_evenly_spaced(steps: list[int], even: bool) -> None:
    assert evenly_spaced(np.array(steps, dtype=np.int64)) is even


def test_a_tail_folded_while_sampling_is_read_from_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon deletes and rewrites a live run's tail chunks; a sampled read between index and points holds."""
    path = tmp_path / "live.db"
    store = Store(path)
    run_id = new_run(store)
    with store.conn:
        key = store.key_id("a")
    steps = np.arange(0, 1_500, dtype=np.int64)
    _write_in_commits(store, run_id, key, steps, steps * 1.0)
    with store.conn:
        store.count_keys({(run_id, key): ("scalar", 1_500, 1_499)})
    store.close()
    points_at = history.points_at
    folded: list[bool] = []

    def fold_then_read(conn: Any, index: Any, wanted: np.ndarray) -> Any:
        if not folded:  # as the daemon would, between reading the index and reading the points
            writer = Store(path)
            more = np.arange(1_500, 2_100, dtype=np.int64)
            with writer.conn:
                writer.write_series(run_id, key, more, more * 0.5, more * 1.0)
            writer.close()
            folded.append(True)
        return points_at(conn, index, wanted)

    monkeypatch.setattr(history, "points_at", fold_then_read)
    conn = open_reader(path, mapped=True)
    try:
        run = get_run(conn, "proj", "r1")
        assert run is not None
        rows = list(history_rows(conn, run, samples=10))
        assert folded and [r["_step"] for r in rows][-1] == 1_499 and rows[-1]["a"] == 1_499
        assert list(history_rows(conn, run, samples=10))[-1]["_step"] == 2_099  # the next read sees the fold
    finally:
        conn.close()
