"""``daemon.json``: what the running daemon tells its clients about itself, in the data directory.

The daemon writes it once it listens (and removes it at exit); the shim reads it to find a daemon that listens
somewhere else than it computed and to print the dashboard's URL, and the CLI reads it for the daemon's pid.
One format, written and read only here (docs/settings.md lists the fields).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple


class DaemonState(NamedTuple):
    """The fields of ``daemon.json`` (a NamedTuple, not a dataclass: the shim loads this at import, and
    dataclasses costs milliseconds there)."""

    pid: int
    endpoint: str
    started: float | None = None
    boot_id: str | None = None
    database: str | None = None
    version: str | None = None
    #: The URL of the dashboard the daemon serves, None unless it serves one.
    dashboard: str | None = None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically: a reader sees the old file or the new one, never half of one."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._asdict()))
        tmp.replace(path)


def read(path: Path) -> DaemonState | None:
    """The state in ``path``; None when there is none or it cannot be read (no daemon, or one mid-write)."""
    try:
        raw = json.loads(path.read_text())
        pid, endpoint, dashboard = int(raw["pid"]), str(raw["endpoint"]), raw.get("dashboard")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return DaemonState(
        pid=pid,
        endpoint=endpoint,
        started=raw.get("started"),
        boot_id=raw.get("boot_id"),
        database=raw.get("database"),
        version=raw.get("version"),
        dashboard=dashboard if isinstance(dashboard, str) and dashboard else None,
    )
