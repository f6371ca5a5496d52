"""The writer loop commits as soon as the socket is drained (daemon/loop.py, DRAINED_COMMIT_SHARE of the flush
interval), not at the flush deadline: a trainer that logs and pauses gets its ACK without waiting for the
deadline or for maintenance.

The flush interval is 30 s here (so a drained commit waits 6 s) and maintenance a minute: an ACK within the
20 s wait below can only come from the drained commit. A raw DEALER socket against a real daemon.
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


def test_a_drained_socket_is_committed_and_acknowledged_before_the_flush_deadline(
    daemons: Daemons, env: dict[str, str], tmp_path: Path
) -> None:
    daemon = daemons(env, tmp_path / "daemon.log").start(
        TRACKIOD_FLUSH_INTERVAL_S="30", TRACKIOD_MAINTENANCE_INTERVAL_S="60"
    )
    sid = os.urandom(P.SESSION_ID_BYTES)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.connect(daemon.settings().endpoint)
        sock.send(_pack(P.SESSION, sid, 1, {"version": P.PROTOCOL_VERSION, "pid": 1}))
        sock.send(_pack(P.RUN_START, sid, 2, 1, {"project": "drained", "id": "r", "req": 1}))
        frames = [_pack(P.LOG, sid, seq, 1, seq, 1.0, {"x": float(seq)}) for seq in range(3, 8)]
        sock.send(_pack(P.BATCH, sid, frames))
        acked = 0

        def acknowledged() -> bool:
            nonlocal acked
            while sock.poll(50):
                msg = msgpack.unpackb(sock.recv())
                if msg[0] == P.ACK:
                    acked = max(acked, int(msg[1]))
            return acked >= 7

        wait_for(acknowledged, timeout=20, what="the ACK of the last frame (the flush deadline is 30 s)")
    finally:
        ctx.destroy(linger=0)
