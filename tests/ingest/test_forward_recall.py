"""A head forgets idle sessions in memory (their run over, or marked crashed); a forwarded session's next frames
must still continue its sequence and reach its run.

Before the fix, the forwarded session's watermark and handles were not recalled: a resend's frames counted as
lost ("frames 1..N are missing", seen in tests/daemon/test_forwarding.py's kill -9 test) and a node's backlog
was dropped as "unknown run handle" (found by the backfill test).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support.hostile_frames import IngestRig, pack
from trackio_shim import protocol as P
from trackiod.read.series import read_series


@pytest.mark.parametrize("batched", [False, True], ids=["FORWARD", "FORWARD_BATCH"])
def test_a_forwarded_session_forgotten_as_idle_still_reaches_its_run(tmp_path: Path, batched: bool) -> None:
    rig = IngestRig(tmp_path / "head")
    ingest = rig.ingest
    forwarder, remote = os.urandom(16), os.urandom(16)
    outer = 0

    def forward(kind: int, seq: int, *fields: object) -> None:
        nonlocal outer
        outer += 1
        frame = P.pack([kind, remote, seq, *fields])
        if batched:  # as the head's listener applies a FORWARD_BATCH
            ingest.handle_forwarded(forwarder, [(outer, frame)])
        else:
            ingest.handle(P.FORWARD, forwarder, outer, [frame], live=True)

    forward(P.SESSION, 1, {"version": P.PROTOCOL_VERSION, "pid": 4242, "host": "node-a"})
    forward(P.RUN_START, 2, 1, {"project": "p", "id": "r"})
    forward(P.LOG, 3, 1, 0, time.time(), {"x": 1.0})
    assert ingest.commit()
    (run_id,) = {run for (sid, _), run in ingest.runs.handles.items() if sid == remote}
    ingest.begin()
    ingest.runs.mark_crashed([run_id], time.time())  # node a was away longer than the heartbeat timeout
    assert ingest.commit()
    assert ingest.prune_sessions(time.time() + 1000, idle_s=120) >= 1
    assert remote not in ingest.accepted

    forward(P.LOG, 4, 1, 1, time.time(), {"x": 2.0})  # node a is back: its backlog arrives
    forward(P.RUN_FINISH, 5, 1, 0, time.time())
    assert ingest.commit()
    conn = rig.store.conn
    (key_id,) = conn.execute("SELECT id FROM keys WHERE name='x'").fetchone()
    assert read_series(conn, run_id, key_id)[2].tolist() == [1.0, 2.0]
    assert ingest.counters.frames_lost == 0
    assert not [text for text in rig.notices() if "unknown run handle" in text]
    (state,) = conn.execute("SELECT state FROM runs WHERE id=?", (run_id,)).fetchone()
    assert state == "finished"


def test_a_forwarded_frame_of_a_pruned_session_continues_its_sequence(tmp_path: Path) -> None:
    rig = IngestRig(tmp_path)
    try:
        other = os.urandom(P.SESSION_ID_BYTES)
        inner = [
            pack(P.SESSION, other, 1, {"version": P.PROTOCOL_VERSION, "pid": 1, "host": "node"}),
            pack(P.RUN_START, other, 2, 1, {"project": "fwd", "id": "r1", "resume": "allow"}),
            pack(P.LOG, other, 3, 1, 0, 1.0, {"x": 0.0}),
            pack(P.RUN_FINISH, other, 4, 1, 0, 2.0),
        ]
        for frame in inner:
            rig.feed_fields(P.FORWARD, frame)
        assert rig.ingest.commit()
        assert rig.ingest.prune_sessions(time.time() + 10_000, 1.0) >= 1
        assert other not in rig.ingest.accepted
        rig.feed_fields(P.FORWARD, pack(P.LOG, other, 3, 1, 0, 1.0, {"x": 9.0}))  # a resend: a duplicate
        rig.feed_fields(P.FORWARD, pack(P.LOG, other, 5, 1, 1, 3.0, {"x": 1.0}))  # the next frame
        assert rig.ingest.commit()
        counters = rig.ingest.counters
        assert counters.frames_lost == 0
        assert counters.duplicates == 1
        assert rig.ingest.accepted[other] == 5
    finally:
        rig.close()
