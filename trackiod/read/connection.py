"""Query-only connections to the store: the one way every reader (CLI, dashboard, sync, ``trackio_shim.Api``) opens it.

Readers never write and never take the writer's lock (WAL), so they work with the daemon running or stopped.
"""

from __future__ import annotations

from pathlib import Path

import apsw

from trackio_shim.errors import TrackiodError
from trackiod.store.schema import configure, understood_version

#: ``PRAGMA mmap_size`` of a mapped reader (SQLite clamps it to its compiled-in maximum, 2 GiB by default).
MMAP_BYTES = 1 << 40


def open_reader(path: Path, mapped: bool = False) -> apsw.Connection:
    """A connection that can only read (``PRAGMA query_only``).

    ``mapped``: read pages straight from a memory map of the file instead of copying them into SQLite's cache,
    about 5x faster for big reads of chunk BLOBs (the dashboard's charts, the read API's histories).

    Raises:
        FileNotFoundError: there is no database at ``path`` yet (nothing was ever logged).
        TrackiodError: the database was written by a newer trackiod.
    """
    if not path.exists():
        raise FileNotFoundError(f"no trackiod database at {path}; nothing has been logged there yet")
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    configure(conn, readonly=True)
    conn.execute("PRAGMA query_only=ON")
    if mapped:
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    try:
        understood_version(conn)
    except TrackiodError:
        conn.close()
        raise
    return conn
