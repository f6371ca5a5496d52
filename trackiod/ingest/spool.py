"""Spool files: frames a shim wrote to disk while no daemon took them (see docs/protocol.md, "Spool").

A shim holds an exclusive flock on its spool file while writing. The daemon ingests a file only after taking
that lock itself (the writer closed it or died), applies its frames through the same dedupe path as live
frames, commits, and only then deletes the file. A crash anywhere in between re-ingests the file, and the
watermark drops whatever was already committed.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack

from trackio_shim import protocol as P
from trackio_shim.errors import ProtocolError
from trackiod.ingest.guard import lenient_frame_at

log = logging.getLogger("trackiod.spool")

Apply = Callable[[int, bytes, int, list[Any]], None]


def spool_files(directory: Path, sid: bytes | None = None) -> list[Path]:
    """Spool files in ingest order (per session, by first sequence number), optionally for one session."""
    try:
        return sorted(directory.glob(P.spool_glob(sid)))
    except OSError:
        return []


def _unpacker(max_frame: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(max_frame * 2, 1 << 20))


def read_frames(path: Path, max_frame: int) -> Iterator[Any]:
    """Decoded messages of one spool file; a truncated last frame (writer killed mid-write) is skipped.

    A frame the strict decoder refuses for its content (a tuple key written by an old shim, invalid UTF-8) is
    decoded again leniently (trackiod.ingest.guard.lenient_frame_at) and reading goes on after it; only bytes
    that are not msgpack at all end the file.
    """
    with open(path, "rb") as f:
        unpacker, base = _unpacker(max_frame), 0  # base: the file offset the unpacker's input starts at
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            unpacker.feed(block)
            while True:
                start = unpacker.tell()
                try:
                    msg = next(unpacker)
                except StopIteration:
                    break
                except (TypeError, UnicodeDecodeError):  # an unhashable map key, bad UTF-8: one frame's content
                    found = lenient_frame_at(f, base + start, max_frame)
                    if found is None:
                        log.warning("spool file %s is corrupt after some frames; the rest is skipped", path)
                        return
                    msg, base = found
                    f.seek(base)
                    unpacker = _unpacker(max_frame)
                    yield msg
                    break
                except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                    log.warning("spool file %s is corrupt after some frames (%s); the rest is skipped", path, exc)
                    return
                yield msg
        if base + unpacker.tell() < path.stat().st_size:
            log.warning("spool file %s ends in a truncated frame; it was skipped", path)


class SpoolIngester:
    """Finds claimable spool files and feeds them to the ingest path."""

    def __init__(
        self,
        directory: Path,
        max_frame: int,
        apply: Apply,
        commit: Callable[[], bool],
        malformed: Callable[[str], None],
    ) -> None:
        self.directory = directory
        self.max_frame = max_frame
        self.apply = apply
        self.commit = commit
        self.malformed = malformed
        self.frames = 0
        self.files = 0
        #: Spool files set aside (renamed ``*.bad``) because reading them raised: kept for a bug report.
        self.bad_files = 0

    def ingest(self, sid: bytes | None = None) -> int:
        """Ingest every spool file whose writer is gone (of one session, or all); returns frames read."""
        total = 0
        for path in spool_files(self.directory, sid):
            total += self._ingest_file(path)
        return total

    def _set_aside(self, path: Path) -> None:
        """Rename a spool file that cannot be read to ``*.bad`` (out of the spool glob), and count it."""
        self.bad_files += 1
        try:
            path.rename(path.with_name(path.name + ".bad"))
        except OSError as exc:
            log.error("spool file %s could not be set aside: %s", path.name, exc)

    def _ingest_file(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)  # a link in the spool is refused, never followed
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error("spool file %s cannot be opened (%s); it is set aside as %s.bad", path.name, exc, path.name)
            self._set_aside(path)
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # its writer is still appending
            count = 0
            try:
                for msg in read_frames(path, self.max_frame):
                    try:
                        kind, sid, seq, fields = P.check_client(msg)
                    except ProtocolError as exc:
                        self.malformed(f"spool {path.name}: {exc}")
                        continue
                    self.apply(kind, sid, seq, fields)
                    count += 1
            except OSError as exc:  # the file vanished or cannot be read: its remaining frames are lost, no more
                log.error("spool file %s could not be read (%s); what was read of it is kept", path.name, exc)
            except Exception as exc:  # never again: a file that broke the reader would break every maintenance
                log.exception("reading spool file %s failed; it is set aside as %s.bad", path.name, path.name)
                self.malformed(f"spool {path.name}: {type(exc).__name__}: {exc}")
                if self.commit():
                    self._set_aside(path)
                return count
            if not self.commit():
                log.error("spool file %s could not be committed; it is kept for the next try", path.name)
                return 0
            path.unlink(missing_ok=True)
            self.frames += count
            self.files += 1
            log.info("ingested spool file %s (%d frames)", path.name, count)
            return count
        finally:
            os.close(fd)
