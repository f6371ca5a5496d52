"""The layout's other kinds (docs/sync.md): media rows and files, run energy, node series, artifacts and blobs.

The companion of :mod:`trackiod.sync.layout`, used by sync and ``trackiod export --format parquet``, called
inside the same read transaction. Each kind has its own watermark in :class:`~trackiod.sync.layout.Marks`:
media rows a fingerprint per row of the runs whose ``updated_at`` moved (a replaced value keeps its row id),
node series the last ``system_chunks.id`` per host (chunks are immutable once written), artifacts the last
``artifact_versions.id`` per project (versions are immutable) plus a fingerprint of each artifact's aliases
and usage. Files (media, blobs) are hard-linked into the staging folder while the snapshot is open, so a media
file the daemon deletes right after (its value was replaced) is still the one the rows name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pyarrow as pa

from trackiod.store.blobs import blob_path
from trackiod.store.codec import decode_floats
from trackiod.sync.layout import Marks, part_name, partition, run_folder, write_atomic

log = logging.getLogger("trackiod.sync")

MEDIA_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("key", pa.string()),
        ("step", pa.int64()),
        ("timestamp", pa.float64()),
        ("kind", pa.string()),
        ("meta", pa.string()),
        ("body", pa.binary()),
        ("path", pa.string()),
        ("file", pa.string()),
        ("seq", pa.int64()),
    ]
)
ENERGY_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("host", pa.string()),
        ("gpu_uuid", pa.string()),
        ("gpu_index", pa.int64()),
        ("gpu_name", pa.string()),
        ("via", pa.string()),
        ("joules", pa.float64()),
        ("estimated_joules", pa.float64()),
        ("gpu_seconds", pa.float64()),
        ("first_ts", pa.float64()),
        ("last_ts", pa.float64()),
        ("grid_g_per_kwh", pa.float64()),
        ("location", pa.string()),
        ("updated_at", pa.float64()),
    ]
)
SYSTEM_SCHEMA = pa.schema(
    [("host", pa.string()), ("key", pa.string()), ("timestamp", pa.float64()), ("value", pa.float64())]
)
NODES_SCHEMA = pa.schema([("host", pa.string()), ("first_seen", pa.float64()), ("last_seen", pa.float64())])
GPUS_SCHEMA = pa.schema(
    [
        ("host", pa.string()),
        ("uuid", pa.string()),
        ("index", pa.int64()),
        ("name", pa.string()),
        ("memory_total", pa.float64()),
        ("power_limit_w", pa.float64()),
        ("first_seen", pa.float64()),
        ("last_seen", pa.float64()),
    ]
)
ENTRY_TYPE = pa.struct([("name", pa.string()), ("sha256", pa.string()), ("size", pa.int64())])
VERSIONS_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("name", pa.string()),
        ("type", pa.string()),
        ("version", pa.int64()),
        ("digest", pa.string()),
        ("size", pa.int64()),
        ("file_count", pa.int64()),
        ("description", pa.string()),
        ("metadata", pa.string()),
        ("producer_project", pa.string()),
        ("producer_run_id", pa.string()),
        ("created_at", pa.float64()),
        ("entries", pa.list_(ENTRY_TYPE)),
    ]
)
ALIASES_SCHEMA = pa.schema(
    [("project", pa.string()), ("name", pa.string()), ("alias", pa.string()), ("version", pa.int64())]
)
USAGE_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("name", pa.string()),
        ("version", pa.int64()),
        ("run_project", pa.string()),
        ("run_id", pa.string()),
        ("used_at", pa.float64()),
    ]
)


def media_file(path: str) -> str:
    """Where the media file at ``path`` (relative to ``TRACKIOD_HOME/media``) lives in the dataset."""
    return f"media_files/{path}"


def blob_file(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256}"


@dataclass
class Extras:
    """One tick's other kinds: Parquet tables and files, by path in the dataset."""

    tables: dict[str, pa.Table] = field(default_factory=dict)  # replaced as a whole: runs' energy, nodes ...
    parts: dict[str, pa.Table] = field(default_factory=dict)  # a folder: this tick's part file goes into it
    files: list[str] = field(default_factory=list)  # already placed in the output folder
    media: int = 0
    system_points: int = 0
    artifact_versions: int = 0
    blobs: int = 0
    system_read: bool = False  # node chunks were read (the watermark moved) even if none fell in a run

    def __bool__(self) -> bool:
        return bool(self.tables or self.parts or self.files)


class Collector:
    """Reads the other kinds since ``marks`` (updated in place) and places their files under ``out``."""

    def __init__(self, conn: apsw.Connection, home: Path, out: Path, marks: Marks, link: bool = True) -> None:
        self.conn, self.out, self.marks, self.link = conn, out, marks, link
        self.media_dir, self.blobs_dir = home / "media", home / "blobs"
        self.extras = Extras()

    def collect(self, all_runs: list[dict[str, Any]], moved_runs: list[dict[str, Any]]) -> Extras:
        """Media and energy of ``moved_runs``; node series in the lifetimes of ``all_runs``; their artifacts."""
        hosts: set[str] = set()
        for run in moved_runs:
            self._media(run)
            hosts |= self._energy(run)
        hosts |= self._system(all_runs)
        for host in sorted(hosts):
            self._node(host)
        for project in sorted({r["project"] for r in all_runs}):
            self._artifacts(project)
        return self.extras

    # ------------------------------------------------------------------ files
    def _place(self, source: Path, relative: str) -> bool:
        """Link (or copy) ``source`` to ``out/relative``; False when the source is gone."""
        target = self.out / relative
        if relative in self.extras.files:
            return True
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if target.exists():
                target.unlink()
            if not self.link:
                raise OSError("a copy was asked for")
            os.link(source, target)
        except FileNotFoundError:
            return False
        except OSError:
            try:
                shutil.copyfile(source, target)
            except FileNotFoundError:
                return False
        self.extras.files.append(relative)
        return True

    # ------------------------------------------------------------------ media
    def _media(self, run: dict[str, Any]) -> None:
        name = f"{run['project']}/{run['run_key']}"
        done = self.marks.media.setdefault(name, {})
        rows = []
        for media_id, key, step, ts, kind, meta, path, body_len in self.conn.execute(
            "SELECT m.id, k.name, m.step, m.ts, m.kind, m.meta, m.path, length(m.body) FROM media m "
            "JOIN keys k ON k.id = m.key_id WHERE m.run_id=? ORDER BY m.id",
            (run["id"],),
        ):
            print_ = hashlib.sha1(f"{ts!r}|{kind}|{step}|{meta}|{path}|{body_len}".encode()).hexdigest()[:12]
            if done.get(str(media_id)) == print_:
                continue
            files = [p for p in [path, *json.loads(meta).get("files", [])] if p]
            if not all(self._place(self.media_dir / p, media_file(p)) for p in files):
                continue  # replaced after this snapshot: the newer row is exported by the next pass
            found: Any = self.conn.execute("SELECT body FROM media WHERE id=?", (media_id,)).fetchone()
            body = found[0]
            self.marks.media_seq += 1
            rows.append(
                {
                    "project": run["project"],
                    "run_id": run["run_key"],
                    "key": key,
                    "step": step,
                    "timestamp": ts,
                    "kind": kind,
                    "meta": meta,
                    "body": None if body is None else bytes(body),
                    "path": path,
                    "file": media_file(path) if path else None,
                    "seq": self.marks.media_seq,
                }
            )
            done[str(media_id)] = print_
        if rows:
            self.extras.media += len(rows)
            folder = run_folder("media", run["project"], run["run_key"])
            self.extras.parts[folder] = pa.Table.from_pylist(rows, schema=MEDIA_SCHEMA)

    def _table(self, path: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        self.extras.tables[path] = pa.Table.from_pylist(rows, schema=schema)

    # ------------------------------------------------------------------ energy
    def _energy(self, run: dict[str, Any]) -> set[str]:
        rows: list[Any] = self.conn.execute(
            "SELECT n.host, g.uuid, g.idx, g.name, rg.via, rg.joules, rg.estimated_joules, rg.gpu_seconds, "
            "rg.first_ts, rg.last_ts, e.grid_g_per_kwh, e.location, e.updated_at FROM run_gpus rg "
            "JOIN gpus g ON g.id = rg.gpu_id JOIN nodes n ON n.id = g.node_id "
            "LEFT JOIN run_energy e ON e.run_id = rg.run_id WHERE rg.run_id=? ORDER BY n.host, g.idx, g.uuid",
            (run["id"],),
        ).fetchall()
        name = f"{run['project']}/{run['run_key']}"
        print_ = hashlib.sha1(repr(rows).encode()).hexdigest()[:12]
        if not rows or self.marks.energy.get(name) == print_:
            return set()
        columns = [c for c in ENERGY_SCHEMA.names if c not in ("project", "run_id")]
        records = [{"project": run["project"], "run_id": run["run_key"], **dict(zip(columns, r))} for r in rows]
        self._table(f"{run_folder('energy', run['project'], run['run_key'])}/energy.parquet", records, ENERGY_SCHEMA)
        self.marks.energy[name] = print_
        return {r[0] for r in rows}

    # ------------------------------------------------------------------ node series
    def _system(self, runs: list[dict[str, Any]]) -> set[str]:
        """Node series values written since the host's watermark that fall inside a run's lifetime."""
        windows: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            if run.get("host"):
                end = run["ended_at"] if run["ended_at"] is not None else float("inf")
                windows.setdefault(run["host"], []).append((run["created_at"], end))
        hosts = set()
        for host, spans in sorted(windows.items()):
            done = self.marks.system.get(host, 0)
            parts: list[pa.Table] = []
            last = done
            for chunk_id, key, ts_min, ts_max, times, vals in self.conn.execute(
                "SELECT c.id, k.name, c.ts_min, c.ts_max, c.times, c.vals FROM system_chunks c "
                "JOIN nodes n ON n.id = c.node_id JOIN keys k ON k.id = c.key_id WHERE n.host=? AND c.id > ? "
                "ORDER BY c.id",
                (host, done),
            ):
                last = chunk_id
                live = [(a, b) for a, b in spans if a <= ts_max and b >= ts_min]
                if not live:
                    continue
                t, v = decode_floats(times), decode_floats(vals)
                keep = np.zeros(t.size, bool)
                for a, b in live:
                    keep |= (t >= a) & (t <= b)
                if keep.any():
                    n = int(keep.sum())
                    parts.append(pa.table([[host] * n, [key] * n, t[keep], v[keep]], schema=SYSTEM_SCHEMA))
            if last != done:
                self.marks.system[host] = last
                self.extras.system_read = True
            if parts:
                table = pa.concat_tables(parts).sort_by([("key", "ascending"), ("timestamp", "ascending")])
                self.extras.parts[partition("system", host=host)] = table
                self.extras.system_points += table.num_rows
                hosts.add(host)
        return hosts

    def _node(self, host: str) -> None:
        """The node's row and its GPUs, written whenever its series or a run's energy is."""
        node = self.conn.execute("SELECT id, first_seen, last_seen FROM nodes WHERE host=?", (host,)).fetchone()
        if node is None:
            return
        self._table(
            f"{partition('nodes', host=host)}/node.parquet",
            [{"host": host, "first_seen": node[1], "last_seen": node[2]}],
            NODES_SCHEMA,
        )
        gpus = [
            dict(zip(GPUS_SCHEMA.names, (host, *row)))
            for row in self.conn.execute(
                "SELECT uuid, idx, name, memory_total, power_limit_w, first_seen, last_seen FROM gpus "
                "WHERE node_id=? ORDER BY idx, uuid",
                (node[0],),
            )
        ]
        if gpus:
            self._table(f"{partition('gpus', host=host)}/gpus.parquet", gpus, GPUS_SCHEMA)

    # ------------------------------------------------------------------ artifacts
    def _artifacts(self, project: str) -> None:
        done = self.marks.artifacts.get(project, 0)
        uploaded = {
            sha
            for (sha,) in self.conn.execute(
                "SELECT DISTINCT e.sha256 FROM artifact_entries e JOIN artifact_versions v ON v.id = e.version_id "
                "JOIN artifacts a ON a.id = v.artifact_id JOIN projects p ON p.id = a.project_id "
                "WHERE p.name=? AND v.id <= ?",
                (project, done),
            )
        }
        newest = done
        versions: list[Any] = self.conn.execute(
            "SELECT v.id, a.name, a.type, v.version, v.digest, v.size, v.file_count, v.description, v.metadata, "
            "rp.name, r.run_key, v.created_at FROM artifact_versions v JOIN artifacts a ON a.id = v.artifact_id "
            "JOIN projects p ON p.id = a.project_id LEFT JOIN runs r ON r.id = v.producer_run_id "
            "LEFT JOIN projects rp ON rp.id = r.project_id WHERE p.name=? AND v.id > ? ORDER BY v.id",
            (project, done),
        ).fetchall()
        for row in versions:
            version_id, name, version = int(row[0]), str(row[1]), int(row[3])
            entries = [
                {"name": n, "sha256": s, "size": z}
                for n, s, z in self.conn.execute(
                    "SELECT name, sha256, size FROM artifact_entries WHERE version_id=? ORDER BY name", (version_id,)
                )
            ]
            for entry in entries:
                sha = entry["sha256"]
                if sha in uploaded:
                    continue
                if self._place(blob_path(self.blobs_dir, sha), blob_file(sha)):
                    self.extras.blobs += 1
                else:
                    log.warning(
                        "artifact %s/%s v%d: blob %s is missing locally; not synced", project, name, version, sha[:12]
                    )
                uploaded.add(sha)
            record = dict(zip(VERSIONS_SCHEMA.names, (project, *row[1:], entries)))
            path = f"{partition('artifacts/versions', project=project, name=name)}/v{version}.parquet"
            self._table(path, [record], VERSIONS_SCHEMA)
            self.extras.artifact_versions += 1
            newest = version_id
        if newest != done:
            self.marks.artifacts[project] = newest
        artifacts: list[Any] = self.conn.execute(
            "SELECT a.id, a.name FROM artifacts a JOIN projects p ON p.id = a.project_id WHERE p.name=? "
            "ORDER BY a.name",
            (project,),
        ).fetchall()
        for artifact_id, artifact in artifacts:
            self._artifact_links(project, int(artifact_id), str(artifact))

    def _artifact_links(self, project: str, artifact_id: int, name: str) -> None:
        """An artifact's aliases and usage, rewritten whole when either changed."""
        aliases = [
            {"project": project, "name": name, "alias": alias, "version": version}
            for alias, version in self.conn.execute(
                "SELECT al.alias, v.version FROM artifact_aliases al JOIN artifact_versions v ON v.id = al.version_id "
                "WHERE al.artifact_id=? ORDER BY al.alias",
                (artifact_id,),
            )
        ]
        usage = [
            {"project": project, "name": name, "version": v, "run_project": p, "run_id": k, "used_at": t}
            for v, p, k, t in self.conn.execute(
                "SELECT v.version, p.name, r.run_key, u.used_at FROM artifact_usage u "
                "JOIN artifact_versions v ON v.id = u.version_id JOIN runs r ON r.id = u.run_id "
                "JOIN projects p ON p.id = r.project_id WHERE v.artifact_id=? ORDER BY v.version, p.name, r.run_key",
                (artifact_id,),
            )
        ]
        marker = f"{project}/{name}"
        print_ = hashlib.sha1(json.dumps([aliases, usage]).encode()).hexdigest()[:12]
        if self.marks.artifact_links.get(marker) == print_:
            return
        where = {"project": project, "name": name}
        self._table(f"{partition('artifacts/aliases', **where)}/aliases.parquet", aliases, ALIASES_SCHEMA)
        self._table(f"{partition('artifacts/usage', **where)}/usage.parquet", usage, USAGE_SCHEMA)
        self.marks.artifact_links[marker] = print_


def write_extras(extras: Extras, root: Path, source: str, tick: int) -> list[str]:
    """Write the tables of ``extras`` under ``root`` (part names get ``source`` and ``tick``); returns every path."""
    written = []
    named = {**extras.tables, **{f"{d}/{part_name(source, tick)}": t for d, t in extras.parts.items()}}
    for relative, table in named.items():
        write_atomic(table, root / relative)
        written.append(relative)
    return [*written, *extras.files]
