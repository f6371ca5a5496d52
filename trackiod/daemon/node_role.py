"""The node's role, kept in its data directory: whether it forwards to a head, or listens (docs/forwarding.md).

Forwarding is a property of the node, not of one process: ``trackiod start --forward/--listen`` stores the
role in ``node.json`` and every daemon of that data directory (the CLI, systemd, a trainer's autostart) reads
it through :meth:`TrackiodSettings.load`. Kept apart from :mod:`trackiod.daemon.forward` so that deciding
whether to journal costs no ZeroMQ CURVE imports.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trackio_shim.settings import NODE_FILE, NODE_OFF, TrackiodSettings, read_node_file


def journals(settings: TrackiodSettings) -> bool:
    """Whether this daemon keeps the forwarding journal: it forwards, or its data directory is set to forward.

    A daemon told not to forward (``TRACKIOD_FORWARD=off``) on a node whose ``node.json`` forwards still
    journals, so the next daemon that forwards sends what this one stored.
    """
    return bool(settings.forward or read_node_file(settings.home).get("forward"))


def remember_role(home: Path, **roles: str | None) -> None:
    """Store ``listen``/``forward`` in the data directory's ``node.json`` (``off`` clears one; None: unchanged).

    Written atomically (0600), so every daemon of this data directory, however started, finds the same role.
    """
    stored = read_node_file(home)
    for name, value in roles.items():
        if value is None:
            continue
        if value.strip().lower() in NODE_OFF:
            stored.pop(name, None)
        else:
            stored[name] = value
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / NODE_FILE
    tmp = path.with_name(f".{NODE_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(stored, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
