"""Reads of alerts, saved files, artifacts and metric contexts, through query-only connections.

The companion of :mod:`trackiod.read.series` for the tables schema version 5 added. Used by the CLI
(``trackiod alerts``, ``trackiod artifacts``), the read API (``trackio_shim.Api``), ``use_artifact()``, and
the dashboard. Nothing here writes to the database; materialising an artifact version writes
files only (hard links to blobs, or copies).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from trackio_shim.errors import ArtifactError, ArtifactNotFoundError
from trackiod.attachments.artifacts import VERSION_ALIAS, blob_path
from trackiod.read.series import read_series
from trackiod.store.schema import dict_rows

# ------------------------------------------------------------------------------------------------ alerts


def list_alerts(
    conn: apsw.Connection, project: str | None = None, run_key: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Alerts, newest first, with their run and delivery state (``status``, ``attempts``, ``last_error``)."""
    sql = (
        "SELECT a.id, p.name AS project, r.run_key AS run_id, r.name AS run_name, a.step, a.ts, a.title, a.text, "
        "a.level, a.wait_duration, a.status, a.attempts, a.last_error, a.delivered_at FROM alerts a "
        "JOIN runs r ON r.id = a.run_id JOIN projects p ON p.id = r.project_id"
    )
    where, args = [], []
    if project is not None:
        where.append("p.name=?")
        args.append(project)
    if run_key is not None:
        where.append("r.run_key=?")
        args.append(run_key)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return dict_rows(conn, sql + " ORDER BY a.id DESC LIMIT ?", (*args, limit))


# ------------------------------------------------------------------------------------------------ files


def list_files(conn: apsw.Connection, files_dir: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The files save() copied for a run: name, size, sha256, copies, policy, and the local copy's path."""
    rows = dict_rows(
        conn,
        "SELECT name, size, sha256, copies, policy, updated_at FROM run_files WHERE run_id=? ORDER BY name",
        (run["id"],),
    )
    for row in rows:
        row["path"] = str(files_dir / run["project"] / run["run_key"] / row["name"])
    return rows


# ------------------------------------------------------------------------------------------------ context


def run_contexts(conn: apsw.Connection, run_id: int) -> list[dict[str, Any]]:
    """Each series of a run that carries a context: ``{key, context, key_id, points}``."""
    rows: list[Any] = conn.execute(
        "SELECT kc.id, kc.base_name, c.body, rk.points FROM run_keys rk "
        "JOIN key_contexts kc ON kc.id = -rk.key_id JOIN contexts c ON c.id = kc.context_id "
        "WHERE rk.run_id=? AND rk.key_id < 0 ORDER BY kc.base_name, c.body",
        (run_id,),
    ).fetchall()
    return [{"key": name, "context": json.loads(body), "key_id": -kid, "points": n} for kid, name, body, n in rows]


def context_series(
    conn: apsw.Connection, run_id: int, key: str, context: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """``key``'s series of a run, one per context (each a ``(steps, times, values)`` triple).

    With ``context``, only the series whose context contains every item of it. The context-free series,
    if any, comes first with context ``{}`` (when ``context`` is empty or None).
    """
    out: list[tuple[dict[str, Any], tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    wanted = context or {}
    if not wanted:
        row = conn.execute("SELECT id FROM keys WHERE name=?", (key,)).fetchone()
        if row is not None:
            plain = read_series(conn, run_id, int(row[0]))
            if plain[0].size:
                out.append(({}, plain))
    for series in run_contexts(conn, run_id):
        if series["key"] == key and all(series["context"].get(k) == v for k, v in wanted.items()):
            out.append((series["context"], read_series(conn, run_id, series["key_id"])))
    return out


def context_history(
    conn: apsw.Connection, run_id: int, context: dict[str, Any], keys: list[str] | None = None
) -> list[dict[str, Any]]:
    """History rows (``_step``, ``_timestamp`` and values) of the series whose context equals ``context``."""
    body = json.dumps(context, sort_keys=True, separators=(",", ":"))
    columns = []
    for series in run_contexts(conn, run_id):
        if json.dumps(series["context"], sort_keys=True, separators=(",", ":")) != body:
            continue
        if keys is None or series["key"] in keys:
            columns.append((series["key"], read_series(conn, run_id, series["key_id"])))
    if not columns:
        return []
    steps = np.unique(np.concatenate([c[1][0] for c in columns]))
    rows: dict[int, dict[str, Any]] = {int(s): {"_step": int(s), "_timestamp": 0.0} for s in steps.tolist()}
    for name, (s, t, v) in columns:
        for step, ts, value in zip(s.tolist(), t.tolist(), v.tolist()):
            row = rows[step]
            row[name] = int(value) if float(value).is_integer() and abs(value) < 2**53 else value
            row["_timestamp"] = max(row["_timestamp"], ts)
    if keys is not None:
        return [r for r in rows.values() if all(k in r for k in keys)]
    return list(rows.values())


# ------------------------------------------------------------------------------------------------ artifacts


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
