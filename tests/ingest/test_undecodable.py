"""A frame the daemon cannot decode is one bad frame, never a reason to stop a session (issue 18, findings 1, 2, 6).

Real daemon processes; frames come from raw DEALER sockets or from spool files written the way an older shim
wrote them (msgpack of a dict with a tuple key: the key becomes an array, which the strict decoder cannot hash).
Counts are read back through ``Api()`` and ``trackiod status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from tests.support.daemons import DaemonProcess, wait_for
from trackio_shim import protocol as P

PROJECT = "undec"
H = 1


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def _header_then_garbage(kind: int, sid: bytes, seq: int) -> bytes:
    """A sequenced frame whose header is fine and whose body is not msgpack at all (0xc1 is never used)."""
    return b"\x97" + msgpack.packb(kind) + msgpack.packb(sid, use_bin_type=True) + msgpack.packb(seq) + b"\xc1" * 8


def _opening(sid: bytes, run_id: str) -> list[bytes]:
    return [
        _pack(P.SESSION, sid, 1, {"version": P.PROTOCOL_VERSION, "pid": 1}),
        _pack(P.RUN_START, sid, 2, H, {"project": PROJECT, "id": run_id}),
    ]


def _log(sid: bytes, seq: int, step: int, data: dict[Any, Any]) -> bytes:
    return _pack(P.LOG, sid, seq, H, step, time.time(), data)


def _finish(sid: bytes, seq: int) -> bytes:
    return _pack(P.RUN_FINISH, sid, seq, H, 0, time.time())


def _steps(run_id: str) -> list[int]:
    from trackio_shim import Api

    return sorted(int(row["_step"]) for row in Api().run(f"{PROJECT}/{run_id}").scan_history(keys=["ok"]))


def _state(run_id: str) -> str:
    from trackio_shim import Api

    return str(Api().run(f"{PROJECT}/{run_id}").state)


def test_undecodable_live_frames_consume_their_sequence_number(daemon: DaemonProcess) -> None:
    """Finding 1: the tuple-key frame was dropped without consuming its seq, and every later frame was refused."""
    sid = os.urandom(16)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.connect(daemon.settings().endpoint)
        frames = _opening(sid, "live")
        seq = 2
        for step in range(100):
            seq += 1
            if step == 10:
                frames.append(_log(sid, seq, step, {("layer", 1): 1.0, "ok": float(step)}))  # decodes leniently
            elif step == 20:
                frames.append(_header_then_garbage(P.LOG, sid, seq))  # consumed as one rejected frame
            else:
                frames.append(_log(sid, seq, step, {"ok": float(step)}))
        frames.append(_finish(sid, seq + 1))
        for raw in frames:
            sock.send(raw)
        wait_for(lambda: _finished(daemon, "live"), timeout=20, what="the run to finish")
    finally:
        ctx.destroy(linger=0)
    assert _steps("live") == [s for s in range(100) if s != 20]
    status = daemon.status()
    assert status is not None
    assert status["malformed_frames"] >= 1 and "undecodable" in (status["last_error"] or "")


def _finished(daemon: DaemonProcess, run_id: str) -> bool:
    from trackio_shim.errors import RunNotFoundError

    daemon.status()
    try:
        return _state(run_id) == "finished"
    except (RunNotFoundError, FileNotFoundError):
        return False


def _write_spool(spool_dir: Path, sid: bytes, first_seq: int, frames: list[bytes]) -> Path:
    for folder in (spool_dir.parent, spool_dir):  # the data directory must be private, or the daemon refuses it
        folder.mkdir(exist_ok=True, mode=0o700)
    path = spool_dir / P.spool_name(sid, first_seq)
    path.write_bytes(b"".join(frames))
    return path


def test_a_spool_file_with_a_tuple_key_neither_refuses_start_nor_fails_maintenance(
    stopped_daemon: DaemonProcess, env: dict[str, str]
) -> None:
    """Finding 2: `could not start: unhashable type: 'list'` at every start, maintenance failing every second."""
    spool = stopped_daemon.settings().spool_dir
    sid = os.urandom(16)
    frames = _opening(sid, "spooled")
    for step in range(50):
        data: dict[Any, Any] = {"ok": float(step)}
        if step in (5, 30):
            data[("layer", step)] = 1.0
        frames.append(_log(sid, 3 + step, step, data))
    frames.append(_finish(sid, 53))
    first = _write_spool(spool, sid, 1, frames)
    daemon = stopped_daemon.start()
    wait_for(lambda: not first.exists(), timeout=20, what="the spool file to be ingested")
    assert _steps("spooled") == list(range(50))
    assert _state("spooled") == "finished"
    # Maintenance goes on: a second such file, dropped in while the daemon runs, is read too.
    sid2 = os.urandom(16)
    frames2 = [*_opening(sid2, "later"), _log(sid2, 3, 0, {("a", "b"): 1.0, "ok": 0.0}), _finish(sid2, 4)]
    second = _write_spool(spool, sid2, 1, frames2)
    wait_for(lambda: not second.exists(), timeout=20, what="maintenance to ingest the second file")
    assert _steps("later") == [0]
    assert daemon.status() is not None


def test_deleted_and_truncated_spool_files_lose_only_their_frames_and_are_counted(
    stopped_daemon: DaemonProcess, env: dict[str, str]
) -> None:
    """Finding 6: frames lost to a deleted or truncated spool file are counted in `trackiod status`."""
    spool = stopped_daemon.settings().spool_dir
    sid = os.urandom(16)
    # File A: seq 1..62 (session, run start, steps 0..59); file B: steps 60..119 (deleted); file C: steps 120..199.
    a = _opening(sid, "cut") + [_log(sid, 3 + s, s, {"ok": float(s)}) for s in range(60)]
    path_a = _write_spool(spool, sid, 1, a)
    _write_spool(spool, sid, 63, [_log(sid, 3 + s, s, {"ok": float(s)}) for s in range(60, 120)]).unlink()
    c = [_log(sid, 3 + s, s, {"ok": float(s)}) for s in range(120, 200)] + [_finish(sid, 203)]
    path_c = _write_spool(spool, sid, 123, c)
    # Truncate A in the middle of step 40's frame: steps 40..59 are lost with it.
    keep = sum(len(f) for f in a[: 2 + 40]) + len(a[2 + 40]) // 2
    with open(path_a, "r+b") as f:
        f.truncate(keep)
    daemon = stopped_daemon.start()
    wait_for(lambda: not path_a.exists() and not path_c.exists(), timeout=20, what="the spool files to be read")
    assert _steps("cut") == list(range(40)) + list(range(120, 200))
    assert _state("cut") == "finished"
    status = daemon.status()
    assert status is not None and status["frames_lost"] == 20 + 60
    out = subprocess.run(
        [sys.executable, "-m", "trackiod", "status"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert "80 frames (spool files deleted or truncated" in out


def test_a_spool_file_that_breaks_the_reader_is_set_aside_once(tmp_path: Path, caplog: Any) -> None:
    """The safety net under finding 2: whatever reading or applying a file raises, the loop goes on and the
    file is renamed ``*.bad`` (kept for a bug report, the error logged with its traceback) instead of failing
    every turn. The raise is provoked on purpose by an ``apply`` that fails (the real one never should: it counts
    bad frames itself)."""
    from trackiod.ingest.spool import SpoolIngester

    sid = os.urandom(16)
    path = _write_spool(tmp_path / "spool", sid, 1, _opening(sid, "x"))

    def apply(msgs: list[Any]) -> None:
        raise RuntimeError("a bug in applying a frame")

    spool = SpoolIngester(tmp_path / "spool", 1 << 20, apply, lambda: True)
    with caplog.at_level("ERROR", logger="trackiod.spool"):
        assert spool.ingest() == 0
        assert spool.ingest() == 0  # nothing left to fail on
    assert spool.bad_files == 1
    assert any(r.exc_info and "a bug in applying" in str(r.exc_info[1]) for r in caplog.records)
    assert not path.exists() and path.with_name(path.name + ".bad").exists()
