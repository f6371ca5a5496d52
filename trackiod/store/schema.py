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

# Version 2: the node's system and GPU series, and GPU energy attributed to runs (trackiod.sampling.energy).
_V2_SYSTEM_AND_ENERGY = """
CREATE TABLE nodes(
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE gpus(
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes(id),
    uuid TEXT NOT NULL UNIQUE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    memory_total REAL,
    power_limit_w REAL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE system_chunks(
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ts_min REAL NOT NULL,
    ts_max REAL NOT NULL,
    times BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX system_chunks_by_series ON system_chunks(node_id, key_id, ts_max);
CREATE TABLE run_gpus(
    run_id INTEGER NOT NULL,
    gpu_id INTEGER NOT NULL,
    via TEXT NOT NULL,
    joules REAL NOT NULL,
    estimated_joules REAL NOT NULL,
    gpu_seconds REAL NOT NULL,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    PRIMARY KEY(run_id, gpu_id)
) WITHOUT ROWID;
CREATE TABLE run_energy(
    run_id INTEGER PRIMARY KEY,
    grid_g_per_kwh REAL NOT NULL,
    location TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Version 3: rich values (histograms, arrays, images, tables, HTML), one row per (run, key, step). Small
# payloads live in ``meta`` (JSON) or ``body`` (arrays); files live under TRACKIOD_HOME/media at ``path``.
_V3_MEDIA = """
CREATE TABLE media(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('histogram', 'array', 'image', 'table', 'html')),
    meta TEXT NOT NULL DEFAULT '{}',
    body BLOB,
    path TEXT,
    UNIQUE(run_id, key_id, step)
);
"""

# Version 4 (Hub sync): text values get a revision, so sync can export exactly the texts written since its
# watermark. Points need nothing: each series' chunks, read in id order, are an append-only log.
_V4_TEXT_REVISIONS = """
ALTER TABLE texts ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
UPDATE texts SET rev = (
    SELECT COUNT(*) FROM texts t2
    WHERE (t2.run_id, t2.key_id, t2.step) <= (texts.run_id, texts.key_id, texts.step)
);
CREATE INDEX texts_by_rev ON texts(rev);
"""

# Version 5: metric context, alerts, saved files and artifacts (docs/storage.md, "Alerts, files, artifacts").
_V5_CONTEXT_ALERTS_FILES_ARTIFACTS = """
CREATE TABLE contexts(
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL UNIQUE
);
CREATE TABLE key_contexts(
    id INTEGER PRIMARY KEY,
    base_name TEXT NOT NULL,
    context_id INTEGER NOT NULL,
    UNIQUE(base_name, context_id)
);
CREATE TABLE alerts(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    step INTEGER,
    ts REAL NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('INFO', 'WARN', 'ERROR')),
    wait_duration REAL,
    webhook_url TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'throttled', 'no_webhook')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at REAL
);
CREATE INDEX alerts_by_run_title ON alerts(run_id, title, ts);
CREATE INDEX alerts_by_status ON alerts(status);
CREATE TABLE file_watches(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    pattern TEXT NOT NULL,
    base TEXT NOT NULL,
    policy TEXT NOT NULL CHECK (policy IN ('live', 'now', 'end')),
    active INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    UNIQUE(run_id, pattern, base, policy)
);
CREATE TABLE run_files(
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    copies INTEGER NOT NULL DEFAULT 1,
    policy TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY(run_id, name)
) WITHOUT ROWID;
CREATE TABLE blobs(
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE artifacts(
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE(project_id, name)
);
CREATE TABLE artifact_versions(
    id INTEGER PRIMARY KEY,
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    file_count INTEGER NOT NULL,
    description TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    producer_run_id INTEGER,
    created_at REAL NOT NULL,
    UNIQUE(artifact_id, version)
);
CREATE INDEX artifact_versions_by_digest ON artifact_versions(artifact_id, digest);
CREATE TABLE artifact_entries(
    version_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(version_id, name)
) WITHOUT ROWID;
CREATE TABLE artifact_aliases(
    artifact_id INTEGER NOT NULL,
    alias TEXT NOT NULL,
    version_id INTEGER NOT NULL,
    PRIMARY KEY(artifact_id, alias)
) WITHOUT ROWID;
CREATE TABLE artifact_usage(
    version_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    used_at REAL NOT NULL,
    PRIMARY KEY(version_id, run_id)
) WITHOUT ROWID;
CREATE INDEX artifact_usage_by_run ON artifact_usage(run_id);
CREATE TABLE artifact_jobs(
    id INTEGER PRIMARY KEY,
    log_id TEXT NOT NULL UNIQUE,
    run_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    error TEXT,
    version_id INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX artifact_jobs_by_name ON artifact_jobs(project_id, name, status);
"""

# Version 6: the mirrors a run asked for at init(mirror=...), so a daemon restarted mid-run keeps mirroring it.
_V6_RUN_MIRRORS = """
ALTER TABLE runs ADD COLUMN mirrors TEXT NOT NULL DEFAULT '[]';
"""

# Version 7: ranks of a distributed job (docs/ranks.md) and the forwarding journal (docs/forwarding.md).
# Rank 0 keeps the plain series; rank r > 0 writes the
# series of key k under key id RANK_KEY_OFFSET + rank_keys.id, a space no join on keys(id) ever reaches.
_V7_RANKS = """
ALTER TABLE runs ADD COLUMN job_key TEXT;
ALTER TABLE runs ADD COLUMN world_size INTEGER;
CREATE INDEX runs_by_job ON runs(project_id, job_key);
CREATE TABLE rank_keys(
    id INTEGER PRIMARY KEY,
    key_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    UNIQUE(key_id, rank)
);
CREATE TABLE run_ranks(
    run_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    sid BLOB NOT NULL,
    host TEXT,
    pid INTEGER,
    local_rank INTEGER,
    config TEXT NOT NULL DEFAULT '{}',
    joined_at REAL NOT NULL,
    exit_code INTEGER,
    ended_at REAL,
    PRIMARY KEY(run_id, rank)
) WITHOUT ROWID;
CREATE TABLE forward_journal(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    frame BLOB NOT NULL
);
CREATE TABLE forward_state(
    name TEXT PRIMARY KEY,
    value BLOB
);
"""

# Version 8: more kinds of rich values (videos, audio, 3-D objects, plotly figures, wandb.plot charts and
# galleries). SQLite cannot change a CHECK in place, so the table is rebuilt with its rows and ids.
_V8_MEDIA_KINDS = """
CREATE TABLE media_v8(
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('histogram', 'array', 'image', 'table', 'html', 'video', 'audio',
        'object3d', 'plotly', 'plot', 'gallery')),
    meta TEXT NOT NULL DEFAULT '{}',
    body BLOB,
    path TEXT,
    UNIQUE(run_id, key_id, step)
);
INSERT INTO media_v8(id, run_id, key_id, step, ts, kind, meta, body, path)
    SELECT id, run_id, key_id, step, ts, kind, meta, body, path FROM media;
DROP TABLE media;
ALTER TABLE media_v8 RENAME TO media;
"""

# Version 9: a chunk says whether its steps are evenly spaced (``even`` = 1: step_min, step_min + d, ..., step_max
# with d = (step_max - step_min) / (n - 1), each once), so that a sampled read (``history(samples=...)``) knows them
# without reading ``steps``. A 0 or 1 is stored in the record's header alone (SQLite's serial types 8 and 9), so
# reading it never walks the chunk's overflow pages, although the column comes after the BLOBs. Chunks written
# before keep 0 (not known) and are read as before; adding a column with a default rewrites nothing.
_V9_EVEN_CHUNKS = """
ALTER TABLE chunks ADD COLUMN even INTEGER NOT NULL DEFAULT 0;
"""

#: MIGRATIONS[i] upgrades a database at user_version i to i + 1.
MIGRATIONS: list[str] = [
    _V1,
    _V2_SYSTEM_AND_ENERGY,
    _V3_MEDIA,
    _V4_TEXT_REVISIONS,
    _V5_CONTEXT_ALERTS_FILES_ARTIFACTS,
    _V6_RUN_MIRRORS,
    _V7_RANKS,
    _V8_MEDIA_KINDS,
    _V9_EVEN_CHUNKS,
]
#: The first version whose chunks have ``even`` (readers of an older, not yet migrated file take it as 0).
EVEN_CHUNKS_VERSION = MIGRATIONS.index(_V9_EVEN_CHUNKS) + 1
#: Rank r > 0 stores key k's series under this plus its rank_keys id (see _V7_RANKS).
RANK_KEY_OFFSET = 1 << 40
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


#: A row of ``runs`` as a dict keyed by column name (what :func:`dict_rows` gives for ``SELECT * FROM runs``).
RunRow = dict[str, Any]


def dict_rows(conn: apsw.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Run ``sql`` and return its rows as dicts keyed by column name."""
    cursor = conn.cursor()
    cursor.row_trace = lambda cur, row: dict(zip((d[0] for d in cur.getdescription()), row))
    return cursor.execute(sql, args).fetchall()  # type: ignore[return-value]
