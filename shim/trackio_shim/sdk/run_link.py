"""RunLink: a run's line to the session, all that the run's helpers (config, summary, alerts, files, artifacts,
the importers) need of it, so that none of them reaches into the Run.
"""

from __future__ import annotations

from typing import Any

from trackio_shim import protocol as P
from trackio_shim._warn import warn_once
from trackio_shim.session.client import Client
from trackio_shim.settings import TrackiodSettings


class RunLink:
    """The session (``client``, None for a disabled run), the run's wire ``handle`` and whether it is finished."""

    def __init__(self, client: Client | None, handle: int, run_id: str) -> None:
        self.client = client
        self.handle = handle
        self.run_id = run_id
        #: Set by Run.finish(): later changes are warned about and not sent.
        self.finished = False

    @property
    def settings(self) -> TrackiodSettings | None:
        """The session's settings; None for a disabled run."""
        return self.client.settings if self.client is not None else None

    def send(self, kind: int, *fields: Any) -> int:
        """Send ``(kind, handle, *fields)``; returns its seq, 0 when nothing was sent (finished, disabled)."""
        if self.finished:
            warn_once(
                ("after-finish", self.run_id, kind), f"trackio_shim: run {self.run_id} is finished; change not saved"
            )
            return 0
        if self.client is None:
            return 0
        return self.client.emit((kind, self.handle, *fields))

    def query(self, what: str, args: dict[str, Any]) -> Any:
        """Ask the daemon (after this session's frames are acknowledged); None when it does not answer in time."""
        client = self.client
        if client is None:
            return None
        client.wait_acked(client.seq, 1.0)
        reply = client.request((P.QUERY, None, what, args), timeout=1.0, sequenced=False)
        return reply.body if reply.done and reply.ok else None
