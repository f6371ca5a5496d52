"""Reads of artifacts: versions, aliases, lineage and pending jobs, and their files written out of the blob store.

Used by the CLI (``trackiod artifacts``), the read API (``trackio_shim.Api``), ``use_artifact()`` and the
dashboard. Nothing here writes to the database; materialising or exporting a version writes files only (hard
links to the read-only blobs of :mod:`trackiod.store.blobs`, or copies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from trackio_shim.errors import ArtifactError, ArtifactNotFoundError
from trackiod.store.blobs import blob_path
from trackiod.store.schema import dict_rows

#: An alias of the form ``vN`` names version N; such names are never stored as aliases.
VERSION_ALIAS = re.compile(r"^v\d+$")


def parse_ref(ref: str, default_project: str | None) -> tuple[str, str, str]:
    """``(project, name, alias or "vN")`` from ``[project/]name[:alias]``; the alias defaults to latest.

    Raises:
        ArtifactNotFoundError: the reference is empty or has no project and no default.
    """
    body, _, alias = ref.partition(":")
    project, _, name = body.rpartition("/")
    project = project.split("/")[-1] if project else (default_project or "")
    if not name or not project:
        raise ArtifactNotFoundError(
            f"artifact reference {ref!r} names no project and none was given; use 'project/name[:alias]'"
            if name
            else f"artifact reference {ref!r} must look like '[project/]name[:alias]'"
        )
    return project, name, alias or "latest"


def list_artifacts(conn: apsw.Connection, project: str | None = None) -> list[dict[str, Any]]:
    """Every artifact version with its aliases, producer and users, newest first."""
    sql = (
        "SELECT v.id AS version_id, p.name AS project, a.name, a.type, v.version, v.digest, v.size, "
        "v.file_count, v.description, v.metadata, v.created_at, pr.run_key AS producer "
        "FROM artifact_versions v JOIN artifacts a ON a.id = v.artifact_id "
        "JOIN projects p ON p.id = a.project_id LEFT JOIN runs pr ON pr.id = v.producer_run_id"
    )
    rows = dict_rows(
        conn,
        sql + (" WHERE p.name=?" if project else "") + " ORDER BY a.name, v.version DESC",
        ((project,) if project else ()),
    )
    for row in rows:
        _decorate(conn, row)
    return rows


def _decorate(conn: apsw.Connection, row: dict[str, Any]) -> None:
    vid = row["version_id"]
    row["metadata"] = json.loads(row["metadata"] or "{}")
    row["aliases"] = [a for (a,) in conn.execute("SELECT alias FROM artifact_aliases WHERE version_id=?", (vid,))]
    row["used_by"] = [
        k
        for (k,) in conn.execute(
            "SELECT r.run_key FROM artifact_usage u JOIN runs r ON r.id = u.run_id WHERE u.version_id=? "
            "ORDER BY u.used_at",
            (vid,),
        )
    ]


def projects_with_artifact(conn: apsw.Connection, name: str) -> list[str]:
    """Projects that have an artifact called ``name``."""
    return [
        p
        for (p,) in conn.execute(
            "SELECT p.name FROM artifacts a JOIN projects p ON p.id = a.project_id WHERE a.name=? ORDER BY p.name",
            (name,),
        )
    ]


def pending_jobs(conn: apsw.Connection, project: str, name: str) -> int:
    """How many log_artifact() calls for this artifact the daemon has not finished storing."""
    row: Any = conn.execute(
        "SELECT COUNT(*) FROM artifact_jobs j JOIN projects p ON p.id = j.project_id "
        "WHERE p.name=? AND j.name=? AND j.status='pending'",
        (project, name),
    ).fetchone()
    return int(row[0])


def job_state(conn: apsw.Connection, log_id: str) -> tuple[str, str | None, int | None] | None:
    """``(status, error, version_id)`` of one log_artifact() call, or None if the daemon has not seen it."""
    row = conn.execute("SELECT status, error, version_id FROM artifact_jobs WHERE log_id=?", (log_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def resolve(conn: apsw.Connection, project: str, name: str, alias: str) -> dict[str, Any]:
    """One version (``alias`` is an alias or ``vN``) with its entries.

    Raises:
        ArtifactNotFoundError: no such artifact, or no such alias or version; the message lists what exists.
    """
    found = conn.execute(
        "SELECT a.id FROM artifacts a JOIN projects p ON p.id = a.project_id WHERE p.name=? AND a.name=?",
        (project, name),
    ).fetchone()
    if found is None:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT a.name FROM artifacts a JOIN projects p ON p.id = a.project_id WHERE p.name=? ORDER BY a.name",
                (project,),
            )
        ]
        known = f"artifacts there: {', '.join(names)}" if names else "it has no artifacts"
        raise ArtifactNotFoundError(f"project {project!r} has no artifact {name!r} ({known})")
    artifact_id = found[0]
    if VERSION_ALIAS.match(alias):
        row = conn.execute(
            "SELECT id FROM artifact_versions WHERE artifact_id=? AND version=?", (artifact_id, int(alias[1:]))
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT version_id FROM artifact_aliases WHERE artifact_id=? AND alias=?", (artifact_id, alias)
        ).fetchone()
    if row is None:
        aliases = [
            a
            for (a,) in conn.execute(
                "SELECT alias FROM artifact_aliases WHERE artifact_id=? ORDER BY alias", (artifact_id,)
            )
        ]
        versions = [
            f"v{v}"
            for (v,) in conn.execute(
                "SELECT version FROM artifact_versions WHERE artifact_id=? ORDER BY version", (artifact_id,)
            )
        ]
        raise ArtifactNotFoundError(
            f"artifact {project}/{name} has no version or alias {alias!r} "
            f"(versions: {', '.join(versions)}; aliases: {', '.join(aliases) or 'none'})"
        )
    version = _version(conn, int(row[0]))
    assert version is not None
    return version


def _version(conn: apsw.Connection, version_id: int) -> dict[str, Any] | None:
    rows = dict_rows(
        conn,
        "SELECT v.id AS version_id, p.name AS project, a.name, a.type, v.version, v.digest, v.size, v.file_count, "
        "v.description, v.metadata, v.created_at, pr.run_key AS producer FROM artifact_versions v "
        "JOIN artifacts a ON a.id = v.artifact_id JOIN projects p ON p.id = a.project_id "
        "LEFT JOIN runs pr ON pr.id = v.producer_run_id WHERE v.id=?",
        (version_id,),
    )
    if not rows:
        return None
    row = rows[0]
    _decorate(conn, row)
    row["entries"] = dict_rows(
        conn, "SELECT name, sha256, size FROM artifact_entries WHERE version_id=? ORDER BY name", (version_id,)
    )
    return row


def version_by_id(conn: apsw.Connection, version_id: int) -> dict[str, Any] | None:
    return _version(conn, version_id)


def _write_entries(
    version: dict[str, Any], blobs_dir: Path, target: Path, link: bool, progress: Callable[[int], None] | None
) -> None:
    for entry in version["entries"]:
        source = blob_path(blobs_dir, entry["sha256"])
        if not source.exists():
            raise ArtifactError(f"artifact {version['name']}: blob {entry['sha256'][:12]} is missing from {blobs_dir}")
        path = target / entry["name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not link:
                raise OSError("a copy was asked for")
            os.link(source, path)
        except OSError:
            path.unlink(missing_ok=True)
            shutil.copyfile(source, path)
        if progress is not None:
            progress(int(entry["size"]))


def materialise(
    version: dict[str, Any], blobs_dir: Path, dest: Path, progress: Callable[[int], None] | None = None
) -> Path:
    """The version's files under ``dest`` as hard links to the (read-only) blobs, or copies across devices.

    Built in a temporary sibling directory and renamed into place, so ``dest`` is complete when it exists;
    an existing ``dest`` is reused as is. ``progress`` is called with each file's size as it is written.

    Raises:
        ArtifactError: a blob the version needs is missing from the blob store.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_entries(version, blobs_dir, tmp, True, progress)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.exists():  # else another process materialised it first: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def export(version: dict[str, Any], blobs_dir: Path, root: Path, progress: Callable[[int], None] | None = None) -> Path:
    """Copies of the version's files written into ``root`` (created if needed; same-named files replaced).

    Raises:
        ArtifactError: a blob the version needs is missing from the blob store.
    """
    root.mkdir(parents=True, exist_ok=True)
    _write_entries(version, blobs_dir, root, False, progress)
    return root
