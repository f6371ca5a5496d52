"""``Ingest.handle_messages`` (runs of LOG frames with the session's lookups done once) stores exactly what
``handle_message`` stores frame by frame, whatever the frames: runs of good LOG frames broken by hostile frames,
repeats, gaps, frames of other handles, RUN_STARTs, non-float timestamps and bools for handles.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack

from tests.support.hostile_frames import H, IngestRig, good_fields, random_frame
from trackio_shim import protocol as P


def script(rng: random.Random, sid: bytes, first_seq: int) -> list[Any]:
    """Decoded messages of one session: mostly runs of next-in-sequence LOG frames, with trouble mixed in."""
    msgs: list[Any] = []
    seq = first_seq
    for _ in range(300):
        choice = rng.random()
        if choice < 0.7:
            for _ in range(rng.randrange(1, 40)):
                msgs.append([P.LOG, sid, seq, H, seq, 1.5 + seq, {"a": float(seq), "b": seq}])
                seq += 1
        elif choice < 0.74:
            # Keys that change inside a run, steps logged twice: each stretch of keys is its own batch group,
            # and the order of arrival (the later value for a step wins on read) must hold across them.
            for _ in range(rng.randrange(1, 12)):
                data = rng.choice([{"a": float(seq)}, {"b": seq, "a": -float(seq)}, {"a": 0.5, "t": "text"}])
                msgs.append([P.LOG, sid, seq, H, seq // 3, 2.5, data])
                seq += 1
        elif choice < 0.75:
            msgs.append([P.LOG, sid, seq - rng.randrange(1, 5), H, 1, 1.0, {"a": -1.0}])  # a repeat
        elif choice < 0.78:
            msgs.append([P.LOG, sid, seq + 3, H, 1, 1.0, {"a": -2.0}])  # a gap (NACKed, dropped)
        elif choice < 0.82:
            msgs.append([P.LOG, sid, seq, True, seq, 1.0, {"a": 3.0}])  # a bool handle is no handle
            seq += 1
        elif choice < 0.86:
            msgs.append([P.LOG, sid, seq, H, seq, seq, {"int_ts": 1.0}])  # an int timestamp: general path
            seq += 1
        elif choice < 0.9:
            msgs.append([P.RUN_START, sid, seq, 2, {"project": "fuzz", "id": f"other{seq}", "resume": "allow"}])
            seq += 1
            msgs.append([P.LOG, sid, seq, 2, seq, 1.0, {"other": 1.0}])
            seq += 1
        else:
            raw = random_frame(rng, sid, seq)
            try:
                msgs.append(msgpack.unpackb(raw, strict_map_key=False))
            except Exception:
                continue
            if rng.random() < 0.5:
                msgs.append([P.CONFIG, sid, seq, *good_fields(P.CONFIG)])
            seq += 1
    return msgs


def applied(home: Path, together: bool) -> tuple[dict[str, Any], int, int]:
    rig = IngestRig(home)
    try:
        msgs = script(random.Random(11), rig.sid, rig.seq + 1)
        if together:
            for start in range(0, len(msgs), 97):
                rig.ingest.handle_messages(msgs[start : start + 97], rig.sid)
        else:
            for msg in msgs:
                rig.ingest.handle_message(msg, rig.sid)
        assert rig.ingest.commit()
        counters = rig.ingest.counters
        return rig.stored(), counters.frames, counters.points
    finally:
        rig.close()


def test_handle_messages_stores_what_handle_message_stores(tmp_path: Path) -> None:
    one_by_one = applied(tmp_path / "a", together=False)
    together = applied(tmp_path / "b", together=True)
    assert together[1:] == one_by_one[1:], "frames and points counted alike"
    # What differs by design: each rig's own session id, the project's creation time, and when an artifact was
    # used (the daemon's clock at apply time: compared without it).
    differ = {"projects", "session_runs"}

    def comparable(stored: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in stored.items() if k not in differ}
        out["artifact_usage"] = [row.rsplit(",", 1)[0] for row in out.get("artifact_usage", [])]
        return out

    assert comparable(together[0]) == comparable(one_by_one[0])
    assert together[0]["chunks"], "the script stored points"
