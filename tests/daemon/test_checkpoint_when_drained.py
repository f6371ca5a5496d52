"""The writer loop copies the WAL into the database after a commit made with the socket drained (daemon/loop.py,
DRAINED_CHECKPOINT_S), not only at the maintenance tick: small copies while the daemon has slack keep the
once-a-tick copy (75-100 ms at 1M points/s) out of log() -> ACK.

Maintenance runs once a minute here and the automatic checkpoint waits for 16,384 pages, so the database file
can only grow within the wait below through the drained checkpoint (SQLite writes pages to the file only when
it checkpoints). A raw DEALER socket against a real daemon.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
import zmq

from tests.support.daemons import Daemons, wait_for
from trackio_shim import protocol as P


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def test_a_drained_commit_is_checkpointed_before_the_maintenance_tick(
    daemons: Daemons, env: dict[str, str], tmp_path: Path
) -> None:
    daemon = daemons(env, tmp_path / "daemon.log").start(
        TRACKIOD_MAINTENANCE_INTERVAL_S="60", TRACKIOD_CHECKPOINT_PAGES="16384"
    )
    db = daemon.settings().db_path
    before = db.stat().st_size
    sid = os.urandom(P.SESSION_ID_BYTES)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.connect(daemon.settings().endpoint)
        sock.send(_pack(P.SESSION, sid, 1, {"version": P.PROTOCOL_VERSION, "pid": 1}))
        sock.send(_pack(P.RUN_START, sid, 2, 1, {"project": "ckpt", "id": "r", "req": 1}))
        last = 2 + 5_000
        values = {f"k{i}": 0.5 for i in range(10)}
        frames = [_pack(P.LOG, sid, seq, 1, seq, 1.0, values) for seq in range(3, last + 1)]
        sock.send(_pack(P.BATCH, sid, frames))
        acked = 0

        def acknowledged() -> bool:
            nonlocal acked
            while sock.poll(50):
                msg = msgpack.unpackb(sock.recv())
                if msg[0] == P.ACK:
                    acked = max(acked, int(msg[1]))
            return acked >= last

        wait_for(acknowledged, timeout=20, what="the ACK of the last frame")
        wait_for(lambda: db.stat().st_size > before, timeout=20, what="the WAL copied into the database file")
    finally:
        ctx.destroy(linger=0)
