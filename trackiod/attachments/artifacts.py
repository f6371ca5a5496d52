"""Artifacts: content-addressed blobs, versions v0, v1, ..., aliases and lineage.

``log_artifact()`` sends a manifest: the artifact's name, type and metadata, and for each file its name in
the artifact and its path on this machine. The writer stores it as a job (``artifact_jobs``); the worker
thread hashes each file while copying it into ``blobs/<first 2 hex digits>/<sha256>`` (identical content is
stored once); the writer then creates the version (or, when the content equals an existing version's,
reuses that version), moves ``latest`` and the requested aliases, and records which run produced it.
``use_artifact()`` records which run used a version (ARTIFACT_USE). Jobs left pending by a stopped daemon
run again at its next start. Reading and materialising versions is in
:mod:`trackiod.read.artifacts`; the blob files are kept by :mod:`trackiod.store.blobs`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from typing import Any

from trackio_shim.errors import FrameRejected
from trackio_shim.settings import TrackiodSettings
from trackiod.ingest.guard import is_int64
from trackiod.ingest.outbox import Outbox, Worker
from trackiod.read.artifacts import VERSION_ALIAS
from trackiod.store.blobs import store_blob

log = logging.getLogger("trackiod.artifacts")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def entry_name_ok(name: str) -> bool:
    """A file's name inside an artifact: relative, '/'-separated, no '..' or empty parts."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def manifest_digest(entries: list[tuple[str, str, int]]) -> str:
    """One digest for a version's content: sha256 over its sorted (name, sha256) pairs."""
    digest = hashlib.sha256()
    for name, sha, _ in sorted(entries):
        digest.update(f"{name}\x00{sha}\n".encode())
    return digest.hexdigest()


def check_manifest(manifest: dict[str, Any]) -> None:
    """Raises FrameRejected naming the first bad field of an ARTIFACT_LOG manifest."""
    name = manifest.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise FrameRejected(f"artifact name {name!r} must be 1-128 letters, digits, '.', '_' or '-'")
    if not isinstance(manifest.get("type"), str) or not manifest["type"]:
        raise FrameRejected("artifact type must be a non-empty str")
    entries = manifest.get("entries")
    if not isinstance(entries, list) or not entries:
        raise FrameRejected(f"artifact {name!r} has no files")
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)):
            raise FrameRejected(f"artifact {name!r}: each entry must be [name, absolute source path]")
        if not entry_name_ok(entry[0]) or not os.path.isabs(entry[1]):
            raise FrameRejected(f"artifact {name!r}: entry {entry[0]!r} needs a relative name and an absolute source")
    if not isinstance(manifest.get("log_id"), str):
        raise FrameRejected("artifact manifest needs a log_id")
    try:
        json.dumps(manifest)
    except (TypeError, ValueError) as exc:  # bytes, say: artifact_jobs.manifest holds JSON
        raise FrameRejected(f"artifact {name!r}: the manifest cannot be stored as JSON ({exc})") from None


class ArtifactBook:
    """The writer's side (jobs, versions, aliases, lineage) and the worker's side (blobs) of artifacts."""

    def __init__(self, settings: TrackiodSettings, outbox: Outbox, worker: Worker) -> None:
        self.settings = settings
        self.outbox = outbox
        self.worker = worker
        self._new: list[tuple[int, dict[str, Any]]] = []

    # ------------------------------------------------------------------ writer thread
    def log(self, store: Any, run_id: int, manifest: dict[str, Any]) -> None:
        """Store an ARTIFACT_LOG as a pending job inside the open transaction (FrameRejected: bad manifest)."""
        check_manifest(manifest)
        project_id = store.conn.execute("SELECT project_id FROM runs WHERE id=?", (run_id,)).fetchone()[0]
        store.conn.execute(
            "INSERT OR IGNORE INTO artifact_jobs(log_id, run_id, project_id, name, manifest, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (manifest["log_id"], run_id, project_id, manifest["name"], json.dumps(manifest), time.time()),
        )
        if store.conn.changes():  # a log_id seen before is the same request again
            self._new.append((int(store.conn.last_insert_rowid()), manifest))

    def use(self, store: Any, run_id: int, ref: dict[str, Any]) -> None:
        """Record that ``run_id`` used a version (lineage); FrameRejected if the reference is malformed."""
        version_id = ref.get("version_id")
        if not is_int64(version_id):
            raise FrameRejected("ARTIFACT_USE needs an int version_id")
        store.conn.execute(
            "INSERT OR IGNORE INTO artifact_usage(version_id, run_id, used_at) VALUES (?, ?, ?)",
            (version_id, run_id, time.time()),
        )

    def committed(self) -> None:
        for job_id, manifest in self._new:
            self.worker.submit(functools.partial(self._build, job_id, manifest))
        self._new.clear()

    def rolled_back(self) -> None:
        self._new.clear()

    def mark(self) -> object:
        """How many jobs the open transaction has queued (a frame's undo drops those it added)."""
        return len(self._new)

    def undo_to(self, mark: object) -> None:
        assert isinstance(mark, int)
        del self._new[mark:]

    def resume(self, store: Any) -> int:
        """Queue the jobs a previous daemon left pending; returns how many."""
        rows = store.conn.execute(
            "SELECT id, manifest FROM artifact_jobs WHERE status='pending' ORDER BY id"
        ).fetchall()
        for job_id, manifest in rows:
            self._new.append((job_id, json.loads(manifest)))
        self.committed()
        return len(rows)

    # ------------------------------------------------------------------ worker thread
    def _build(self, job_id: int, manifest: dict[str, Any]) -> None:
        entries: list[tuple[str, str, int]] = []
        try:
            for name, source in manifest["entries"]:
                sha, size = store_blob(self.settings.blobs_dir, source)
                entries.append((name, sha, size))
        except OSError as exc:
            error = f"artifact {manifest['name']!r}: could not read {getattr(exc, 'filename', '')}: {exc.strerror}"
            log.warning("%s; no version was created", error)
            self.outbox.put(lambda store: _fail(store, job_id, error))
            return
        self.outbox.put(lambda store: _create_version(store, job_id, manifest, entries))


def _fail(store: Any, job_id: int, error: str) -> None:
    store.conn.execute("UPDATE artifact_jobs SET status='failed', error=? WHERE id=?", (error, job_id))


def _create_version(store: Any, job_id: int, manifest: dict[str, Any], entries: list[tuple[str, str, int]]) -> None:
    """Writer thread: the version for a built job (or the existing one with the same content)."""
    conn = store.conn
    run_id, project_id = conn.execute("SELECT run_id, project_id FROM artifact_jobs WHERE id=?", (job_id,)).fetchone()
    name, kind, now = manifest["name"], manifest["type"], time.time()
    conn.execute(
        "INSERT OR IGNORE INTO artifacts(project_id, name, type, created_at) VALUES (?, ?, ?, ?)",
        (project_id, name, kind, now),
    )
    artifact_id, stored_type = conn.execute(
        "SELECT id, type FROM artifacts WHERE project_id=? AND name=?", (project_id, name)
    ).fetchone()
    if stored_type != kind:
        _fail(store, job_id, f"artifact {name!r} has type {stored_type!r}, not {kind!r}; use another name")
        return
    digest = manifest_digest(entries)
    conn.executemany(
        "INSERT OR IGNORE INTO blobs(sha256, size, created_at) VALUES (?, ?, ?)",
        [(sha, size, now) for _, sha, size in entries],
    )
    existing = conn.execute(
        "SELECT id FROM artifact_versions WHERE artifact_id=? AND digest=? ORDER BY version DESC LIMIT 1",
        (artifact_id, digest),
    ).fetchone()
    if existing is not None:
        version_id = int(existing[0])  # the same content again: no new version, as in wandb
    else:
        (latest,) = conn.execute(
            "SELECT COALESCE(MAX(version), -1) FROM artifact_versions WHERE artifact_id=?", (artifact_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO artifact_versions(artifact_id, version, digest, size, file_count, description, metadata, "
            "producer_run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                artifact_id,
                latest + 1,
                digest,
                sum(size for _, _, size in entries),
                len(entries),
                manifest.get("description"),
                json.dumps(manifest.get("metadata") or {}, default=str),
                run_id,
                now,
            ),
        )
        version_id = int(conn.last_insert_rowid())
        conn.executemany(
            "INSERT INTO artifact_entries(version_id, name, sha256, size) VALUES (?, ?, ?, ?)",
            [(version_id, n, sha, size) for n, sha, size in entries],
        )
    # "latest" names the content logged last, even when that content is an older version's.
    aliases = ["latest"]
    aliases += [a for a in manifest.get("aliases") or [] if isinstance(a, str) and ALIAS_PATTERN.match(a)]
    conn.executemany(
        "INSERT OR REPLACE INTO artifact_aliases(artifact_id, alias, version_id) VALUES (?, ?, ?)",
        [(artifact_id, alias, version_id) for alias in aliases if not VERSION_ALIAS.match(alias)],
    )
    conn.execute("UPDATE artifact_jobs SET status='done', version_id=? WHERE id=?", (version_id, job_id))
    log.info("artifact %s: job %d stored as version id %d", name, job_id, version_id)
