"""The shim's side of the spool: frames the daemon has not taken, appended to a locked file it ingests later."""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

from trackio_shim import protocol as P
from trackio_shim.access import make_own_dir


class SpoolWriter:
    """An append-only file of frames for one session, locked (flock) while open.

    The daemon ingests a spool file only once it can take the lock itself, that is once this writer has
    closed it or its process has died; so it never reads a file that is still growing.
    """

    def __init__(self, directory: Path, sid: bytes, first_seq: int) -> None:
        # Owner-only, links refused: also when someone deleted the directory and it is made again here.
        make_own_dir(directory, "spool directory", "TRACKIOD_HOME")
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
                self._check_linked()
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

    @property
    def deleted(self) -> bool:
        """Whether the write error is the file's deletion (its frames are gone, not merely unwritten)."""
        return isinstance(self.error, FileNotFoundError)  # a write or a flush never raises this otherwise

    def _check_linked(self) -> None:
        """Raise FileNotFoundError when the open file has no name left: deleted, alone or with its directory.

        Writing on would put every later frame into a file no one can read; stopping at the first batch after
        the deletion loses only the frames already in it (one fstat per batch, not per frame).
        """
        if os.fstat(self._file.fileno()).st_nlink == 0:
            raise FileNotFoundError(errno.ENOENT, "the spool file was deleted while it was written", str(self.path))

    def close(self) -> None:
        """Flush, sync and close; raises FileNotFoundError (closed all the same) if the file was deleted."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._check_linked()
        except OSError:
            self.abandon()
            raise
        self._file.close()  # closing releases the flock
