"""``trackiod pull`` for the layout's other kinds: media rows and files, energy, node series, artifacts and blobs.

Called by :mod:`trackiod.sync.pull` inside its one write transaction, after the runs were restored. Files (media,
blobs) are copied into the data directory under their content-addressed names before the transaction
commits; a file that already exists under its name has that content and is kept.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from trackio_shim.errors import UsageError
from trackiod.store.blobs import blob_path, file_sha256
from trackiod.store.codec import CHUNK_POINTS, decode_floats, encode_floats
from trackiod.store.writer import Store
from trackiod.sync.layout_kinds import (
    ALIASES_SCHEMA,
    ENERGY_SCHEMA,
    GPUS_SCHEMA,
    MEDIA_SCHEMA,
    NODES_SCHEMA,
    SYSTEM_SCHEMA,
    USAGE_SCHEMA,
    VERSIONS_SCHEMA,
    blob_file,
    media_file,
)

log = logging.getLogger("trackiod.pull")


def read_kind(root: Path, kind: str, schema: pa.Schema) -> pa.Table:
    """Every Parquet file under ``root/kind`` as one table (empty when there is none).

    Reads every layout version: the files carry their names as columns, so the folders (``key=value`` from
    version 3, plain names before) are not parsed; a column a file predates (``rank_points``' peers, the
    ``runs`` job columns) reads as null. Hidden files (a writer's ``.tmp``) are skipped.
    """
    folder = root / kind
    if not folder.is_dir():
        return schema.empty_table()
    found = (f for f in folder.rglob("*.parquet") if not f.relative_to(folder).name.startswith((".", "_")))
    files = sorted(str(f) for f in found)
    return ds.dataset(files, format="parquet", schema=schema).to_table() if files else schema.empty_table()


def _safe(relative: str) -> str:
    """A path from the dataset, checked to stay inside the folder it is joined to.

    Raises:
        UsageError: the path is absolute or climbs out.
    """
    parts = Path(relative).parts
    if not relative or Path(relative).is_absolute() or ".." in parts:
        raise UsageError(f"the dataset names a file outside its folder ({relative!r}); it is not a trackiod dataset")
    return relative


def _copy_in(source: Path, target: Path, read_only: bool = False) -> bool:
    """Copy ``source`` to ``target`` atomically unless it exists; False when the dataset lacks it."""
    if target.exists():
        return True
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, tmp)
    if read_only:
        os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    return True


def _local_run(store: Store, project: str | None, run_key: str | None) -> int | None:
    if project is None or run_key is None:
        return None
    row = store.conn.execute(
        "SELECT r.id FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=? AND r.run_key=?",
        (project, run_key),
    ).fetchone()
    return None if row is None else int(row[0])


def restore_kinds(store: Store, home: Path, root: Path, run_ids: dict[tuple[str, str], int]) -> dict[str, int]:
    """Restore media and energy of the runs in ``run_ids``, every node series and artifact; returns counts."""
    counts = {"media": _media(store, home / "media", root, run_ids)}
    _nodes(store, root)
    counts["energy"] = _energy(store, root, run_ids)
    counts["system_points"] = _system(store, root)
    counts["artifact_versions"] = _artifacts(store, home / "blobs", root)
    return counts


# ---------------------------------------------------------------------------------------------- media
def _media(store: Store, media_dir: Path, root: Path, run_ids: dict[tuple[str, str], int]) -> int:
    table = read_kind(root, "media", MEDIA_SCHEMA)
    if table.num_rows == 0:
        return 0
    latest: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in table.sort_by([("seq", "ascending")]).to_pylist():
        if (row["project"], row["run_id"]) in run_ids:
            latest[(row["project"], row["run_id"], row["key"], row["step"])] = row  # the highest seq wins
    missing = 0
    for (project, run_key, key, step), row in latest.items():
        for path in [row["path"], *json.loads(row["meta"]).get("files", [])]:
            if path and not _copy_in(root / media_file(_safe(path)), media_dir / path):
                missing += 1
        store.conn.execute(
            "INSERT INTO media(run_id, key_id, step, ts, kind, meta, body, path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_ids[(project, run_key)],
                store.key_id(key),
                step,
                row["timestamp"],
                row["kind"],
                row["meta"],
                row["body"],
                row["path"],
            ),
        )
    if missing:
        log.warning("the dataset lacks %d media file(s) its rows name; those values show without their file", missing)
    return len(latest)


# ---------------------------------------------------------------------------------------------- nodes, energy
def _node_id(store: Store, host: str, first: float, last: float) -> int:
    conn = store.conn
    conn.execute(
        "INSERT INTO nodes(host, first_seen, last_seen) VALUES (?, ?, ?) ON CONFLICT(host) DO UPDATE SET "
        "first_seen=MIN(first_seen, excluded.first_seen), last_seen=MAX(last_seen, excluded.last_seen)",
        (host, first, last),
    )
    row: Any = conn.execute("SELECT id FROM nodes WHERE host=?", (host,)).fetchone()
    return int(row[0])


def _gpu_id(store: Store, node_id: int, gpu: dict[str, Any]) -> int:
    store.conn.execute(
        "INSERT INTO gpus(node_id, uuid, idx, name, memory_total, power_limit_w, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(uuid) DO NOTHING",
        (
            node_id,
            gpu["uuid"],
            gpu["index"],
            gpu["name"],
            gpu.get("memory_total"),
            gpu.get("power_limit_w"),
            gpu["first_seen"],
            gpu["last_seen"],
        ),
    )
    row: Any = store.conn.execute("SELECT id FROM gpus WHERE uuid=?", (gpu["uuid"],)).fetchone()
    return int(row[0])


def _nodes(store: Store, root: Path) -> None:
    for node in read_kind(root, "nodes", NODES_SCHEMA).to_pylist():
        _node_id(store, node["host"], node["first_seen"], node["last_seen"])
    for gpu in read_kind(root, "gpus", GPUS_SCHEMA).to_pylist():
        _gpu_id(store, _node_id(store, gpu["host"], gpu["first_seen"], gpu["last_seen"]), gpu)


def _energy(store: Store, root: Path, run_ids: dict[tuple[str, str], int]) -> int:
    restored = set()
    for row in read_kind(root, "energy", ENERGY_SCHEMA).to_pylist():
        run_id = run_ids.get((row["project"], row["run_id"]))
        if run_id is None:
            continue
        node_id = _node_id(store, row["host"], row["first_ts"], row["last_ts"])
        gpu = {"uuid": row["gpu_uuid"], "index": row["gpu_index"], "name": row["gpu_name"]}
        gpu_id = _gpu_id(store, node_id, {**gpu, "first_seen": row["first_ts"], "last_seen": row["last_ts"]})
        store.conn.execute(
            "INSERT OR REPLACE INTO run_gpus(run_id, gpu_id, via, joules, estimated_joules, gpu_seconds, first_ts, "
            "last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                gpu_id,
                row["via"],
                row["joules"],
                row["estimated_joules"],
                row["gpu_seconds"],
                row["first_ts"],
                row["last_ts"],
            ),
        )
        if row["grid_g_per_kwh"] is not None:
            store.conn.execute(
                "INSERT OR REPLACE INTO run_energy(run_id, grid_g_per_kwh, location, updated_at) VALUES (?, ?, ?, ?)",
                (run_id, row["grid_g_per_kwh"], row["location"] or "", row["updated_at"]),
            )
        restored.add(run_id)
    return len(restored)


# ---------------------------------------------------------------------------------------------- node series
def _system(store: Store, root: Path) -> int:
    """Node series, skipping values already stored locally at the same (host, key, timestamp)."""
    table = read_kind(root, "system", SYSTEM_SCHEMA)
    if table.num_rows == 0:
        return 0
    table = table.sort_by([("host", "ascending"), ("key", "ascending"), ("timestamp", "ascending")])
    written = 0
    for host in pc.unique(table["host"]).to_pylist():
        of_host = table.filter(pc.equal(table["host"], host))
        times_all = of_host["timestamp"].to_numpy()
        node_id = _node_id(store, host, float(times_all.min()), float(times_all.max()))
        for key in pc.unique(of_host["key"]).to_pylist():
            series = of_host.filter(pc.equal(of_host["key"], key))
            times, vals = series["timestamp"].to_numpy(), series["value"].to_numpy()
            times, first = np.unique(times, return_index=True)  # a value exported twice is one value
            vals = vals[first]
            key_id = store.key_id(key)
            have = [
                decode_floats(t)
                for (t,) in store.conn.execute(
                    "SELECT times FROM system_chunks WHERE node_id=? AND key_id=?", (node_id, key_id)
                )
            ]
            if have:
                new = ~np.isin(times, np.concatenate(have))
                times, vals = times[new], vals[new]
            for start in range(0, times.size, CHUNK_POINTS):
                t, v = times[start : start + CHUNK_POINTS], vals[start : start + CHUNK_POINTS]
                store.conn.execute(
                    "INSERT INTO system_chunks(node_id, key_id, n, ts_min, ts_max, times, vals) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        node_id,
                        key_id,
                        t.size,
                        float(t[0]),
                        float(t[-1]),
                        encode_floats(t),
                        encode_floats(v),
                    ),
                )
            written += int(times.size)
    return written


# ---------------------------------------------------------------------------------------------- artifacts
def _artifacts(store: Store, blobs_dir: Path, root: Path) -> int:
    conn = store.conn
    restored = 0
    ids: dict[tuple[str, str, int], int] = {}
    for row in read_kind(root, "artifacts/versions", VERSIONS_SCHEMA).sort_by("created_at").to_pylist():
        project_id = store.project_id(row["project"])
        conn.execute(
            "INSERT OR IGNORE INTO artifacts(project_id, name, type, created_at) VALUES (?, ?, ?, ?)",
            (project_id, row["name"], row["type"], row["created_at"]),
        )
        found: Any = conn.execute(
            "SELECT id FROM artifacts WHERE project_id=? AND name=?", (project_id, row["name"])
        ).fetchone()
        artifact_id = found[0]
        where = f"artifact {row['project']}/{row['name']} v{row['version']}"
        have = conn.execute(
            "SELECT id, digest FROM artifact_versions WHERE artifact_id=? AND version=?", (artifact_id, row["version"])
        ).fetchone()
        if have is not None:
            if have[1] != row["digest"]:
                raise UsageError(
                    f"{where} exists locally with other content; pull into another data directory (--home)"
                )
            ids[(row["project"], row["name"], row["version"])] = int(have[0])
            continue
        for entry in row["entries"]:
            sha = entry["sha256"]
            source = root / blob_file(_safe(sha))
            target = blob_path(blobs_dir, sha)
            if not target.exists() and source.is_file() and file_sha256(source) != sha:
                raise UsageError(f"{where}: the dataset's blob {sha[:12]} does not hold the content its name says")
            if _copy_in(source, target, read_only=True):
                conn.execute(
                    "INSERT OR IGNORE INTO blobs(sha256, size, created_at) VALUES (?, ?, ?)",
                    (sha, entry["size"], row["created_at"]),
                )
            else:
                log.warning("%s: the dataset lacks blob %s; that file cannot be downloaded", where, sha[:12])
        conn.execute(
            "INSERT INTO artifact_versions(artifact_id, version, digest, size, file_count, description, metadata, "
            "producer_run_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                artifact_id,
                row["version"],
                row["digest"],
                row["size"],
                row["file_count"],
                row["description"],
                row["metadata"],
                _local_run(store, row["producer_project"], row["producer_run_id"]),
                row["created_at"],
            ),
        )
        version_id = int(conn.last_insert_rowid())
        conn.executemany(
            "INSERT INTO artifact_entries(version_id, name, sha256, size) VALUES (?, ?, ?, ?)",
            [(version_id, e["name"], e["sha256"], e["size"]) for e in row["entries"]],
        )
        ids[(row["project"], row["name"], row["version"])] = version_id
        restored += 1
    for alias in read_kind(root, "artifacts/aliases", ALIASES_SCHEMA).to_pylist():
        aliased = ids.get((alias["project"], alias["name"], alias["version"]))
        if aliased is not None:
            conn.execute(
                "INSERT INTO artifact_aliases(artifact_id, alias, version_id) SELECT artifact_id, ?, id "
                "FROM artifact_versions WHERE id=? ON CONFLICT DO NOTHING",
                (alias["alias"], aliased),
            )
    for use in read_kind(root, "artifacts/usage", USAGE_SCHEMA).to_pylist():
        used = ids.get((use["project"], use["name"], use["version"]))
        run_id = _local_run(store, use["run_project"], use["run_id"])
        if used is not None and run_id is not None:
            conn.execute(
                "INSERT OR IGNORE INTO artifact_usage(version_id, run_id, used_at) VALUES (?, ?, ?)",
                (used, run_id, use["used_at"]),
            )
    return restored
