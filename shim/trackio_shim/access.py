"""Who may reach a trackiod: its data directory and its socket directory belong to one user (docs/security.md).

Both the daemon (at start) and the shim (before it connects) call these. A directory trackiod creates is made
0700 and so always passes; an existing one that is wider, or someone else's, is refused with an error naming the
path and the command that fixes it. Nothing here changes a directory the user made, except the socket
directories that trackiod itself names (``trackiod-UID/<digest>``), which are nobody else's business.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trackio_shim.errors import AccessError

#: Bits that let group or others in at all (read, write or search): a data directory must have none.
OPEN_TO_OTHERS = 0o077
#: Bits that let group or others create, rename or delete entries: a socket directory must have none.
WRITABLE_BY_OTHERS = 0o022


def _describe(mode: int) -> str:
    who = [name for name, bits in (("group", 0o070), ("others", 0o007)) if mode & bits]
    return f"mode {mode:04o} lets {' and '.join(who)} in"


def _owned(path: Path, st: os.stat_result, what: str, setting: str) -> None:
    if st.st_uid != os.geteuid():
        raise AccessError(
            f"the {what} {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); trackiod serves only "
            f"its owner: set {setting} to a directory of your own"
        )


def require_private_dir(path: Path, what: str, setting: str) -> None:
    """Refuse ``path`` unless it is a directory of this user that group and others cannot enter.

    Raises:
        AccessError: it belongs to another user, or its mode has any group/other bit (the text says how to fix it).
    """
    st = path.stat()  # follows a symlink: a data directory may live elsewhere, what counts is the real one
    _owned(path, st, what, setting)
    mode = stat.S_IMODE(st.st_mode)
    if mode & OPEN_TO_OTHERS:
        raise AccessError(
            f"the {what} {path} is not private ({_describe(mode)}): other users could read or change your runs; "
            f"run `chmod 700 {path}` and start again"
        )


def require_socket_dir(path: Path, setting: str = "TRACKIOD_RUNTIME_DIR") -> None:
    """Refuse to listen or connect in ``path`` unless it is this user's and nobody else can write in it.

    Someone who can write there could replace the socket with their own and receive your training data.

    Raises:
        AccessError: it belongs to another user, or group/others may write in it.
    """
    st = path.stat()
    _owned(path, st, "socket directory", setting)
    mode = stat.S_IMODE(st.st_mode)
    if mode & WRITABLE_BY_OTHERS:
        raise AccessError(
            f"the socket directory {path} is writable by other users (mode {mode:04o}), who could replace "
            f"trackiod's socket with their own; run `chmod 700 {path}` or set {setting} to a private directory"
        )


def make_own_dir(path: Path) -> None:
    """Create (0700) or tighten a directory that trackiod itself names; refuse one that belongs to someone else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    _owned(path, st, "socket directory", "TRACKIOD_RUNTIME_DIR")
    if stat.S_IMODE(st.st_mode) & OPEN_TO_OTHERS:
        os.chmod(path, 0o700)
