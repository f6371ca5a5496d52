"""Binding the daemon's ipc socket so that only its owner can connect (docs/security.md).

Connecting to a Unix socket needs write permission on the socket file, and ZeroMQ creates that file in
``bind()`` with the process umask: under umask 000 it would be 0777, connectable by anyone who can reach the
directory. So the bind runs under umask 077 (the file is born owner-only, with no window in which it is wider),
then is set to 0600 and checked. The directory around it was checked by ``TrackiodSettings.ensure_dirs``.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

from trackio_shim.access import require_socket_dir
from trackio_shim.errors import AccessError

SOCKET_MODE = 0o600

# os.umask is per process: two binds at once must not restore each other's umask.
_umask_lock = threading.Lock()


def bind_private(sock: Any, endpoint: str) -> None:
    """Bind ``sock`` to the ipc ``endpoint`` with a socket file only this user can connect to.

    Raises:
        AccessError: the socket's directory is someone else's or writable by others, or the file ended up wider.
    """
    path = Path(endpoint[len("ipc://") :])
    require_socket_dir(path.parent)
    with _umask_lock:
        previous = os.umask(0o077)
        try:
            sock.bind(endpoint)
        finally:
            os.umask(previous)
    os.chmod(path, SOCKET_MODE)  # 0700 from the umask; the execute bit means nothing on a socket
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:  # a file system that ignores modes
        raise AccessError(f"the socket {path} stays mode {mode:04o} after chmod 600; use another runtime directory")
