"""Spool files written the way a shim that lost its daemon writes them, for tests of the daemon's spool reading.

A session's spool holds its SESSION and RUN_START frames and then LOG frames ``{"k0": step}``; each file is
named by the session and its first sequence number (``protocol.spool_name``), so the daemon reads it as a dead
trainer's leftovers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgpack

from trackio_shim import protocol as P

#: The run handle the spooled session logs to.
HANDLE = 1


def session_frames(sid: bytes, project: str, run_id: str) -> list[bytes]:
    """The first two frames of a spooled session: SESSION, then RUN_START of ``project/run_id`` (no reply wanted)."""
    info = {"version": P.PROTOCOL_VERSION, "pid": 0, "host": "spooled", "started": time.time()}
    return [
        P.pack([P.SESSION, sid, 1, info]),
        P.pack([P.RUN_START, sid, 2, HANDLE, {"project": project, "id": run_id, "resume": "allow"}]),
    ]


def log_frames(sid: bytes, first_seq: int, first_step: int, count: int) -> list[bytes]:
    """``count`` one-key LOG frames: seq ``first_seq + i`` logs ``{"k0": step}`` at step ``first_step + i``."""
    packer = msgpack.Packer(use_bin_type=True)
    now = time.time()
    return [
        packer.pack([P.LOG, sid, first_seq + i, HANDLE, first_step + i, now, {"k0": float(first_step + i)}])
        for i in range(count)
    ]


def write_spool(directory: Path, sid: bytes, first_seq: int, frames: list[bytes]) -> Path:
    """Write ``frames`` (seq ``first_seq`` onward) as one closed spool file; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / P.spool_name(sid, first_seq)
    with open(path, "wb") as f:
        f.writelines(frames)
    return path


def spooled_run(directory: Path, project: str, run_id: str, steps: int, files: int = 1) -> bytes:
    """A dead session's whole spool: its run ``project/run_id`` with steps ``0..steps-1``, in ``files`` files."""
    sid = os.urandom(P.SESSION_ID_BYTES)
    head = session_frames(sid, project, run_id)
    per_file = -(-steps // files)
    seq = 1
    for start in range(0, steps, per_file):
        count = min(per_file, steps - start)
        frames = log_frames(sid, seq + len(head) if start == 0 else seq, start, count)
        if start == 0:
            frames = head + frames
        write_spool(directory, sid, seq, frames)
        seq += len(frames)
    return sid
