"""A head daemon that pruned a forwarded session from memory (its run ended there: marked crashed while the
node still forwarded its last frames) recalls the session's watermark for the next FORWARD frame, as it does
for a frame the session sends itself. Before, the forwarded frame saw no watermark, took the session's
stored frames for a gap and counted them lost (seen in tests/daemon/test_forwarding.py's kill -9 test).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support.hostile_frames import IngestRig, pack
from trackio_shim import protocol as P


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
