"""Malformed frames from a raw ZeroMQ socket: counted, never stored, and the daemon serves everyone else on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from conftest import DaemonProcess, wait_for
from test_reliability import KEYS, PROJECT, assert_complete, report_of, start_training

from trackio_shim import protocol as P

MAX_FRAME = 65_536


def _pack(*fields: Any) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def bad_frames() -> list[tuple[str, bytes]]:
    """(what, frame) pairs the daemon must reject; each names a fresh 16-byte session where one is needed."""
    sid = os.urandom
    good_log = _pack(P.LOG, sid(16), 1, 1, 0, 1.0, {"x": 1.0})
    return [
        ("garbage bytes", b"\xc1\xff\x00 this is not msgpack \xde\xad\xbe\xef"),
        ("empty frame", b""),
        ("truncated msgpack", good_log[:-5]),
        ("two values in one frame", good_log + good_log),
        ("not an array", msgpack.packb({"kind": P.LOG}, use_bin_type=True)),
        ("array too short", _pack(P.LOG)),
        ("kind is a string", _pack("log", sid(16), 1, 1, 0, 1.0, {"x": 1.0})),
        ("kind is a float", _pack(float(P.LOG), sid(16), 1, 1, 0, 1.0, {"x": 1.0})),
        ("unknown sequenced kind", _pack(29, sid(16), 1, 1, 0, 1.0, {"x": 1.0})),
        ("unknown control kind", _pack(99, sid(16), "x")),
        ("a daemon kind sent to the daemon", _pack(P.ACK, sid(16), 5)),
        ("session id too short", _pack(P.LOG, sid(8), 1, 1, 0, 1.0, {"x": 1.0})),
        ("session id too long", _pack(P.LOG, sid(17), 1, 1, 0, 1.0, {"x": 1.0})),
        ("session id as text", _pack(P.LOG, "a" * 16, 1, 1, 0, 1.0, {"x": 1.0})),
        ("sequence number is a string", _pack(P.LOG, sid(16), "1", 1, 0, 1.0, {"x": 1.0})),
        ("sequence number is zero", _pack(P.LOG, sid(16), 0, 1, 0, 1.0, {"x": 1.0})),
        ("sequence number is negative", _pack(P.LOG, sid(16), -3, 1, 0, 1.0, {"x": 1.0})),
        ("too many fields", _pack(P.LOG, sid(16), 1, 1, 0, 1.0, {"x": 1.0}, "extra")),
        ("too few fields", _pack(P.LOG, sid(16), 1, 1, 0)),
        ("step is a string", _pack(P.LOG, sid(16), 1, 1, "zero", 1.0, {"x": 1.0})),
        ("data is a list", _pack(P.LOG, sid(16), 1, 1, 0, 1.0, [1.0, 2.0])),
        ("timestamp is a dict", _pack(P.LOG, sid(16), 1, 1, 0, {}, {"x": 1.0})),
        ("run params are a list", _pack(P.RUN_START, sid(16), 1, 1, ["project", "p"])),
        ("config items are a string", _pack(P.CONFIG, sid(16), 1, 1, "lr=0.1")),
        ("ping without a version", _pack(P.PING, sid(16))),
    ]


def malformed(daemon: DaemonProcess) -> int | None:
    status = daemon.status()
    return None if status is None else int(status["malformed_frames"])


def _stored_tables(home: Path) -> dict[str, int]:
    from trackiod import query

    conn = query.open_reader(home / "trackiod.db")
    try:
        return {
            table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("projects", "runs", "keys", "run_keys", "chunks", "texts", "session_runs")
        }
    finally:
        conn.close()


@pytest.mark.slow
def test_malformed_frames_are_counted_and_dropped_while_others_are_served(
    stopped_daemon: DaemonProcess, env: dict[str, str], shim: Any
) -> None:
    daemon = stopped_daemon.start(TRACKIOD_MAX_FRAME_BYTES=str(MAX_FRAME))
    assert malformed(daemon) == 0

    steps = 20_000
    training: subprocess.Popen[str] = start_training(env, "victim", steps=steps, pace=50)
    ctx = zmq.Context()
    try:
        frames = bad_frames()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(daemon.settings().endpoint)
        for i, (what, frame) in enumerate(frames, start=1):
            sock.send(frame)
            wait_for(lambda n=i: malformed(daemon) == n, timeout=10, what=f"{what!r} counted")
        sock.close()

        # One frame above TRACKIOD_MAX_FRAME_BYTES, and one message of three parts, each from its own socket.
        count = len(frames)
        for what, parts in (
            ("oversized frame", [_pack(P.LOG, os.urandom(16), 1, 1, 0, 1.0, {"blob": "x" * (MAX_FRAME + 1)})]),
            ("multipart message", [b"", _pack(P.PING, os.urandom(16), 1), b"tail"]),
        ):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(daemon.settings().endpoint)
            sock.send_multipart(parts)
            count += 1
            wait_for(lambda n=count: malformed(daemon) == n, timeout=10, what=f"{what!r} counted")
            sock.close()

        # The daemon is alive and the concurrent run is stored completely.
        report = report_of(training)
        assert report["steps"] == steps
        assert_complete("victim", steps)
        assert daemon.alive

        # And a run started afterwards, in this process, is served normally.
        run = shim.init(project=PROJECT, id="after")
        for step in range(1000):
            run.log({f"k{k}": step * 10 + k for k in range(KEYS)})
        run.finish()
        assert_complete("after", 1000)
    finally:
        if training.poll() is None:
            training.kill()
            training.communicate()
        ctx.destroy(linger=0)

    assert malformed(daemon) == count
    # Nothing from the bad frames is stored: only the two good runs, their project and their ten keys.
    tables = _stored_tables(daemon.home)
    assert tables.pop("chunks") > 0
    assert tables == {"projects": 1, "runs": 2, "keys": KEYS, "run_keys": 2 * KEYS, "texts": 0, "session_runs": 2}
