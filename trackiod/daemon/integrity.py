"""The database check at daemon start: a corrupt file is moved aside and a fresh database starts.

Before the writer opens the database, the daemon (holding the data directory's lock) opens it read-only,
seeing whatever a WAL left by a crash holds, and runs ``PRAGMA quick_check`` (or ``integrity_check``,
or only a schema read: the ``integrity_check`` setting). A file that is not SQLite, is truncated, or has
damaged pages is renamed to ``trackiod.db.corrupt-<time>`` with its ``-wal`` and ``-shm``, and the media
folder (whose paths are named by run id) goes to ``media.corrupt-<time>``; the daemon then starts on a fresh
database and says so in its log, on stderr, and in ``trackiod status``. docs/faults.md has the figures
behind the default (quick_check).
"""

from __future__ import annotations

import logging
import os
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


def ensure_usable(path: Path, media_dir: Path | None, check: str = "quick") -> Recovery | None:
    """Check the database before the writer opens it; move it aside if it is damaged (see the module docstring)."""
    started = time.perf_counter()
    problem = find_problem(path, check)
    elapsed = time.perf_counter() - started
    if problem is None:
        if path.exists():
            log.info("database %s passed its %s check in %.2f s", path, check, elapsed)
        return None
    recovery = Recovery(path, move_aside(path, media_dir), problem, time.time())
    log.error("%s", recovery.message())
    return recovery
