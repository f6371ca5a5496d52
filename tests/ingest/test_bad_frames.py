"""Malformed frames from a raw ZeroMQ socket: counted, never stored, and the daemon serves everyone else on.

The in-process properties (all or nothing per frame, every field of every kind) are in tests/ingest/test_fuzz_frames.py;
here a real daemon process gets garbage from raw DEALER sockets, and the standalone scripts/fuzz_frames.py does
the same for as long as asked.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zmq

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.hostile_frames import H, consumed, deep_frame, huge_header, random_frame
from tests.support.training import KEYS, PROJECT, assert_complete, report_of, start_training
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
        ("ping with an unhashable version", _pack(P.PING, sid(16), [1])),
        ("resync to a string", _pack(P.RESYNC, sid(16), "x")),
        ("sequence number beyond int64", _pack(P.LOG, sid(16), 2**64 - 1, 1, 0, 1.0, {"x": 1.0})),
        ("step beyond int64", _pack(P.LOG, sid(16), 1, 1, 2**64 - 1, 1.0, {"x": 1.0})),
        ("timestamp NaN", _pack(P.LOG, sid(16), 1, 1, 0, float("nan"), {"x": "text"})),
        ("unknown summary aggregate", _pack(P.DEFINE_METRIC, sid(16), 1, 1, {"name": "x", "summary": ["m,n"]})),
        ("summary with a bytes map key", _pack(P.SUMMARY, sid(16), 1, 1, {"best": {b"k": 1}})),
    ]


def malformed(daemon: DaemonProcess) -> int | None:
    status = daemon.status()
    return None if status is None else int(status["malformed_frames"])


def _stored_tables(home: Path) -> dict[str, int]:
    from trackiod.read.connection import open_reader

    conn = open_reader(home / "trackiod.db")
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


def _dealer(ctx: zmq.Context[Any], daemon: DaemonProcess, sid: bytes | None = None) -> zmq.Socket[Any]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if sid is not None:
        sock.setsockopt(zmq.ROUTING_ID, sid)
    sock.connect(daemon.settings().endpoint)
    return sock


def _ping(sock: zmq.Socket[Any], sid: bytes, timeout: float = 10) -> bool:
    """Ping until a PONG comes back (a dropped connection reconnects on its own, losing what was in flight)."""

    def answered() -> bool:
        sock.send(_pack(P.PING, sid, P.PROTOCOL_VERSION))
        while sock.poll(100):
            if P.decode_daemon(sock.recv())[0] == P.PONG:
                return True
        return False

    return bool(wait_for(answered, timeout=timeout, what="a PONG"))


@pytest.mark.slow
def test_hostile_stream_from_a_run_keeps_the_daemon_up_bounded_and_serving(
    stopped_daemon: DaemonProcess, env: dict[str, str], shim: Any
) -> None:
    """100k hostile frames and 200 huge ones from a session that owns a run, then a good client: all stored."""
    daemon = stopped_daemon.start(TRACKIOD_MAX_FRAME_BYTES=str(1 << 20))
    assert daemon.proc is not None
    proc = psutil.Process(daemon.proc.pid)
    ctx = zmq.Context()
    sid, seq = os.urandom(16), 0
    rng = random.Random(8)
    try:
        sock = _dealer(ctx, daemon, sid)
        sock.setsockopt(zmq.RCVHWM, 0)
        for kind, *fields in ((P.SESSION, {"version": 1, "pid": 1}), (P.RUN_START, H, {"project": PROJECT, "id": "h"})):
            seq += 1
            sock.send(_pack(kind, sid, seq, *fields))
        # The killers found by the fuzzers, now sent from a session whose run exists (so they reach the store).
        killers = [
            (P.DEFINE_METRIC, H, {"name": "x", "summary": ["bogus"]}),
            (P.DEFINE_METRIC, H, {"name": "x", "summary": 5.0}),
            (P.SUMMARY, H, {"best": {b"bytes": 1}}),
            (P.LOG, H, 2**64 - 1, 1.0, {"x": 1.0}),
            (P.LOG, H, 1, float("nan"), {"x": "text"}),
        ]
        for kind, *fields in killers:
            seq += 1
            sock.send(_pack(kind, sid, seq, *fields))
        sent = 0

        def hostile(count: int) -> None:
            nonlocal seq, sent
            for i in range(count):
                raw = random_frame(rng, sid, seq + 1)
                sock.send(raw)
                seq += consumed(raw, sid, seq + 1)
                sent += 1
                while sock.poll(0):  # NOTICEs and ACKs: read them so nothing queues up on either side
                    sock.recv()
                if i % 2000 == 1999:
                    # Paced, so this measures what ingest keeps, not ZeroMQ's receive queue (docs/robustness.md).
                    _ping(sock, sid, timeout=60)

        hostile(5_000)
        wait_for(lambda: (daemon.status() or {}).get("malformed_frames", 0) > 500, timeout=60, what="garbage read")
        rss_before = proc.memory_info().rss
        hostile(95_000)
        for levels in (900, 1020):  # just under the decoder's limit, encoded by hand
            seq += 1
            sock.send(deep_frame(P.CONFIG, sid, seq, levels))
        big = _dealer(ctx, daemon)  # over max_frame_bytes but under ZeroMQ's limit: counted and dropped
        for i in range(200):
            big.send(huge_header(rng) if i % 2 else b"\x00" * ((1 << 20) + 1 + i))
        _ping(sock, sid, timeout=120)  # everything before the PING has been read
        rss_after = proc.memory_info().rss
        assert daemon.alive
        growth = rss_after - rss_before
        assert growth < 100 << 20, f"RSS grew by {growth >> 20} MiB over 95k garbage and 200 huge frames"
        assert (daemon.status() or {})["malformed_frames"] >= 1000

        run = shim.init(project=PROJECT, id="after-garbage")
        for step in range(2000):
            run.log({f"k{k}": step * 10 + k for k in range(KEYS)})
        run.finish()
        assert_complete("after-garbage", 2000)
        assert daemon.alive
    finally:
        ctx.destroy(linger=0)


@pytest.mark.slow
def test_a_message_over_zeromq_s_limit_drops_only_that_connection(stopped_daemon: DaemonProcess) -> None:
    """MAXMSGSIZE is 4 x max_frame_bytes: beyond it ZeroMQ drops the peer before the daemon allocates the frame."""
    daemon = stopped_daemon.start(TRACKIOD_MAX_FRAME_BYTES=str(MAX_FRAME))
    ctx = zmq.Context()
    try:
        bystander_sid, sender_sid = os.urandom(16), os.urandom(16)
        bystander = _dealer(ctx, daemon, bystander_sid)
        sender = _dealer(ctx, daemon, sender_sid)
        assert _ping(bystander, bystander_sid) and _ping(sender, sender_sid)
        malformed_before = malformed(daemon)
        for size in (4 * MAX_FRAME + 1, 64 * MAX_FRAME):
            sender.send(b"\x00" * size)
            assert _ping(bystander, bystander_sid), "the daemon stopped serving other clients"
        assert daemon.alive
        # ZeroMQ refused both before the daemon saw them; the sender reconnects by itself and is served again.
        assert malformed(daemon) == malformed_before
        assert _ping(sender, sender_sid, timeout=20)
        # Just under the limit the frame reaches the daemon, which counts it as over max_frame_bytes.
        sender.send(b"\x00" * (4 * MAX_FRAME - 64))
        wait_for(lambda: malformed(daemon) == malformed_before + 1, timeout=10, what="the frame under the limit")
        log_text = daemon.log_path.read_text(errors="replace")
        assert "over max_frame_bytes" in log_text
    finally:
        ctx.destroy(linger=0)
