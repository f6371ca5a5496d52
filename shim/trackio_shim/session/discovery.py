"""How a session finds its daemon: the daemon's state file, and starting one when allowed.

:class:`DaemonLocator` decides *where* to look and *whether* to start a daemon; the session it serves does
the talking. It sees the session only through :class:`Reachable` (ping, the endpoint, reconnect), so the
socket and its lock stay the client's alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from trackio_shim import daemon_state
from trackio_shim._warn import warn_once
from trackio_shim.errors import AccessError
from trackio_shim.settings import TrackiodSettings


class Reachable(Protocol):
    """What the locator needs of a session."""

    @property
    def endpoint(self) -> str:
        """The endpoint the session's socket is connected to."""
        ...

    def ping(self, timeout: float) -> bool:
        """True when a daemon answered a ping within ``timeout`` seconds."""
        ...

    def reconnect(self, endpoint: str) -> None:
        """Point the session's socket at ``endpoint`` instead."""
        ...


class DaemonLocator:
    """Reaching the daemon for one session: ping, follow the daemon's state file, autostart (docs/settings.md)."""

    def __init__(self, settings: TrackiodSettings, session: Reachable) -> None:
        self.settings = settings
        self._session = session
        self._last_autostart = 0.0

    def ensure_daemon(self) -> bool:
        """Make sure a daemon answers, starting one when allowed; False when none could be reached."""
        session = self._session
        if session.ping(0.25) or self._follow_state_file():
            return True
        if not self.settings.autostart:
            return False
        from trackio_shim.session.autostart import spawn_daemon

        proc = spawn_daemon(self.settings)
        self._last_autostart = time.monotonic()
        deadline = time.monotonic() + self.settings.autostart_timeout_s
        while time.monotonic() < deadline:
            if session.ping(0.2):
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
        state = daemon_state.read(self.settings.state_path)
        if state is None:
            return False
        try:
            os.kill(state.pid, 0)
        except OSError:
            return False
        endpoint = state.endpoint
        if endpoint == self._session.endpoint:
            return False
        if endpoint.startswith("ipc://"):
            from trackio_shim.access import require_socket_dir

            try:
                require_socket_dir(Path(endpoint[6:]).parent)
            except (OSError, AccessError) as exc:
                warn_once("state-endpoint", f"trackio_shim: not following the daemon to {endpoint}: {exc}")
                return False
        self._session.reconnect(endpoint)
        return self._session.ping(1.0)

    def maybe_restart(self, last_heard: float, pending: bool) -> None:
        """Bring back a daemon that was killed mid-run (the session's pump calls this every round).

        Only when a daemon was heard before (``last_heard``, monotonic) and has gone quiet with data
        ``pending``, and not more often than the autostart timeout allows: the run goes on without anyone's
        intervention.
        """
        if not self.settings.autostart:
            return
        now = time.monotonic()
        quiet = now - last_heard if last_heard else 0.0
        gone = bool(last_heard) and quiet > 3 * self.settings.heartbeat_interval_s
        if gone and pending and now - self._last_autostart > max(10.0, self.settings.autostart_timeout_s):
            self._last_autostart = now
            try:
                from trackio_shim.session.autostart import spawn_daemon

                spawn_daemon(self.settings)
            except (OSError, AccessError) as exc:
                warn_once("autostart", f"trackio_shim: could not restart trackiod: {exc}")
