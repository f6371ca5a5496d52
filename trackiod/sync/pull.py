"""``trackiod pull``: restore runs into a local database from a dataset in the open Parquet layout.

The daemon is the database's only writer, so pull refuses to run while a daemon serves the data directory,
and holds the daemon's lock while it writes (no daemon can start meanwhile). It writes through the same
:class:`~trackiod.store.writer.Store` the daemon uses, so restored series are chunked exactly like ingested ones.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trackio_shim.errors import DaemonError, UsageError
from trackio_shim.settings import TrackiodSettings
from trackiod.store.writer import Store
from trackiod.sync.hub import make_hub
from trackiod.sync.layout import (
    CONTEXT_POINTS_SCHEMA,
    CONTEXT_TEXTS_SCHEMA,
    LAYOUT_VERSION,
    POINTS_SCHEMA,
    RANK_POINTS_SCHEMA,
    RANK_TEXTS_SCHEMA,
    RUN_RANKS_SCHEMA,
    RUNS_SCHEMA,
    TEXTS_SCHEMA,
)
from trackiod.sync.pull_kinds import read_kind, restore_kinds

log = logging.getLogger("trackiod.pull")


@contextmanager
def writer_lock(settings: TrackiodSettings) -> Iterator[None]:
    """Hold the daemon's lock, so this process is the only writer.

    Raises:
        DaemonError: a daemon is running on this data directory.
    """
    settings.ensure_dirs()
    fd = os.open(settings.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonError(
                f"a trackiod daemon is running on {settings.home}; stop it (`trackiod stop`) or pull into another "
                "data directory (`--home DIR`)"
            ) from None
        yield
    finally:
        os.close(fd)


@dataclass
class Contents:
    """What :func:`read_dataset` found: runs, rank 0's points and texts, the other ranks', ``run_ranks`` and the
    series logged with a context (every rank's)."""

    runs: list[dict[str, Any]]
    points: pa.Table
    texts: pa.Table
    rank_points: pa.Table
    rank_texts: pa.Table
    ranks: pa.Table
    context_points: pa.Table
    context_texts: pa.Table


def read_dataset(root: Path) -> Contents:
    """The runs and series of a dataset folder in the open layout (any version up to LAYOUT_VERSION).

    Raises:
        UsageError: the folder is not in a layout this trackiod can read.
    """
    marker = root / "trackiod.json"
    if marker.exists():
        version = json.loads(marker.read_text()).get("layout_version")
        if version not in range(1, LAYOUT_VERSION + 1):
            raise UsageError(
                f"{root} has layout version {version!r}; this trackiod reads versions 1 to {LAYOUT_VERSION} "
                "(upgrade trackiod)"
            )
    elif not (root / "runs").is_dir():
        raise UsageError(f"{root} is not a trackiod dataset (no trackiod.json, no runs/ folder)")
    return Contents(
        read_kind(root, "runs", RUNS_SCHEMA).to_pylist(),
        read_kind(root, "points", POINTS_SCHEMA),
        read_kind(root, "texts", TEXTS_SCHEMA),
        read_kind(root, "rank_points", RANK_POINTS_SCHEMA),
        read_kind(root, "rank_texts", RANK_TEXTS_SCHEMA),
        read_kind(root, "run_ranks", RUN_RANKS_SCHEMA),
        read_kind(root, "context_points", CONTEXT_POINTS_SCHEMA),
        read_kind(root, "context_texts", CONTEXT_TEXTS_SCHEMA),
    )


def fetch(settings: TrackiodSettings, source: str, scratch: Path) -> Path:
    """A local folder holding ``source``: the folder itself, or a download of the dataset repository."""
    if Path(source).is_dir():
        return Path(source)
    return make_hub(settings).download(source, "dataset", scratch)


def pull(settings: TrackiodSettings, source: str, force: bool = False) -> list[str]:
    """Restore every run of ``source`` (a dataset id, or a folder) into the local database.

    Returns ``project/run_id`` of each run restored.

    Raises:
        UsageError: runs of the dataset already exist locally and ``force`` is False.
        DaemonError: a daemon is running on this data directory.
        HubError: the dataset could not be downloaded.
    """
    with tempfile.TemporaryDirectory(prefix="trackiod-pull-") as scratch:
        root = fetch(settings, source, Path(scratch))
        contents = read_dataset(root)
        with writer_lock(settings):
            store = Store(settings.db_path)
            try:
                return _restore(store, contents, force, settings.home, root)
            finally:
                store.close()


def _restore(store: Store, contents: Contents, force: bool, home: Path, root: Path) -> list[str]:
    conn = store.conn
    runs = contents.runs
    existing = []
    for run in runs:
        pid = conn.execute("SELECT id FROM projects WHERE name=?", (run["project"],)).fetchone()
        if (
            pid
            and conn.execute("SELECT 1 FROM runs WHERE project_id=? AND run_key=?", (pid[0], run["run_id"])).fetchone()
        ):
            existing.append(f"{run['project']}/{run['run_id']}")
    if existing and not force:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise UsageError(f"{len(existing)} run(s) already exist locally ({shown}); pass --force to replace them")
    restored = []
    run_ids: dict[tuple[str, str], int] = {}
    with conn:
        for run in runs:
            run_id = _replace_run(store, run)
            key_counts: dict[int, tuple[str, int, int]] = {}
            _restore_points(store, run_id, run, contents.points, key_counts)
            _restore_texts(store, run_id, run, contents.texts, key_counts)
            _restore_points(store, run_id, run, contents.rank_points, key_counts)
            _restore_texts(store, run_id, run, contents.rank_texts, key_counts)
            _restore_points(store, run_id, run, contents.context_points, key_counts)
            _restore_texts(store, run_id, run, contents.context_texts, key_counts)
            _restore_ranks(store, run_id, run, contents.ranks)
            if key_counts:
                store.count_keys({(run_id, k): v for k, v in key_counts.items()})
            restored.append(f"{run['project']}/{run['run_id']}")
            run_ids[(run["project"], run["run_id"])] = run_id
        counts = restore_kinds(store, home, root, run_ids)
    log.info("pulled %d runs (%s)", len(restored), ", ".join(f"{v} {k}" for k, v in counts.items()))
    return restored


def _replace_run(store: Store, run: dict[str, Any]) -> int:
    conn = store.conn
    project_id = store.project_id(run["project"])
    old = conn.execute("SELECT id FROM runs WHERE project_id=? AND run_key=?", (project_id, run["run_id"])).fetchone()
    if old:
        for table in ("chunks", "texts", "run_keys", "session_runs", "media", "run_gpus", "run_energy", "run_ranks"):
            conn.execute(f"DELETE FROM {table} WHERE run_id=?", (old[0],))
        conn.execute("DELETE FROM runs WHERE id=?", (old[0],))
        store.forget_tails(old[0])
    # A run pulled while "running" has no process here: a daemon's crash detection marks it crashed.
    conn.execute(
        "INSERT INTO runs(project_id, run_key, name, state, exit_code, created_at, updated_at, ended_at, host, "
        "config, summary, summary_state, metric_defs, tags, notes, group_name, job_type, mode, space_id, "
        "dataset_id, last_step, job_key, world_size) VALUES (" + ", ".join("?" * 23) + ")",
        (
            project_id,
            run["run_id"],
            run["name"],
            run["state"],
            run["exit_code"],
            run["created_at"],
            run["updated_at"],
            run["ended_at"],
            run["host"],
            run["config"],
            run["summary"],
            run["summary_state"] or "{}",
            run["metric_defs"],
            json.dumps(run["tags"] or []),
            run["notes"],
            run["group"],
            run["job_type"],
            run["mode"],
            run["space_id"],
            run["dataset_id"],
            run["last_step"],
            run.get("job_key"),
            run.get("world_size"),
        ),
    )
    run_id = int(conn.last_insert_rowid())
    if old:  # artifacts outlive the run they were produced or used by: point them at its replacement
        conn.execute("UPDATE artifact_versions SET producer_run_id=? WHERE producer_run_id=?", (run_id, old[0]))
        conn.execute("UPDATE OR IGNORE artifact_usage SET run_id=? WHERE run_id=?", (run_id, old[0]))
    return run_id


def _of_run(table: pa.Table, run: dict[str, Any]) -> pa.Table:
    mask = pc.and_(pc.equal(table["project"], run["project"]), pc.equal(table["run_id"], run["run_id"]))
    return table.filter(mask)


def _restore_points(
    store: Store, run_id: int, run: dict[str, Any], points: pa.Table, counts: dict[int, tuple[str, int, int]]
) -> None:
    mine = _of_run(points, run)
    if mine.num_rows == 0:
        return
    ranked = "rank" in mine.schema.names
    with_context = "context" in mine.schema.names
    order = ["key", *(["rank"] if ranked else []), *(["context"] if with_context else []), "seq"]
    mine = mine.sort_by([(column, "ascending") for column in order])
    keys = mine["key"].to_numpy(zero_copy_only=False)
    ranks = mine["rank"].to_numpy() if ranked else np.zeros(mine.num_rows, np.int64)
    contexts = mine["context"].to_numpy(zero_copy_only=False) if with_context else np.full(mine.num_rows, None)
    steps = mine["step"].to_numpy()
    times = mine["timestamp"].to_numpy()
    vals = mine["value"].to_numpy()
    seqs = mine["seq"].to_numpy()
    bounds = np.flatnonzero((keys[1:] != keys[:-1]) | (ranks[1:] != ranks[:-1]) | (contexts[1:] != contexts[:-1])) + 1
    for start, end in zip([0, *bounds.tolist()], [*bounds.tolist(), keys.size]):
        # A retried part overwrote its earlier attempt, so a seq appears once; drop repeats defensively.
        unique = np.concatenate(([True], seqs[start + 1 : end] != seqs[start : end - 1]))
        s, t, v = steps[start:end][unique], times[start:end][unique], vals[start:end][unique]
        key_id = _series_id(store, str(keys[start]), int(ranks[start]), contexts[start])
        store.write_series(run_id, key_id, s.astype(np.int64), t.astype(np.float64), v.astype(np.float64))
        counts[key_id] = ("scalar", int(s.size), int(s.max()))


def _restore_texts(
    store: Store, run_id: int, run: dict[str, Any], texts: pa.Table, counts: dict[int, tuple[str, int, int]]
) -> None:
    mine = _of_run(texts, run)
    if mine.num_rows == 0:
        return
    rows = []
    for row in mine.sort_by([("seq", "ascending")]).to_pylist():
        key_id = _series_id(store, row["key"], int(row.get("rank") or 0), row.get("context"))
        rows.append((run_id, key_id, row["step"], row["timestamp"], row["value"]))
        _, n, last = counts.get(key_id, ("text", 0, row["step"]))
        counts[key_id] = ("text", n + 1, max(last, row["step"]))
    store.write_texts(rows)


def _series_id(store: Store, key: str, rank: int, context: str | None = None) -> int:
    """The series key id of ``key`` as logged by ``rank`` (rank 0: the plain key; docs/ranks.md, "Storage") with
    ``context`` (canonical JSON; None for none: docs/storage.md, "Metric context")."""
    key_id = store.key_id(key, None if context is None else store.context_id(context))
    return key_id if rank == 0 else store.rank_key_id(key_id, rank)


def _restore_ranks(store: Store, run_id: int, run: dict[str, Any], ranks: pa.Table) -> None:
    """The run's ``run_ranks`` rows; their sessions are not here, so each gets an empty session id."""
    for row in _of_run(ranks, run).to_pylist():
        store.conn.execute(
            "INSERT OR REPLACE INTO run_ranks(run_id, rank, sid, host, pid, local_rank, config, joined_at, exit_code, "
            "ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                row["rank"],
                b"",
                row["host"],
                row["pid"],
                row["local_rank"],
                row["config"] or "{}",
                row["joined_at"],
                row["exit_code"],
                row["ended_at"],
            ),
        )
