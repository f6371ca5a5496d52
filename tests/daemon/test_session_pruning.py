"""Idle sessions whose runs are over are forgotten in memory, and come back intact (issue 18, finding 13).

Every process that ever logged is a session; the daemon kept each one's watermark and run handles in memory
forever. A real daemon gets many short sessions from raw DEALER sockets; once they are idle, ``trackiod status``
shows them pruned, and a pruned session that sends again is still deduplicated against its stored watermark.
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgpack
import zmq

from tests.support.daemons import DaemonProcess, wait_for
from trackio_shim import protocol as P

SESSIONS = 200


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def _frames(sid: bytes, run_id: str) -> list[bytes]:
    return [
        _pack(P.SESSION, sid, 1, {"version": P.PROTOCOL_VERSION, "pid": 1}),
        _pack(P.RUN_START, sid, 2, 1, {"project": "prune", "id": run_id}),
        _pack(P.LOG, sid, 3, 1, 0, time.time(), {"ok": 1.0}),
        _pack(P.RUN_FINISH, sid, 4, 1, 0, time.time()),
    ]


def test_idle_finished_sessions_are_pruned_and_recalled(stopped_daemon: DaemonProcess) -> None:
    from trackio_shim import Api

    daemon = stopped_daemon.start(TRACKIOD_HEARTBEAT_TIMEOUT_S="1")
    ctx = zmq.Context()
    try:
        sids = [os.urandom(16) for _ in range(SESSIONS)]
        socks = []
        for i, sid in enumerate(sids):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTING_ID, sid)
            sock.connect(daemon.settings().endpoint)
            for raw in _frames(sid, f"r{i}"):
                sock.send(raw)
            socks.append(sock)
        wait_for(
            lambda: (daemon.status() or {}).get("sessions_pruned", 0) >= SESSIONS,
            timeout=60,
            what="the idle sessions to be pruned",
        )
        status = daemon.status()
        assert status is not None and status["sessions_in_memory"] < SESSIONS // 10
        assert all(Api().run(f"prune/r{i}").state == "finished" for i in (0, SESSIONS - 1))
        # A pruned session sends again: its old frame is a duplicate, its new run is stored.
        dups = status["duplicates_dropped"]
        sock, sid = socks[0], sids[0]
        sock.send(_frames(sid, "r0")[2])
        sock.send(_pack(P.RUN_START, sid, 5, 2, {"project": "prune", "id": "again"}))
        sock.send(_pack(P.LOG, sid, 6, 2, 0, time.time(), {"ok": 2.0}))
        sock.send(_pack(P.RUN_FINISH, sid, 7, 2, 0, time.time()))
        wait_for(lambda: _state("again") == "finished", timeout=20, what="the recalled session's new run")
        assert (daemon.status() or {})["duplicates_dropped"] == dups + 1
        assert [row["ok"] for row in Api().run("prune/r0").scan_history(keys=["ok"])] == [1.0]
        assert [row["ok"] for row in Api().run("prune/again").scan_history(keys=["ok"])] == [2.0]
    finally:
        ctx.destroy(linger=0)


def _state(run_id: str) -> str | None:
    from trackio_shim import Api
    from trackio_shim.errors import RunNotFoundError

    try:
        return str(Api().run(f"prune/{run_id}").state)
    except (RunNotFoundError, FileNotFoundError):
        return None
