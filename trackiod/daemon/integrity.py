"""The database check at daemon start: a corrupt file is moved aside and a fresh database starts.

Before the writer opens the database, the daemon (holding the data directory's lock) opens it read-only,
seeing whatever a WAL left by a crash holds, and runs ``PRAGMA quick_check`` (or ``integrity_check``,
or only a schema read: the ``integrity_check`` setting). A file that is not SQLite, is truncated, or has
damaged pages is renamed to ``trackiod.db.corrupt-<time>`` with its ``-wal`` and ``-shm``, and the media
folder (whose paths are named by run id) goes to ``media.corrupt-<time>``; the daemon then starts on a fresh
database and says so in its log, on stderr, and in ``trackiod status``. docs/faults.md has the figures
behind the default (quick_check).

The check never holds serving back by more than a fraction of a second: reading every page of a 2 GB file
takes 20 s cold. A database up to :data:`UPFRONT_BYTES` is checked in full before serving; a larger one gets
the cheap check up front (the header, what a truncated file looks like, the schema) and, only after an unclean
shutdown (no :func:`mark_clean` marker), the full check in the background (:class:`BackgroundCheck`). Damage
found there cannot be moved aside under a running writer: it is logged, shown in ``trackiod status``, and a
marker makes the next start check in full up front (and move the file aside).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

log = logging.getLogger("trackiod.integrity")

#: The ``integrity_check`` setting's values: the PRAGMA run at start ("off" only reads the schema).
CHECKS = {"quick": "PRAGMA quick_check", "full": "PRAGMA integrity_check", "off": "SELECT count(*) FROM sqlite_master"}
#: Errors that mean the file's content is damaged. Anything else (permissions, I/O, locks) is raised: it says
#: nothing about the file, and moving a healthy database aside would hide the user's runs.
_CORRUPT = (apsw.CorruptError, apsw.NotADBError)

#: Databases up to this size are checked in full before serving: under half a second even cold at the
#: 102 MiB/s of docs/faults.md. Larger ones get :func:`header_problem` and the schema read up front.
UPFRONT_BYTES = 48 << 20

_MAGIC = b"SQLite format 3\x00"


def _clean_marker(path: Path) -> Path:
    """Written when the daemon closed the database cleanly; removed when the next daemon opens it."""
    return path.with_name(f"{path.name}.clean")


def _recheck_marker(path: Path) -> Path:
    """Written when a background check found damage: the next start checks in full up front."""
    return path.with_name(f"{path.name}.check-at-start")


def _touch(marker: Path) -> None:
    """Create an empty marker file, owner-only, never through a symlink planted in the data directory."""
    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))


def mark_clean(path: Path) -> None:
    """Record that the database was closed cleanly (the next start skips the background check)."""
    try:
        _touch(_clean_marker(path))
    except OSError as exc:
        log.warning("could not record the clean shutdown of %s: %s", path, exc)


def take_clean_mark(path: Path) -> bool:
    """Whether the last daemon closed the database cleanly; the mark is removed (a crash from here on leaves none)."""
    try:
        _clean_marker(path).unlink()
    except FileNotFoundError:
        return False
    return True


def header_problem(path: Path) -> str | None:
    """What the first 100 bytes and the file's size say is wrong (not SQLite, truncated), or None; reads 100 bytes.

    The size check uses the header's page count only when SQLite marks it valid and no WAL is left (a WAL from a
    crash may still hold the pages a checkpoint had not copied yet).
    """
    with open(path, "rb") as f:
        header = f.read(100)
    size = path.stat().st_size
    if len(header) < 100 or not header.startswith(_MAGIC):
        return "the file does not start with the SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"the header names an impossible page size ({page_size})"
    pages = int.from_bytes(header[28:32], "big")
    valid = header[92:96] == header[24:28]
    wal = Path(f"{path}-wal")
    if valid and pages and size < pages * page_size and not (wal.exists() and wal.stat().st_size > 0):
        return f"the file is truncated: its header counts {pages} pages of {page_size} bytes, it holds {size} bytes"
    return None


@dataclass(frozen=True)
class Recovery:
    """A corrupt database that was moved aside at start."""

    database: Path
    moved_to: Path
    problem: str
    at: float

    def message(self) -> str:
        return (
            f"the database {self.database} is damaged ({self.problem}); it was moved to {self.moved_to} "
            f"(with its -wal/-shm) and a fresh database was started. Runs stored before are in that file: "
            f"`sqlite3 {self.moved_to} .recover | sqlite3 rescued.db` salvages what is readable"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"database": str(self.database), "moved_to": str(self.moved_to), "problem": self.problem, "at": self.at}


def find_problem(path: Path, check: str = "quick") -> str | None:
    """What is wrong with the database at ``path``, or None if it is usable (or does not exist yet).

    Raises:
        apsw.Error: the file could not be read for a reason other than damage (permissions, I/O, a lock).
    """
    if not path.exists():
        return None
    # Read-only: it sees what a WAL left by a crash holds, yet never checkpoints into (nor deletes the WAL of)
    # a file that may be moved aside for salvage; the writer replays the WAL itself when it opens.
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute(CHECKS[check]).fetchall()
    except _CORRUPT as exc:
        return str(exc)
    finally:
        conn.close()
    if check == "off" or rows == [("ok",)]:
        return None
    lines = [str(row[0]) for row in rows]
    return "; ".join(lines[:3]) + (f" (and {len(lines) - 3} more)" if len(lines) > 3 else "")


def move_aside(path: Path, media_dir: Path | None) -> Path:
    """Rename the database, its -wal/-shm and the media folder to ``*.corrupt-<time>``; returns the new db path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.replace(companion, Path(f"{target}{suffix}"))
    if media_dir is not None and media_dir.is_dir() and any(media_dir.iterdir()):
        os.replace(media_dir, media_dir.with_name(f"{media_dir.name}{target.name[len(path.name) :]}"))
    return target


def checks_upfront(path: Path, check: str) -> str:
    """The check :func:`ensure_usable` runs before serving: ``check`` for a small file or after damage was found
    in the background, else ``"off"`` (the schema read, after :func:`header_problem`)."""
    try:
        small = path.stat().st_size <= UPFRONT_BYTES
    except FileNotFoundError:
        return check
    return check if small or _recheck_marker(path).exists() else "off"


def ensure_usable(path: Path, media_dir: Path | None, check: str = "quick") -> Recovery | None:
    """Check the database before the writer opens it; move it aside if it is damaged (see the module docstring)."""
    started = time.perf_counter()
    upfront = checks_upfront(path, check)
    problem = header_problem(path) if path.exists() else None
    if problem is None:
        problem = find_problem(path, upfront)
    elapsed = time.perf_counter() - started
    if problem is None:
        if path.exists():
            log.info("database %s passed its %s check in %.2f s", path, upfront, elapsed)
            _recheck_marker(path).unlink(missing_ok=True)
        return None
    _recheck_marker(path).unlink(missing_ok=True)
    recovery = Recovery(path, move_aside(path, media_dir), problem, time.time())
    log.error("%s", recovery.message())
    return recovery


class BackgroundCheck:
    """The full check of a large database after an unclean shutdown, on its own thread and read-only connection.

    It reads a snapshot while the writer goes on (WAL mode), so the WAL cannot be checkpointed past that
    snapshot until it ends. :meth:`stop` interrupts the PRAGMA.
    """

    def __init__(self, path: Path, check: str) -> None:
        self.path = path
        self.check = check
        #: "pending", "running", "ok", "damaged: ...", "failed: ...", "stopped".
        self.state = "pending"
        self.seconds: float | None = None
        self._conn: apsw.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="trackiod-integrity", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        self.state = "running"
        try:
            self._conn = conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                rows = conn.execute(CHECKS[self.check]).fetchall()
            finally:
                conn.close()
        except apsw.InterruptError:
            self.state = "stopped"
            return
        except _CORRUPT as exc:
            rows = [(str(exc),)]
        except apsw.Error as exc:
            self.state = f"failed: {exc}"
            log.warning("the background %s check of %s could not run: %s", self.check, self.path, exc)
            return
        self.seconds = time.perf_counter() - started
        if rows == [("ok",)]:
            self.state = "ok"
            log.info("database %s passed its %s check in the background in %.1f s", self.path, self.check, self.seconds)
            return
        problem = "; ".join(str(r[0]) for r in rows[:3])
        self.state = f"damaged: {problem}"
        try:
            _touch(_recheck_marker(self.path))
        except OSError as exc:
            log.warning("could not leave the mark that asks the next start for a full check: %s", exc)
        log.error(
            "the database %s is damaged (%s). Stop trackiod (`trackiod stop`) and start it again: the start moves "
            "the file aside for salvage and starts a fresh database",
            self.path,
            problem,
        )

    def stop(self, timeout: float) -> bool:
        conn = self._conn
        if conn is not None and self._thread.is_alive():
            try:
                conn.interrupt()
            except apsw.Error:
                pass
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()
