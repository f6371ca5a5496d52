"""BATCH messages (protocol 2, docs/protocol.md "Coalescing"): each frame in a batch is applied as if it had come
alone, and a bad one costs only itself, never its neighbours or the session. A raw DEALER socket against a real
daemon; what was stored is read back from the database.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import zmq

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.training import PROJECT, raw_points
from trackio_shim import protocol as P


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def test_batch_applies_each_frame_and_drops_only_the_bad_ones(daemon: DaemonProcess) -> None:
    sid, other = os.urandom(16), os.urandom(16)
    frames = [
        _pack(P.SESSION, sid, 1, {"version": 2, "pid": 1}),
        _pack(P.RUN_START, sid, 2, 1, {"project": PROJECT, "id": "batched"}),
        _pack(P.LOG, sid, 3, 1, 0, 1.0, {"x": 0.0}),
        b"\xc1 not msgpack",  # undecodable
        _pack(P.LOG, sid, 4, 1, 1, 1.0, {"x": 1.0}),
        _pack(P.LOG, other, 1, 1, 0, 1.0, {"x": 9.0}),  # another session's frame
        _pack(P.LOG, sid, 5, 1, 2, 1.0, {"x": 2.0}),
        _pack(P.BATCH, sid, [_pack(P.LOG, sid, 6, 1, 9, 1.0, {"x": 9.0})]),  # a batch inside a batch
        _pack(P.LOG, sid, 6, 1, 3, 1.0, {"x": 3.0}),
        _pack(P.LOG, sid, 6, 1, 3, 1.0, {"x": 3.0}),  # a duplicate: dropped by the sequence check
    ]
    batch = msgpack.packb([P.BATCH, sid, [*frames[:4], 5, *frames[4:]]], use_bin_type=True)  # 5: not bin
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.connect(daemon.settings().endpoint)
        sock.send(batch)
        wait_for(lambda: len((raw_points("batched") or {}).get("x", [])) >= 4, timeout=20, what="4 points of x")
        series = raw_points("batched")
        assert series is not None
        assert sorted(map(tuple, series["x"].tolist())) == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]
        status = daemon.status()
        assert status is not None and int(status["malformed_frames"]) == 4  # garbage, not bin, other, nested
        # The session goes on: a later frame, alone, is applied after the batch's.
        sock.send(_pack(P.LOG, sid, 7, 1, 4, 1.0, {"x": 4.0}))
        wait_for(lambda: len((raw_points("batched") or {}).get("x", [])) >= 5, timeout=20, what="the next frame")
    finally:
        ctx.destroy(linger=0)


def test_batch_field_that_is_not_a_list_is_one_malformed_message(daemon: DaemonProcess) -> None:
    sid = os.urandom(16)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.connect(daemon.settings().endpoint)
        sock.send(_pack(P.BATCH, sid, {"not": "a list"}))
        wait_for(lambda: int((daemon.status() or {}).get("malformed_frames", 0)) == 1, timeout=20, what="one malformed")
    finally:
        ctx.destroy(linger=0)
