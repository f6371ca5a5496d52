"""A whole series read for a chart (trackiod.read.stepvalues): only the ``vals`` BLOBs, steps from the chunk rows.

The reference is :func:`read_series` (steps and values joined from every chunk, the last write of each step). The
layouts are the ones the chunk index handles differently: an unbroken range (a :class:`StepSpan`, no array), a key
every 10 steps (evenly spaced chunks with a gap), a late start, a hole in the steps, a rewound key (its steps
read, the last write wins), a single point, an empty series, and a file written before schema version 9.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import numpy as np
import pytest

from tests.support.stores import new_run
from trackio_shim.errors import TrackiodError
from trackiod.read.connection import open_reader
from trackiod.read.series import read_series
from trackiod.read.stepvalues import ChartChunks, Scratch, StepSpan, read_step_values
from trackiod.store import schema
from trackiod.store.writer import Store

LAYOUTS = {
    "every": np.arange(0, 5_000, dtype=np.int64),
    "tenth": np.arange(0, 5_000, 10, dtype=np.int64),
    "late": np.arange(2_500, 5_000, dtype=np.int64),
    "hole": np.concatenate((np.arange(0, 1_500), np.arange(3_000, 5_000))).astype(np.int64),
    "rewound": np.arange(0, 5_000, dtype=np.int64),
    "one": np.array([7], dtype=np.int64),
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "v.db"
    store = Store(path)
    run_id = new_run(store)
    rng = np.random.default_rng(5)
    with store.conn:
        ids = {name: store.key_id(name) for name in [*LAYOUTS, "empty"]}
    for name, steps in LAYOUTS.items():
        vals = rng.standard_normal(steps.size)
        for start in range(0, steps.size, 700):  # commits of a few hundred points: sealed and tail chunks
            part = slice(start, start + 700)
            with store.conn:
                store.write_series(run_id, ids[name], steps[part], 1e9 + steps[part], vals[part])
    again = np.arange(1_000, 1_300, dtype=np.int64)  # logged a second time, later: the last write wins
    with store.conn:
        store.write_series(run_id, ids["rewound"], again, 2e9 + again, np.full(again.size, -1.0))
    store.close()
    return path


def _check_all(path: Path, spans: set[str]) -> None:
    """Every layout read alone (read_step_values), then from one query's chunk rows for all of them (ChartChunks,
    as a chart reads its series), equals read_series."""
    conn = open_reader(path, mapped=True)
    scratch = Scratch()
    try:
        names = [*LAYOUTS, "empty"]
        key_ids = [conn.execute("SELECT id FROM keys WHERE name=?", (name,)).fetchone()[0] for name in names]
        with conn:
            chunks = ChartChunks(conn, [(1, key_id) for key_id in key_ids])
            assert chunks.complete
            # More runs and keys than one query may name: each series' rows are read alone, the same answers.
            alone = ChartChunks(conn, [(1, key_ids[0]), *((run_id, key_ids[0]) for run_id in range(2, 1_000))])
            assert not alone.complete
            for via in (None, chunks, alone):
                for name, key_id in zip(names, key_ids):
                    want_steps, _, want_vals = read_series(conn, 1, key_id, with_times=False)
                    if via is not None:
                        steps, vals = via.read(1, key_id, scratch)
                    else:
                        steps, vals = read_step_values(conn, 1, key_id, scratch)
                    assert isinstance(steps, StepSpan) == (name in spans), name
                    np.testing.assert_array_equal(np.asarray(steps), want_steps)
                    assert steps.size == want_steps.size
                    np.testing.assert_array_equal(vals, want_vals)
    finally:
        conn.close()


def test_the_values_and_steps_read_series_gives(db: Path) -> None:
    _check_all(db, spans={"every", "late", "one"})


def test_a_file_written_before_version_9_reads_its_steps(db: Path) -> None:
    """Chunks without the ``even`` flag: their steps are read, the values are the same."""
    conn = apsw.Connection(str(db))
    conn.execute("ALTER TABLE chunks DROP COLUMN even")
    conn.execute(f"PRAGMA user_version={schema.EVEN_CHUNKS_VERSION - 1}")
    conn.close()
    _check_all(db, spans=set())


def test_the_scratch_buffer_is_reused_and_grows() -> None:
    scratch = Scratch()
    first = scratch.take(10)
    assert scratch.take(5).base is first.base
    assert scratch.take(1_000).size == 1_000


def test_a_chunk_with_too_few_value_bytes_is_an_error_naming_it(db: Path) -> None:
    conn = apsw.Connection(str(db))
    chunk_id = conn.execute("SELECT max(id) FROM chunks").fetchone()[0]
    conn.execute("UPDATE chunks SET vals = substr(vals, 1, 8) WHERE id=?", (chunk_id,))
    key_id, run_id = conn.execute("SELECT key_id, run_id FROM chunks WHERE id=?", (chunk_id,)).fetchone()
    conn.close()
    reader = open_reader(db)
    try:
        with pytest.raises(TrackiodError, match=f"chunk {chunk_id} holds 8 bytes"):
            read_step_values(reader, run_id, key_id, Scratch())
        with reader, pytest.raises(TrackiodError, match=f"chunk {chunk_id} holds 8 bytes"):
            ChartChunks(reader, [(run_id, key_id)]).read(run_id, key_id, Scratch())
    finally:
        reader.close()


@pytest.mark.parametrize("side", ["left", "right"])
def test_step_span_searches_as_the_array_does(side: str) -> None:
    span = StepSpan(-3, 40)
    steps = np.asarray(span)
    assert steps.tolist() == list(range(-3, 41)) and span.max() == 40
    ints = np.arange(-10, 50, dtype=np.int64)
    np.testing.assert_array_equal(span.searchsorted(ints, side), np.searchsorted(steps, ints, side))
    floats = np.linspace(-10.0, 50.0, 241)
    np.testing.assert_array_equal(span.searchsorted(floats, side), np.searchsorted(steps, floats, side))
    for v in (-1e300, -3.5, -3, 0.25, 40, 40.0, 40.5, 1e300):
        assert span.searchsorted(v, side) == int(np.searchsorted(steps, v, side)), v
