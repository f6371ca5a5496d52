"""One-shot requests from the CLI to a running daemon (status, stop), over the daemon's own socket.

Replies are decoded by the shared protocol module, as the shim decodes them: one definition of the wire.
"""

from __future__ import annotations

import os
import time
from typing import Any

import zmq

from trackio_shim import daemon_state
from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError
from trackio_shim.settings import TrackiodSettings
from trackiod.dashboard.writes import Control


def request(
    settings: TrackiodSettings, what: str, args: dict[str, Any] | None = None, timeout: float = 2.0
) -> tuple[bool, Any] | None:
    """Send a QUERY and wait for its REPLY; None when no daemon answered within ``timeout`` seconds."""
    sid = os.urandom(P.SESSION_ID_BYTES)
    ctx = zmq.Context(io_threads=1)
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.ROUTING_ID, sid)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.connect(settings.endpoint)
        message = P.pack((P.QUERY, sid, 1, what, args or {}))
        deadline = time.monotonic() + timeout
        sent = False
        while time.monotonic() < deadline:
            if not sent:
                try:
                    sock.send(message, zmq.NOBLOCK)
                    sent = True
                except zmq.Again:
                    time.sleep(0.01)  # not connected yet: ZeroMQ connects in the background
                    continue
            if sock.poll(50):
                try:
                    reply = P.decode_daemon(sock.recv())
                except ProtocolError:
                    continue  # not an answer: keep waiting for one
                if reply[0] == P.REPLY and len(reply) == 4 and reply[1] == 1:
                    return bool(reply[2]), reply[3]
        return None
    finally:
        sock.close(linger=0)
        ctx.term()


def dashboard_control(settings: TrackiodSettings) -> Control:
    """What a dashboard sends its run edits through: a QUERY to the daemon of ``settings`` (the single writer),
    waiting at most 5 s. The daemon's own dashboard, ``trackiod show`` and ``trackio_shim.show()`` all use it."""
    return lambda what, args: request(settings, what, args, 5.0)


def daemon_pid(settings: TrackiodSettings) -> int | None:
    """The pid recorded in the daemon's state file, if that process still exists."""
    state = daemon_state.read(settings.state_path)
    if state is None:
        return None
    pid = state.pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
