"""The shim's side of the spool: frames the daemon has not taken, appended to a locked file it ingests later."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from trackio_shim import protocol as P


class SpoolWriter:
    """An append-only file of frames for one session, locked (flock) while open.

    The daemon ingests a spool file only once it can take the lock itself, that is once this writer has
    closed it or its process has died; so it never reads a file that is still growing.
    """

    def __init__(self, directory: Path, sid: bytes, first_seq: int) -> None:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the data directory, when it is new
        directory.mkdir(mode=0o700, exist_ok=True)
        self.path = directory / P.spool_name(sid, first_seq)
        self.first_seq = first_seq
        # Created and locked under a name the daemon ignores, then renamed: it never sees an unlocked,
        # empty file it could take for an abandoned one.
        partial = self.path.with_suffix(".partial")
        self._file = open(partial, "ab", buffering=1 << 20)  # noqa: SIM115 (closed in close())
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        os.replace(partial, self.path)
        # Serialises writes: the pump writes outside the client lock, so log() never waits on the disk.
        self.lock = threading.Lock()
        #: The first write error (disk full); from then on batches are kept in ``failed`` instead of written,
        #: for the client to take back into memory (a file with a torn frame must not grow past it).
        self.error: OSError | None = None
        self.failed: list[tuple[int, list[bytes]]] = []

    def write_many(self, frames: list[bytes], first_seq: int) -> None:
        """Append frames ``first_seq``, ... (caller holds :attr:`lock`); flushed, so a full disk shows here."""
        if self.error is None:
            try:
                self._file.writelines(frames)
                self._file.flush()
                return
            except OSError as exc:
                self.error = exc
        self.failed.append((first_seq, frames))

    def abandon(self) -> None:
        """Close after a write error, releasing the lock; the daemon reads the whole frames before the tear."""
        try:
            self._file.close()
        except OSError:
            pass  # the unwritten tail stays in memory at the client

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()  # closing releases the flock
