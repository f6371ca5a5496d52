"""The SQLite schema and its migrations (docs/storage.md describes every table).

The schema version lives in ``PRAGMA user_version``. Each entry of :data:`MIGRATIONS` moves a database from
version ``i`` to ``i + 1`` inside one transaction, so a database is never left half-migrated.
"""

from __future__ import annotations

import logging
from typing import Any

import apsw

from trackio_shim.errors import TrackiodError

log = logging.getLogger("trackiod.schema")

#: Points per sealed chunk of a series (docs/storage.md, "Series").
CHUNK_POINTS = 1024

_V1 = """
CREATE TABLE projects(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE runs(
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    run_key TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'finished', 'failed', 'crashed')),
    exit_code INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    host TEXT,
    pids TEXT NOT NULL DEFAULT '[]',
    config TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    summary_state TEXT NOT NULL DEFAULT '{}',
    metric_defs TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    group_name TEXT,
    job_type TEXT,
    mode TEXT NOT NULL DEFAULT 'online',
    space_id TEXT,
    dataset_id TEXT,
    last_step INTEGER,
    UNIQUE(project_id, run_key)
);
CREATE INDEX runs_by_name ON runs(project_id, name);
CREATE INDEX runs_by_state ON runs(state);
CREATE TABLE keys(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE run_keys(
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('scalar', 'text')),
    points INTEGER NOT NULL,
    last_step INTEGER,
    PRIMARY KEY(run_id, key_id)
) WITHOUT ROWID;
CREATE TABLE chunks(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    step_min INTEGER NOT NULL,
    step_max INTEGER NOT NULL,
    steps BLOB NOT NULL,
    times BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX chunks_by_series ON chunks(run_id, key_id, id);
CREATE TABLE texts(
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY(run_id, key_id, step)
) WITHOUT ROWID;
CREATE TABLE sessions(
    sid BLOB PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    pid INTEGER,
    host TEXT,
    proc_started REAL,
    info TEXT NOT NULL DEFAULT '{}',
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE session_runs(
    sid BLOB NOT NULL,
    handle INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(sid, handle)
) WITHOUT ROWID;
CREATE INDEX session_runs_by_run ON session_runs(run_id);
"""

# Version 2: the mirrors a run asked for at init(mirror=...), so a daemon restarted mid-run keeps mirroring it.
_V2 = """
ALTER TABLE runs ADD COLUMN mirrors TEXT NOT NULL DEFAULT '[]';
"""

#: MIGRATIONS[i] upgrades a database at user_version i to i + 1.
MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)


def configure(conn: apsw.Connection, readonly: bool = False) -> None:
    """Per-connection pragmas: WAL, NORMAL sync (durable at checkpoint, atomic always), a busy timeout."""
    conn.setbusytimeout(5000)
    cur = conn.cursor()
    if not readonly:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA cache_size=-32000")


def understood_version(conn: apsw.Connection) -> int:
    """The database's schema version, checked to be one this trackiod can read and write.

    Raises:
        TrackiodError: the database was written by a newer trackiod.
    """
    row = conn.execute("PRAGMA user_version").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise TrackiodError(
            f"{conn.filename} has schema version {version}, newer than this trackiod understands "
            f"({SCHEMA_VERSION}); upgrade trackiod"
        )
    return version


def migrate(conn: apsw.Connection) -> int:
    """Bring ``conn``'s database to :data:`SCHEMA_VERSION`; returns the version it started at.

    Raises:
        TrackiodError: the database was written by a newer trackiod.
    """
    version = understood_version(conn)
    for target in range(version, SCHEMA_VERSION):
        with conn:
            conn.execute(MIGRATIONS[target])
            conn.execute(f"PRAGMA user_version={target + 1}")
        log.info("migrated database schema to version %d", target + 1)
    return int(version)


def dict_rows(conn: apsw.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Run ``sql`` and return its rows as dicts keyed by column name."""
    cursor = conn.cursor()
    cursor.row_trace = lambda cur, row: dict(zip((d[0] for d in cur.getdescription()), row))
    return cursor.execute(sql, args).fetchall()  # type: ignore[return-value]
