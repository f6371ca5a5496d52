"""Spool files: frames a shim wrote to disk while no daemon took them (see docs/protocol.md, "Spool").

A shim holds an exclusive flock on its spool file while writing. The daemon ingests a file only after taking
that lock itself (the writer closed it or died), applies its frames through the same dedupe path as live
frames, commits, and only then deletes the file. A crash anywhere in between re-ingests the file, and the
watermark drops whatever was already committed.

Spool files are ingested in the background of the writer loop, a slice at a time (:meth:`SpoolIngester.step`),
so that a restarted daemon serves new sessions at once whatever the spool holds. A file is streamed in blocks
(:class:`SpoolReader`): memory is bounded by one block plus the largest frame, never by the file. Order keeps
the per-session sequence rules: a session's files are read one after the other by first sequence number, and a
session that asks for frames still waiting in its files has them moved to the front of the queue
(:meth:`SpoolIngester.prioritize`). Slices may commit mid-file; the watermark committed with them makes a
re-read after a crash (or after a rolled-back batch, :meth:`SpoolIngester.rewind`) skip what is already stored.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgpack

from trackio_shim import protocol as P
from trackiod.ingest.guard import lenient_frame_at

log = logging.getLogger("trackiod.spool")

#: ``apply(messages)``: decoded messages of a spool file, in order, with no routing id (ingest checks them).
Apply = Callable[[list[Any]], None]

#: Frames handed to ``apply`` at a time (a slice's budget and its end are checked between them). Their lists
#: and maps stay below the garbage collector's first threshold (700 new containers): at 1,024 it scanned and
#: promoted them again and again, a fifth of the cost of a spooled one-key frame (docs/benchmarks.md).
_FRAMES_AT_ONCE = 128

#: Bytes read from a spool file at a time.
_BLOCK = 1 << 20


def spool_files(directory: Path, sid: bytes | None = None) -> list[Path]:
    """Spool files in ingest order (per session, by first sequence number), optionally for one session."""
    try:
        return sorted(directory.glob(P.spool_glob(sid)))
    except OSError:
        return []


def _session_of(path: Path) -> str:
    """The hex session id a spool file's name starts with (see ``protocol.spool_name``)."""
    return path.name.split("-", 1)[0]


class SpoolReader:
    """One spool file decoded frame by frame from blocks read as needed; the file is never held whole.

    :meth:`frames` is the one place where a spool file's bytes become messages: a frame that cannot be
    decoded ends the file (logged), and a truncated last frame (writer killed mid-write) is skipped.
    """

    def __init__(self, path: Path, stream: BinaryIO, max_frame: int) -> None:
        self.path = path
        self._stream = stream
        self._max_frame = max_frame
        self._unpacker = self._new_unpacker()
        self._base = 0  # the file offset the unpacker's input starts at
        self.done = False

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(self._max_frame * 2, 2 * _BLOCK))

    def take(self, count: int) -> list[Any]:
        """Up to ``count`` decoded messages from where the last call stopped; fewer only at the end of the file,
        which sets :attr:`done`. A list, not a generator: resuming a generator per frame cost a fifth of a
        spooled one-key frame.

        A frame the strict decoder refuses for its content (a tuple key written by an old shim, invalid UTF-8)
        is decoded again leniently (:func:`~trackiod.ingest.guard.lenient_frame_at`) and reading goes on after
        it: one bad frame, never a stuck file. Only bytes that are not msgpack at all end the file.
        """
        out: list[Any] = []
        append = out.append
        while len(out) < count and not self.done:
            unpacker = self._unpacker
            tell, unpack = unpacker.tell, unpacker.unpack
            start = tell()
            try:
                for _ in range(count - len(out)):
                    append(unpack())
                    start = tell()
                continue
            except msgpack.OutOfData:
                block = self._stream.read(_BLOCK)
                if not block:
                    self.done = True
                    if self._base + start < self._stream.tell():
                        log.warning("spool file %s ends in a truncated frame; it was skipped", self.path)
                    break
                unpacker.feed(block)
                continue
            except (TypeError, UnicodeDecodeError):  # an unhashable map key, bad UTF-8: one frame's content
                found = lenient_frame_at(self._stream, self._base + start, self._max_frame)
                if found is None:
                    log.warning("spool file %s is corrupt after some frames; the rest is skipped", self.path)
                    self.done = True
                    break
                msg, self._base = found
                self._stream.seek(self._base)
                self._unpacker = self._new_unpacker()
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                log.warning("spool file %s is corrupt after some frames (%s); the rest is skipped", self.path, exc)
                self.done = True
                break
            append(msg)
        return out

    def frames(self) -> Iterator[Any]:
        """Every remaining decoded message, one at a time (see :meth:`take`)."""
        while not self.done:
            yield from self.take(_FRAMES_AT_ONCE)


def read_frames(path: Path, max_frame: int) -> Iterator[Any]:
    """Every decoded message of one spool file, streamed (see :class:`SpoolReader`)."""
    with open(path, "rb") as stream:
        yield from SpoolReader(path, stream, max_frame).frames()


class _OpenFile:
    """The spool file being ingested: its descriptor (holding the flock), its reader and its frame count."""

    def __init__(self, path: Path, fd: int, max_frame: int) -> None:
        self.path = path
        self.stream = os.fdopen(fd, "rb", buffering=0)
        self.reader = SpoolReader(path, self.stream, max_frame)
        self.count = 0

    def close(self) -> None:
        self.stream.close()  # closing the descriptor releases the flock


class SpoolIngester:
    """A queue of claimable spool files, fed to the ingest path a slice at a time; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        max_frame: int,
        apply: Apply,
        commit: Callable[[], bool],
    ) -> None:
        self.directory = directory
        self.max_frame = max_frame
        self.apply = apply
        self.commit = commit
        #: Frames and files fully ingested (committed, file deleted) so far.
        self.frames = 0
        self.files = 0
        #: Spool files set aside (renamed ``*.bad``) because reading them raised: kept for a bug report.
        self.bad_files = 0
        self._queue: list[Path] = []
        self._current: _OpenFile | None = None

    @property
    def pending(self) -> bool:
        """Whether a file is being read or waits in the queue."""
        return self._current is not None or bool(self._queue)

    def pending_files(self) -> int:
        """Files queued or being read (``trackiod status``)."""
        return len(self._queue) + (self._current is not None)

    def holds(self, sid: bytes) -> bool:
        """Whether one session's files are queued or being read."""
        mine = sid.hex()
        current = self._current
        return (current is not None and _session_of(current.path) == mine) or any(
            _session_of(p) == mine for p in self._queue
        )

    def scan(self) -> None:
        """Queue the spool files not yet known, after those already queued, in ingest order."""
        known = set(self._queue)
        if self._current is not None:
            known.add(self._current.path)
        self._queue.extend(p for p in spool_files(self.directory) if p not in known)

    def prioritize(self, sid: bytes) -> None:
        """Move one session's files to the front of the queue: it asked for frames they may hold."""
        self.scan()
        mine = sid.hex()
        if self._current is not None and _session_of(self._current.path) == mine:
            return  # already being read: its other files follow it below
        front = [p for p in self._queue if _session_of(p) == mine]
        if front:
            self._queue = front + [p for p in self._queue if _session_of(p) != mine]

    def step(self, budget: int, full: Callable[[], bool]) -> int:
        """Apply up to ``budget`` frames (fewer once ``full()`` says the batch should commit); returns frames applied.

        A file whose last frame was applied is committed and deleted here; its session's next file follows.
        """
        applied = 0
        while applied < budget:
            current = self._current or self._open_next()
            if current is None:
                break
            wanted = min(_FRAMES_AT_ONCE, budget - applied)
            try:
                msgs = current.reader.take(wanted)
            except OSError as exc:  # the file vanished or cannot be read: its remaining frames are lost, no more
                log.error("spool file %s could not be read (%s); what was read of it is kept", current.path.name, exc)
                self._finish(current)
                continue
            except Exception:  # never again: a file that broke the reader would break every later turn
                log.exception(
                    "reading spool file %s failed; it is set aside as %s.bad", current.path.name, current.path.name
                )
                self._abandon(current)
                continue
            if msgs:
                try:
                    self.apply(msgs)
                except Exception:  # a bug, not bad input (apply counts bad frames itself): never every turn again
                    log.exception(
                        "applying spool file %s failed; it is set aside as %s.bad", current.path.name, current.path.name
                    )
                    self._abandon(current)
                    continue
                current.count += len(msgs)
                applied += len(msgs)
            if len(msgs) < wanted:  # the file is read to its end
                self._finish(current)
                continue
            if full():
                break
        return applied

    def ingest(self) -> int:
        """Ingest every claimable file now, in the caller's turn; returns frames applied.

        For tests and tools; the serving loop calls :meth:`step` instead, a slice per turn.
        """
        self.scan()
        return self.step(1 << 62, lambda: False)

    def rewind(self) -> None:
        """The open batch was rolled back: read the current file again from its start (the watermark skips what
        was committed), after releasing its lock so that the next :meth:`step` claims it afresh."""
        current, self._current = self._current, None
        if current is not None:
            current.close()
            self._queue.insert(0, current.path)

    def close(self) -> None:
        """Release the file being read (the daemon is stopping); it is read again by the next daemon."""
        current, self._current = self._current, None
        if current is not None:
            current.close()

    # ------------------------------------------------------------------ files
    def _open_next(self) -> _OpenFile | None:
        """Claim the next queued file whose writer is gone; files still being written are dropped from the queue
        (their writer announces them when it closes them, and maintenance rescans)."""
        while self._queue:
            path = self._queue.pop(0)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # a link in the spool is refused, never followed
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("spool file %s cannot be opened (%s); it is set aside as %s.bad", path.name, exc, path.name)
                self._set_aside(path)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its writer is still appending
                continue
            self._current = _OpenFile(path, fd, self.max_frame)
            return self._current
        return None

    def _set_aside(self, path: Path) -> None:
        """Rename a spool file that cannot be read to ``*.bad`` (out of the spool glob), and count it."""
        self.bad_files += 1
        try:
            path.rename(path.with_name(path.name + ".bad"))
        except OSError as exc:
            log.error("spool file %s could not be set aside: %s", path.name, exc)

    def _abandon(self, current: _OpenFile) -> None:
        """Commit what was read of a file whose reading raised, then set it aside for a bug report."""
        self._current = None
        try:
            if self.commit():
                self._set_aside(current.path)
        finally:
            current.close()

    def _finish(self, current: _OpenFile) -> None:
        """Commit what the file held, then delete it; a failed commit keeps it for the next try."""
        self._current = None
        try:
            if not self.commit():
                log.error("spool file %s could not be committed; it is kept for the next try", current.path.name)
                return
            current.path.unlink(missing_ok=True)
        finally:
            current.close()
        self.frames += current.count
        self.files += 1
        log.info("ingested spool file %s (%d frames)", current.path.name, current.count)
