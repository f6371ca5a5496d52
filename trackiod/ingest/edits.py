"""Edits of a run asked for by the dashboard (rename, tags, notes, delete), applied by the daemon's single writer.

The dashboard never writes the store: it sends an ``edit_run`` or ``delete_run`` QUERY to the daemon, whose loop
applies it between batches (trackiod.daemon.queries) and answers with the run as stored, so the page shows what
was written. A running run cannot be deleted (its processes would write to a run that is gone); a deleted
run's media files are deleted with it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from trackio_shim.errors import UsageError
from trackiod.ingest.media import MediaWriter
from trackiod.store.writer import Store

#: Longest name and notes accepted (what wandb's UI takes for a name; notes are free text).
MAX_NAME = 128
MAX_NOTES = 10_000
MAX_TAGS = 64
#: Every table with a ``run_id`` column besides ``runs``: what deleting a run removes
#: (tests/dashboard/test_dashboard_writes.py checks it against the schema, so a new table is not forgotten).
RUN_TABLES = (
    "alerts",
    "artifact_jobs",
    "artifact_usage",
    "chunks",
    "file_watches",
    "media",
    "run_energy",
    "run_files",
    "run_gpus",
    "run_keys",
    "run_ranks",
    "session_runs",
    "texts",
)


def _run_id(store: Store, project: str, run_key: str) -> int:
    row = store.conn.execute(
        "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=? AND r.run_key=?",
        (project, run_key),
    ).fetchone()
    if row is None:
        raise UsageError(f"no run {run_key!r} in project {project!r}")
    return int(row[0])


def _changes(args: dict[str, Any]) -> dict[str, Any]:
    """The columns to set, checked: ``name`` (1-128 characters), ``tags`` (a list of strings), ``notes``."""
    columns: dict[str, Any] = {}
    if "name" in args:
        name = args["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise UsageError(f"name must be 1 to {MAX_NAME} characters, got {name!r}")
        columns["name"] = name.strip()
    if "tags" in args:
        tags = args["tags"]
        if (
            not isinstance(tags, list)
            or len(tags) > MAX_TAGS
            or not all(isinstance(t, str) and t.strip() for t in tags)
        ):
            raise UsageError(f"tags must be a list of at most {MAX_TAGS} non-empty strings, got {tags!r}")
        columns["tags"] = json.dumps(list(dict.fromkeys(t.strip() for t in tags)))
    if "notes" in args:
        notes = args["notes"]
        if not isinstance(notes, str) or len(notes) > MAX_NOTES:
            raise UsageError(f"notes must be text of at most {MAX_NOTES} characters")
        columns["notes"] = notes
    if not columns:
        raise UsageError("an edit must set at least one of name, tags, notes")
    return columns


def edit_run(store: Store, project: str, run_key: str, args: dict[str, Any]) -> dict[str, Any]:
    """Set a run's name, tags or notes; returns them as stored. Raises UsageError for bad input or no such run."""
    columns = _changes(args)
    with store.conn:
        run_id = _run_id(store, project, run_key)
        store.update_run(run_id, **columns, updated_at=time.time())
    row = store.run(run_id)
    assert row is not None
    return {
        "project": project,
        "id": run_key,
        "name": row["name"],
        "tags": json.loads(row["tags"] or "[]"),
        "notes": row["notes"],
    }


def delete_run(store: Store, media: MediaWriter, project: str, run_key: str) -> dict[str, Any]:
    """Remove a finished run and everything stored for it (:data:`RUN_TABLES`), then its media files (once the
    rows are gone: see :meth:`MediaWriter.delete_files`); saved files stay (content-addressed blobs other runs
    and artifacts may share). Raises UsageError for a running run or no such run."""
    with store.conn:
        run_id = _run_id(store, project, run_key)
        row = store.run(run_id)
        if row is not None and row["state"] == "running":
            raise UsageError(f"run {run_key!r} is running; finish it (or wait until it ends) before deleting it")
        files = _media_files(store, "run_id=?", (run_id,))
        for table in RUN_TABLES:
            store.conn.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
        store.conn.execute("DELETE FROM runs WHERE id=?", (run_id,))
        # A pulled run keeps the paths of the machine it came from, so another run's rows may name the same
        # file: only files no remaining row names are deleted.
        if files:
            files -= _media_files(store, "path IS NOT NULL OR meta LIKE '%\"files\"%'", ())
    store.forget_tails(run_id)
    media.delete_files(sorted(files))
    return {"project": project, "id": run_key, "deleted": True}


def _media_files(store: Store, where: str, args: tuple[Any, ...]) -> set[str]:
    """The files (relative to the media folder) the matching media rows name: ``path`` and ``meta.files``."""
    files: set[str] = set()
    for path, meta in store.conn.execute(f"SELECT path, meta FROM media WHERE {where}", args):
        if path:
            files.add(path)
        files.update(f for f in json.loads(meta or "{}").get("files", ()) if isinstance(f, str) and f)
    return files
