"""Query-only connections to the store: the one way every reader (CLI, dashboard, sync, ``trackio_shim.Api``) opens it.

Readers never write and never take the writer's lock (WAL), so they work with the daemon running or stopped.
"""

from __future__ import annotations

import os
import threading
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


class Readers:
    """Mapped query-only connections, one per thread, opened on first use and kept until :meth:`close`.

    For the dashboard's server threads and the read API (``trackio_shim.Api``). Kept because opening one is
    cheap but closing a mapped connection unmaps every page its reads touched, and the next one faults them in
    again: together about half of a sampled history of a large run. apsw serialises the use of one connection,
    so each thread has its own; a forked child opens its own (SQLite connections must not cross a fork).
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._local = threading.local()
        self._all: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def open(self) -> apsw.Connection:
        """This thread's connection.

        Raises:
            FileNotFoundError: there is no database yet (nothing was ever logged).
        """
        if self._pid != os.getpid():  # a forked child: the parent's connections are not its to use or close
            self._local, self._all, self._lock, self._pid = threading.local(), [], threading.Lock(), os.getpid()
        conn: apsw.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self.db_path, mapped=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def get(self) -> apsw.Connection | None:
        """This thread's connection, or None while no database exists yet (nothing logged)."""
        try:
            return self.open()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Close every connection opened (each thread opens a new one on its next use)."""
        with self._lock:
            conns, self._all = self._all, []
        self._local = threading.local()
        for conn in conns:
            try:
                conn.close()
            except apsw.Error:
                pass
