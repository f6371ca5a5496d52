"""How a client finds its daemon: pings, the daemon's state file, and starting one when allowed.

A mixin of :class:`trackio_shim.session.client.Client`, split out to keep that module readable; it shares the client's
socket and lock (all socket access happens under :attr:`Client.lock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from trackio_shim import protocol as P
from trackio_shim.errors import AccessError, ProtocolVersionError
from trackio_shim.session.encoding import warn_once
from trackio_shim.settings import TrackiodSettings


class DiscoveryMixin:
    """Reaching the daemon for :class:`~trackio_shim.session.client.Client`: ping, follow its state file, autostart."""

    settings: TrackiodSettings
    lock: threading.Lock
    seq: int
    acked: int
    endpoint: str
    refused: str | None
    last_heard: float
    _closed: bool
    _last_autostart: float
    _sock: zmq.Socket[bytes]

    def _control(self, fields: tuple[Any, ...]) -> bool:  # provided by Client
        raise NotImplementedError

    def _drain_locked(self) -> None:  # provided by Client
        raise NotImplementedError

    def ping(self, timeout: float) -> bool:
        """Ping the daemon and wait for its answer; True when one answered within ``timeout`` seconds."""
        before = self.last_heard
        deadline = time.monotonic() + timeout
        with self.lock:
            self._control((P.PING, P.PROTOCOL_VERSION))
        while time.monotonic() < deadline:
            with self.lock:
                self._drain_locked()
                if self.refused:
                    raise ProtocolVersionError(
                        f"trackiod at {self.settings.endpoint} cannot serve this shim: {self.refused}"
                    )
                if self.last_heard > before:
                    return True
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.poll(5)
                    if not self._sock.poll(0):
                        self._control((P.PING, P.PROTOCOL_VERSION))
        return False

    def ensure_daemon(self) -> bool:
        """Make sure a daemon answers, starting one when allowed; False when none could be reached."""
        if self.ping(0.25) or self._follow_state_file():
            return True
        if not self.settings.autostart:
            return False
        from trackio_shim.session.autostart import spawn_daemon

        proc = spawn_daemon(self.settings)
        self._last_autostart = time.monotonic()
        deadline = time.monotonic() + self.settings.autostart_timeout_s
        while time.monotonic() < deadline:
            if self.ping(0.2):
                return True
            if proc is not None and proc.poll() is not None:
                # It exited: another daemon holds this data directory (maybe on another endpoint), or it
                # failed to start; its log says which.
                if self._follow_state_file():
                    return True
                if proc.returncode != 0:
                    warn_once(
                        "autostart-failed", f"trackio_shim: trackiod failed to start; see {self.settings.log_path}"
                    )
                    return False
                proc = None
        return False

    def _follow_state_file(self) -> bool:
        """Reach the daemon that owns our data directory when it listens somewhere else than we computed.

        That happens when it was started with another environment (say, with XDG_RUNTIME_DIR set).
        """
        try:
            state = json.loads(self.settings.state_path.read_text())
            endpoint = str(state["endpoint"])
            os.kill(int(state["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if endpoint == self.endpoint:
            return False
        if endpoint.startswith("ipc://"):
            from trackio_shim.access import require_socket_dir

            try:
                require_socket_dir(Path(endpoint[6:]).parent)
            except (OSError, AccessError) as exc:
                warn_once("state-endpoint", f"trackio_shim: not following the daemon to {endpoint}: {exc}")
                return False
        with self.lock:
            self._sock.disconnect(self.endpoint)
            self._sock.connect(endpoint)
            self.endpoint = endpoint
        return self.ping(1.0)

    def _maybe_autostart(self) -> None:
        if not self.settings.autostart or self._closed:
            return
        now = time.monotonic()
        quiet = now - self.last_heard if self.last_heard else 0.0
        # Only when we have heard a daemon before and it has gone quiet with data pending: a daemon that was
        # killed mid-run is brought back, so the run goes on without anyone's intervention.
        pending = self.seq > self.acked
        gone = bool(self.last_heard) and quiet > 3 * self.settings.heartbeat_interval_s
        if gone and pending and now - self._last_autostart > max(10.0, self.settings.autostart_timeout_s):
            self._last_autostart = now
            try:
                from trackio_shim.session.autostart import spawn_daemon

                spawn_daemon(self.settings)
            except (OSError, AccessError) as exc:
                warn_once("autostart", f"trackio_shim: could not restart trackiod: {exc}")
