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


def _not_planted(path: Path, what: str, setting: str) -> None:
    """Refuse ``path`` if it is a symbolic link someone else made: only its owner may point trackiod elsewhere."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) and st.st_uid != os.geteuid():
        raise AccessError(
            f"the {what} {path} is a symbolic link made by uid {st.st_uid}, not by you (uid {os.geteuid()}); "
            f"trackiod does not follow it: remove it, or set {setting} to a directory of your own"
        )


def require_private_dir(path: Path, what: str, setting: str) -> None:
    """Refuse ``path`` unless it is a directory of this user that group and others cannot enter.

    Raises:
        AccessError: it belongs to another user (or is a link another user made), or its mode has any group/other
            bit (the text says how to fix it).
    """
    _not_planted(path, what, setting)
    st = path.stat()  # follows the owner's own symlink: a data directory may live elsewhere, the real one counts
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
    _not_planted(path, "socket directory", setting)
    st = path.stat()
    _owned(path, st, "socket directory", setting)
    mode = stat.S_IMODE(st.st_mode)
    if mode & WRITABLE_BY_OTHERS:
        raise AccessError(
            f"the socket directory {path} is writable by other users (mode {mode:04o}), who could replace "
            f"trackiod's socket with their own; run `chmod 700 {path}` or set {setting} to a private directory"
        )


def make_own_dir(path: Path, what: str = "socket directory", setting: str = "TRACKIOD_RUNTIME_DIR") -> None:
    """Create (0700) or tighten a directory that trackiod itself names; refuse one that belongs to someone else.

    Never follows a symbolic link: in a shared folder such as /tmp, another user may plant ``trackiod-UID`` as a
    link to a directory of theirs (or, for a daemon run as root, to a system directory whose mode the chmod
    would change). The link itself is refused, by ``lstat``; the mode is changed through a descriptor opened
    with ``O_NOFOLLOW`` on the directory that was checked.

    Raises:
        AccessError: ``path`` is a symbolic link or not a directory, or belongs to another user.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise AccessError(
            f"the {what} {path} is {kind} (owned by uid {st.st_uid}); trackiod never follows or replaces it: "
            f"if you did not make it, someone may be redirecting trackiod; remove it, or set {setting}"
        )
    _owned(path, st, what, setting)
    if stat.S_IMODE(st.st_mode) & OPEN_TO_OTHERS:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (st.st_ino, st.st_dev):
                raise AccessError(f"the {what} {path} changed while trackiod checked it; try again")
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def require_real_dir(path: Path, what: str, setting: str = "TRACKIOD_HOME") -> None:
    """Refuse a folder inside the data directory (the spool, media) that is a symbolic link or someone else's.

    The data directory is private, so only its owner could have put a link there; a link is still never
    followed, since spool files and media are read and deleted by name.

    Raises:
        AccessError: ``path`` is a symbolic link, not a directory, or belongs to another user.
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise AccessError(f"the {what} {path} is {kind}; trackiod does not follow it: make it a plain directory")
    _owned(path, st, what, setting)


def check_run_dir(path: Path) -> str | None:
    """Why a folder given as ``init(dir=...)`` would expose the run's files to others (None: it does not).

    The shim writes only into ``<dir>/trackiod``, which it creates 0700 (:func:`make_own_dir`); this names the
    risk of a ``dir`` another user owns, such as a shared folder in /tmp, which they could read or rearrange.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_uid != os.geteuid():
        return (
            f"init(dir={str(path)!r}): that folder belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
            "they can rename or replace what is in it. trackiod keeps its own files in a private (0700) "
            "'trackiod' folder there and refuses it if that user planted one; prefer a folder of your own"
        )
    return None
