"""The client's spool: where unacknowledged frames go when the daemon stays away or the buffer outgrows its cap.

A mixin of :class:`trackio_shim.session.client.Client`, split out to keep that module readable; it shares the client's
state and lock discipline (every method here runs with :attr:`Client.lock` held, except as noted).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from trackio_shim import protocol as P
from trackio_shim.session.encoding import warn_once
from trackio_shim.session.spool_writer import SpoolWriter
from trackio_shim.settings import TrackiodSettings


class SpoolMixin:
    """Spool files for :class:`~trackio_shim.session.client.Client`: begin, hand over, close, take back."""

    settings: TrackiodSettings
    sid: bytes
    lock: threading.Lock
    seq: int
    acked: int
    hold: bool
    spooled_frames: int
    _unacked: list[bytes]
    _head: int
    _base: int
    _bytes: int
    _sent: int
    _spool: SpoolWriter | None
    _spool_since: float
    _spooled_paths: list[Path]
    _spool_retry_at: float

    def _control(self, fields: tuple[Any, ...]) -> bool:  # provided by Client
        raise NotImplementedError

    def _begin_spool(self) -> None:
        try:
            self._spool = SpoolWriter(self.settings.spool_dir, self.sid, self._base)
        except OSError as exc:
            self._spool_failed(exc)
            return
        self._spool_since = time.monotonic()
        self.hold = True
        warn_once(
            "spooling",
            f"trackio_shim: trackiod has not taken data for a while; spooling to {self.settings.spool_dir} "
            "(nothing is lost; the daemon ingests it when it is back)",
        )

    def _take_for_spool(self) -> list[bytes]:
        """Hand every buffered frame over to the spool: from here on they count as sent."""
        frames = self._unacked[self._head :]
        self._unacked, self._head = [], 0
        self.spooled_frames += len(frames)
        self._bytes = 0
        self._base = self.seq + 1
        self._sent = self.seq
        return frames

    def _end_spool(self) -> bool:
        """Close the spool file and tell the daemon; False if it could not be written (frames kept in memory)."""
        assert self._spool is not None
        frames = self._take_for_spool()
        with self._spool.lock:  # waits for the pump's batch in flight, so the file keeps seq order
            self._spool.write_many(frames, self.seq + 1 - len(frames))
            if self._spool.error is None:
                try:
                    self._spool.close()
                except OSError as exc:
                    self._spool.error = exc  # its frames may not be on disk: keep them (resends are deduped)
                    self._spool.failed.append((self.seq + 1 - len(frames), frames))
        if self._spool.error is not None:
            self._unspool()
            return False
        self._spooled_paths.append(self._spool.path)
        self._control((P.SPOOL_READY, str(self._spool.path)))
        self._spool = None
        self.hold = False
        return True

    def _unspool(self) -> None:
        """The spool could not be written (disk full): take its unwritten frames back into memory.

        The frames before the failed batch are in the file (whole frames before any tear), the rest go back in
        front of the buffer, so nothing is lost while this process lives; the daemon drops duplicates.
        """
        spool = self._spool
        assert spool is not None
        with spool.lock:
            batches, spool.failed = sorted(spool.failed, key=lambda b: b[0]), []
            spool.abandon()
        frames = [frame for _, batch in batches for frame in batch]
        first = batches[0][0] if batches else self._base
        skip = max(0, min(len(frames), self.acked + 1 - first))  # acknowledged meanwhile: not needed
        frames, first = frames[skip:], first + skip
        if frames and first + len(frames) == self._base:
            self._unacked = frames + self._unacked[self._head :]
            self._head, self._base = 0, first
            self._bytes += sum(map(len, frames))
            self.spooled_frames -= len(frames)
        self._sent = self._base - 1
        self.hold = True
        if batches and batches[0][0] > spool.first_seq:
            self._spooled_paths.append(spool.path)  # it holds the frames before the failed batch
        else:
            with contextlib.suppress(OSError):
                spool.path.unlink()  # nothing in it: give its space back
        self._spool = None
        self._spool_failed(spool.error)

    def _spool_failed(self, exc: OSError | None) -> None:
        self._spool_retry_at = time.monotonic() + 5.0
        reason = exc.strerror if exc is not None and exc.strerror else str(exc)
        warn_once(
            ("spool-failed", reason),
            f"trackio_shim: cannot write to the spool in {self.settings.spool_dir} ({reason}); keeping the data "
            "in this process's memory until trackiod or the disk has room",
        )

    def spill_locked(self) -> Path | None:
        """Write every unacknowledged frame to a closed spool file (used when finish() stops waiting)."""
        if self._spool is None:
            if len(self._unacked) == self._head:
                return None
            try:
                self._spool = SpoolWriter(self.settings.spool_dir, self.sid, self._base)
            except OSError as exc:
                self._spool_failed(exc)
                return None
            self._spool_since = time.monotonic()
        path = self._spool.path
        return path if self._end_spool() else None
