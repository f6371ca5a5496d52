"""Write stalls: the database cannot be written (disk full, quota, I/O error) and the daemon waits it out.

When a commit fails because the storage refused it, the batch is rolled back and the daemon stops taking
sequenced frames: it neither stores nor acknowledges them, so every client keeps them in its buffer (and
spool). Writes are retried with backoff, sooner when the filesystem shows more free space; a retry asks each
waiting session to resend from its last acknowledged frame (a NACK), and the next commit either succeeds
(the stall ends) or fails again (the backoff grows). Nothing is dropped: acknowledged means committed, and
the watermark drops whatever arrives twice. docs/faults.md describes what the user sees.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

import apsw

log = logging.getLogger("trackiod.stall")

#: errno values meaning "no room to write", from a media file or the spool rather than SQLite.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 15.0
#: Free space gained since the stall began that triggers a retry before the backoff is over.
FREED_BYTES = 1 << 20


def is_storage_error(exc: BaseException) -> bool:
    """True for errors that mean the storage refused a write (worth a retry), not bad data or a bug."""
    if isinstance(exc, (apsw.FullError, apsw.IOError)):
        return True
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def describe(exc: BaseException) -> str:
    """A short cause for messages: "disk full" or "I/O error", and the underlying text."""
    full = isinstance(exc, apsw.FullError) or (isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS)
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{'disk full' if full else 'I/O error'} ({text})"


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``directory``'s filesystem (None if unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class WriteStall:
    """Whether writes are stalled, since when, why, and when to try again."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.active = False
        self.since: float | None = None  # wall clock, for status
        self.cause = ""
        self.failures = 0  # failed commits in this stall
        self.stalls = 0  # stalls since the daemon started
        self.retry_at = 0.0  # monotonic
        self.waiting: set[bytes] = set()  # sessions whose frames were refused; each gets a NACK at the retry
        self._free_at_stall: int | None = None

    def enter(self, exc: BaseException) -> bool:
        """Record a failed write; True if this started a stall (rather than a retry that failed again)."""
        now = time.monotonic()
        started = self.since is None
        if started:
            self.since = time.time()
            self.stalls += 1
            self.failures = 0
        self.failures += 1
        self.active = True
        self.cause = describe(exc)
        delay = min(FIRST_RETRY_S * 2 ** (self.failures - 1), MAX_RETRY_S)
        self.retry_at = now + delay
        self._free_at_stall = free_bytes(self.db_path.parent)
        if started:
            log.error(
                "cannot write to %s: %s. Nothing is acknowledged until it can be: clients keep their data "
                "buffered and spooled, and writes are retried (first in %.0f s). Free space on %s.",
                self.db_path,
                self.cause,
                delay,
                self.db_path.parent,
            )
        else:
            log.warning(
                "still cannot write to %s (%s); %d tries over %.0f s, next in %.0f s",
                self.db_path,
                self.cause,
                self.failures,
                time.time() - (self.since or time.time()),
                delay,
            )
        return started

    def due(self) -> bool:
        """True once the backoff is over, or the filesystem gained space since the stall began."""
        if not self.active:
            return False
        if time.monotonic() >= self.retry_at:
            return True
        free = free_bytes(self.db_path.parent)
        return free is not None and self._free_at_stall is not None and free >= self._free_at_stall + FREED_BYTES

    def retrying(self) -> set[bytes]:
        """Leave the waiting state for a try; returns the sessions to ask for a resend."""
        self.active = False
        waiting, self.waiting = self.waiting, set()
        return waiting

    def cleared(self) -> float | None:
        """A write succeeded: the stall (if any) is over; returns how long it lasted."""
        if self.since is None:
            return None
        lasted = time.time() - self.since
        log.warning("writes to %s resumed after %.1f s (%d failed tries)", self.db_path, lasted, self.failures)
        self.since = None
        self.active = False
        self.cause = ""
        return lasted

    def status(self) -> dict[str, Any]:
        """``trackiod status``'s "writes" entry."""
        if self.since is None:
            return {"state": "ok", "stalls": self.stalls}
        return {
            "state": "stalled",
            "since": self.since,
            "cause": self.cause,
            "failed_tries": self.failures,
            "next_try_s": round(max(0.0, self.retry_at - time.monotonic()), 1) if self.active else 0.0,
            "stalls": self.stalls,
        }


def probe_write(conn: apsw.Connection) -> None:
    """Write one page and commit (rewriting ``user_version`` with its own value): raises if writes still fail."""
    row = conn.execute("PRAGMA user_version").fetchone()
    conn.execute(f"PRAGMA user_version={int(row[0]) if row else 0}")


def notice_text(db_path: Path, cause: str) -> str:
    """What clients are told (the shim warns once per text, so it names no changing figures)."""
    return (
        f"trackiod cannot write to {db_path} ({cause.split(' (')[0]}); your data stays buffered in this process "
        "and is stored when space is freed"
    )
