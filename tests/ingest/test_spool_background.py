"""Spool files read in the background, a slice at a time: every point stored exactly once, sequence rules kept.

A real Store and Ingest (IngestRig); the spool files are written as a dead trainer leaves them
(tests/support/spool_files.py) and read through ``Ingest.spool_step``, as the daemon's loop reads them between
turns.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgpack
import pytest

from tests.support.hostile_frames import IngestRig
from tests.support.spool_files import HANDLE, log_frames, session_frames, spooled_run, write_spool
from trackio_shim import protocol as P
from trackiod.ingest.spool import read_frames
from trackiod.read.runs import get_run


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = IngestRig(tmp_path / "home")
    yield made
    made.close()


def stored_steps(rig: IngestRig, project: str, run_id: str) -> list[int]:
    """Every stored step of the run's key k0, straight from the chunks (a point stored twice shows twice)."""
    run = get_run(rig.store.conn, project, run_id)
    assert run is not None, f"run {project}/{run_id} was not created"
    steps: list[int] = []
    for (blob,) in rig.store.conn.execute(
        "SELECT c.steps FROM chunks c JOIN keys k ON k.id = c.key_id WHERE c.run_id=? AND k.name='k0' ORDER BY c.id",
        (run["id"],),
    ):
        steps.extend(int.from_bytes(blob[i : i + 8], "little", signed=True) for i in range(0, len(blob), 8))
    return sorted(steps)


def read_all(rig: IngestRig, budget: int, commit_every: int = 1) -> int:
    """Read every spool file in slices of ``budget`` frames, committing every ``commit_every`` slices."""
    ingest, turns = rig.ingest, 0
    ingest.spool.scan()
    while ingest.spool.pending:
        ingest.spool_step(budget, 1 << 40, math.inf)
        turns += 1
        if turns % commit_every == 0:
            assert ingest.commit()
    assert ingest.commit()
    return turns


def test_slices_with_commits_in_between_store_every_point_once(rig: IngestRig) -> None:
    spool = rig.settings.spool_dir
    spooled_run(spool, "bg", "spooled", 5_000, files=3)
    turns = read_all(rig, budget=700, commit_every=2)
    assert turns > 3, "the files must have been read in several slices"
    assert stored_steps(rig, "bg", "spooled") == list(range(5_000))
    assert not list(spool.glob("*.spool")), "files read and committed are deleted"
    assert rig.ingest.spool.frames == 5_002 and rig.ingest.spool.files == 3


def test_a_daemon_stopped_mid_file_leaves_it_to_the_next_which_skips_what_was_committed(tmp_path: Path) -> None:
    first = IngestRig(tmp_path / "home")
    spool = first.settings.spool_dir
    spooled_run(spool, "bg", "again", 3_000)
    ingest = first.ingest
    ingest.spool.scan()
    ingest.spool_step(1_200, 1 << 40, math.inf)
    assert ingest.commit()
    ingest.spool_step(500, 1 << 40, math.inf)  # applied, never committed: gone with this writer
    ingest.spool.close()
    first.close()
    assert len(list(spool.glob("*.spool"))) == 1, "a file read in part stays for the next daemon"
    second = IngestRig(tmp_path / "home")
    try:
        read_all(second, budget=400)
        assert stored_steps(second, "bg", "again") == list(range(3_000))
    finally:
        second.close()


def test_live_frames_behind_the_spool_wait_without_nacks_then_get_one(rig: IngestRig) -> None:
    spool = rig.settings.spool_dir
    sid = os.urandom(P.SESSION_ID_BYTES)
    head = session_frames(sid, "bg", "behind")
    write_spool(spool, sid, 1, head + log_frames(sid, 3, 0, 2_000))  # seqs 1..2002
    ingest = rig.ingest
    ingest.spool.scan()
    ingest.spool_step(100, 1 << 40, math.inf)
    live = msgpack.packb([P.LOG, sid, 2_010, HANDLE, 2_007, 1.0, {"k0": 2_007.0}], use_bin_type=True)
    for _ in range(50):  # a trainer goes on logging while its spool is read: no NACK per frame
        ingest.handle_raw(live, sid)
    assert not [m for s, m in rig.sent if s == sid and m[0] == P.NACK]
    assert ingest.spool.holds(sid)
    read_all(rig, budget=300)
    nacks = [m for s, m in rig.sent if s == sid and m[0] == P.NACK]
    assert nacks == [(P.NACK, 2_003)], "once its spool is read, the session is asked for the frames after it"
    for seq in range(2_003, 2_011):
        step = seq - 3
        ingest.handle_raw(msgpack.packb([P.LOG, sid, seq, HANDLE, step, 1.0, {"k0": float(step)}]), sid)
    assert ingest.commit()
    assert stored_steps(rig, "bg", "behind") == list(range(2_008))


def test_a_session_that_asks_is_read_first(rig: IngestRig) -> None:
    spool = rig.settings.spool_dir
    first = spooled_run(spool, "bg", "a", 1_000)
    second = spooled_run(spool, "bg", "b", 1_000)
    later = max(first, second, key=lambda sid: sid.hex())  # read last in name order
    ingest = rig.ingest
    ingest.spool.scan()
    ingest.handle_raw(msgpack.packb([P.SPOOL_READY, later, "ready"], use_bin_type=True), later)
    ingest.spool_step(500, 1 << 40, math.inf)
    assert ingest.accepted.get(later, 0) == 500
    assert min(first, second, key=lambda sid: sid.hex()) not in ingest.accepted


def test_a_file_of_many_blocks_streams_and_a_torn_last_frame_is_skipped(tmp_path: Path) -> None:
    sid = os.urandom(P.SESSION_ID_BYTES)
    frames = log_frames(sid, 1, 0, 60_000)  # about 3 MiB: several reads of one block
    torn = frames[-1][:-3]
    path = write_spool(tmp_path, sid, 1, [*frames, torn])
    assert path.stat().st_size > 2 << 20
    steps = [msg[4] for msg in read_frames(path, 1 << 20)]
    assert steps == list(range(60_000))
