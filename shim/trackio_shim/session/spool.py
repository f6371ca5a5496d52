"""The session's spool: where unacknowledged frames go when the daemon stays away or the buffer outgrows its cap.

:class:`Spooler` owns the spool files of one session: the one being written, the closed ones the daemon has
been told about, and when to try again after a write failed. The client owns the buffer of unacknowledged
frames and hands frames over (or takes them back) through the methods here; every method runs with the
client's lock held, so that the buffer and the spool always agree on which seqs are where.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from trackio_shim._warn import warn_once
from trackio_shim.errors import AccessError
from trackio_shim.session.spool_writer import SpoolWriter
from trackio_shim.settings import TrackiodSettings

#: After a spool write failed (disk full): how long before a new spool file is tried.
_RETRY_AFTER_S = 5.0


class Spooler:
    """The spool files of one session: open one, hand frames to it, close and announce it, or give it up."""

    def __init__(self, settings: TrackiodSettings, sid: bytes, announce: Callable[[Path], object]) -> None:
        self.settings = settings
        self.sid = sid
        self._announce = announce  # tells the daemon that a closed spool file is ready (SPOOL_READY)
        #: The file being written, or None while frames stay in memory.
        self.writer: SpoolWriter | None = None
        #: When :attr:`writer` was opened: hearing from the daemon after that ends the spooling.
        self.since = 0.0
        #: Closed spool files of this session (the daemon is reminded of them when it asks for older frames).
        self.paths: list[Path] = []
        #: Frames handed to spool files so far (finish()'s summary, stats()).
        self.frames = 0
        self._retry_at = 0.0

    def retry_due(self, now: float) -> bool:
        """Whether a new spool file may be opened (not within a while of a failed write)."""
        return now >= self._retry_at

    def open(self, first_seq: int) -> bool:
        """Open a spool file whose first frame has seq ``first_seq``; False (warned once) if it cannot be made."""
        try:
            self.writer = SpoolWriter(self.settings.spool_dir, self.sid, first_seq)
        except (OSError, AccessError) as exc:  # AccessError: the spool directory was replaced by a link
            self._failed(exc)
            return False
        self.since = time.monotonic()
        return True

    def take(self, frames: list[bytes]) -> SpoolWriter:
        """Count ``frames`` as spooled and return the open writer, for the caller to write them after the lock.

        The caller takes ``writer.lock`` before releasing the client's lock, so batches reach the file in seq order.
        """
        assert self.writer is not None
        self.frames += len(frames)
        return self.writer

    def close(self, frames: list[bytes], first_seq: int) -> bool:
        """Append the last ``frames``, close the file and tell the daemon; False if the file could not be written.

        After False the file is still open with its error set: :meth:`give_up` takes the frames back.
        """
        writer = self.take(frames)
        with writer.lock:  # waits for the pump's batch in flight, so the file keeps seq order
            writer.write_many(frames, first_seq)
            if writer.error is None:
                try:
                    writer.close()
                except OSError as exc:
                    writer.error = exc  # its frames may not be on disk: keep them (resends are deduped)
                    writer.failed.append((first_seq, frames))
        if writer.error is not None:
            return False
        self.paths.append(writer.path)
        self._announce(writer.path)
        self.writer = None
        return True

    def announce_all(self) -> None:
        """Tell the daemon again about every closed spool file (it asked for frames only they hold)."""
        for path in self.paths:
            self._announce(path)

    def give_up(self, acked: int, base: int) -> tuple[int, list[bytes], int | None]:
        """The spool could not be written (disk full, or the file deleted): close it and return the frames to keep.

        The frames before the failed batch are in the file (whole frames before any tear); the rest are
        returned as ``(first seq, frames, lost from)`` when they fit in front of the buffer, whose first seq is
        ``base`` (those acknowledged meanwhile, up to ``acked``, are left out). Nothing is lost while this
        process lives; the daemon drops duplicates. When the file was deleted, the frames it held are gone:
        ``lost from`` is its first seq (None otherwise), and the caller re-sends what the session cannot do
        without (docs/robustness.md, "A deleted spool").
        """
        writer = self.writer
        assert writer is not None
        with writer.lock:
            batches, writer.failed = sorted(writer.failed, key=lambda b: b[0]), []
            writer.abandon()
        frames = [frame for _, batch in batches for frame in batch]
        first = batches[0][0] if batches else base
        skip = max(0, min(len(frames), acked + 1 - first))  # acknowledged meanwhile: not needed
        frames, first = frames[skip:], first + skip
        deleted = writer.deleted
        if batches and batches[0][0] > writer.first_seq and not deleted:
            self.paths.append(writer.path)  # it holds the frames before the failed batch
        elif not deleted:
            with contextlib.suppress(OSError):
                writer.path.unlink()  # nothing in it: give its space back
        self.writer = None
        if deleted:
            warn_once(
                ("spool-deleted", str(writer.path.parent)),
                f"trackio_shim: a spool file in {writer.path.parent} was deleted while this process wrote it; the "
                "messages in it are lost (`trackiod status` counts them), later ones go to a new file",
            )
        else:
            self._failed(writer.error)
        lost_from = writer.first_seq if deleted else None
        if not frames or first + len(frames) != base:
            return base, [], lost_from
        self.frames -= len(frames)
        return first, frames, lost_from

    def forget_vanished(self) -> bool:
        """Drop the closed spool files that no longer exist (ingested, or deleted); True if any is left."""
        self.paths = [path for path in self.paths if path.exists()]
        return bool(self.paths)

    def _failed(self, exc: Exception | None) -> None:
        self._retry_at = time.monotonic() + _RETRY_AFTER_S
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        warn_once(
            ("spool-failed", reason),
            f"trackio_shim: cannot write to the spool in {self.settings.spool_dir} ({reason}); keeping the data "
            "in this process's memory until trackiod or the disk has room",
        )
