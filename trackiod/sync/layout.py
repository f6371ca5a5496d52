"""The open Parquet layout (docs/sync.md): runs, points and texts changed since a watermark, as files.

Everything here reads through a query-only connection inside one read transaction, so what is exported is
one consistent snapshot of the database while the daemon keeps writing. A series' chunks, read in id order,
are an append-only log of every value written to it; a watermark is the number of values already exported
per series, plus the highest text revision (``texts.rev``) exported, plus each run's ``updated_at``.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apsw
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trackiod.read.runs import list_runs
from trackiod.store.codec import decode_floats, decode_steps

#: Version of the file layout; written to ``trackiod.json`` at the dataset's root. Version 2 added media,
#: energy, node series and artifacts (new folders only: a version 1 dataset reads as a version 2 one without them).
LAYOUT_VERSION = 2

POINTS_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("key", pa.string()),
        ("step", pa.int64()),
        ("timestamp", pa.float64()),
        ("value", pa.float64()),
        ("seq", pa.int64()),
    ]
)
TEXTS_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("key", pa.string()),
        ("step", pa.int64()),
        ("timestamp", pa.float64()),
        ("value", pa.string()),
        ("seq", pa.int64()),
    ]
)
RUNS_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("name", pa.string()),
        ("state", pa.string()),
        ("exit_code", pa.int64()),
        ("created_at", pa.float64()),
        ("updated_at", pa.float64()),
        ("ended_at", pa.float64()),
        ("host", pa.string()),
        ("group", pa.string()),
        ("job_type", pa.string()),
        ("notes", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("mode", pa.string()),
        ("space_id", pa.string()),
        ("dataset_id", pa.string()),
        ("last_step", pa.int64()),
        ("config", pa.string()),
        ("summary", pa.string()),
        ("metric_defs", pa.string()),
        ("summary_state", pa.string()),
    ]
)


def segment(name: str) -> str:
    """A project or run id as one path segment (percent-encoded; the files carry the real names)."""
    return quote(name, safe="-_.~@+=,")


def run_path(project: str, run_key: str) -> str:
    return f"runs/{segment(project)}/{segment(run_key)}.parquet"


def part_path(kind: str, project: str, run_key: str, source: str, tick: int) -> str:
    """``points/…`` or ``texts/…``: a tick's new rows of one run; named by tick, so a retry overwrites it."""
    return f"{kind}/{segment(project)}/{segment(run_key)}/{source}-{tick:08d}.parquet"


@dataclass
class Marks:
    """What was already exported: values per series, the highest text revision, each run's updated_at, and the
    watermarks of the other kinds (trackiod.sync.layout_kinds)."""

    series: dict[str, dict[str, int]] = field(default_factory=dict)  # "project/run_key" -> {key: values}
    text_rev: int = 0
    runs: dict[str, float] = field(default_factory=dict)  # "project/run_key" -> updated_at
    media: dict[str, dict[str, str]] = field(default_factory=dict)  # "project/run_key" -> {media id: fingerprint}
    media_seq: int = 0
    energy: dict[str, str] = field(default_factory=dict)  # "project/run_key" -> fingerprint of its energy rows
    system: dict[str, int] = field(default_factory=dict)  # host -> last system_chunks.id read
    artifacts: dict[str, int] = field(default_factory=dict)  # project -> last artifact_versions.id exported
    artifact_links: dict[str, str] = field(default_factory=dict)  # "project/name" -> fingerprint of aliases, usage

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Marks:
        marks = cls()
        for name in cls.__dataclass_fields__:
            if name in data:
                setattr(marks, name, copy.deepcopy(data[name]))
        marks.text_rev, marks.media_seq = int(marks.text_rev), int(marks.media_seq)
        return marks


@dataclass
class RunDelta:
    """One run's changes: its row, and its new points and texts (None when there are none)."""

    run: dict[str, Any]
    points: pa.Table | None
    texts: pa.Table | None


def run_record(run: dict[str, Any]) -> dict[str, Any]:
    """A ``runs`` row (read.runs.list_runs shape, plus ``summary_state``) as a row of RUNS_SCHEMA."""
    return {
        "project": run["project"],
        "run_id": run["run_key"],
        "name": run["name"],
        "state": run["state"],
        "exit_code": run["exit_code"],
        "created_at": run["created_at"],
        "updated_at": run["updated_at"],
        "ended_at": run["ended_at"],
        "host": run["host"],
        "group": run["group_name"],
        "job_type": run["job_type"],
        "notes": run["notes"],
        "tags": [str(t) for t in run["tags"]],
        "mode": run["mode"],
        "space_id": run["space_id"],
        "dataset_id": run["dataset_id"],
        "last_step": run["last_step"],
        "config": json.dumps(run["config"], default=str),
        "summary": json.dumps(run["summary"], default=str),
        "metric_defs": json.dumps(run["metric_defs"], default=str),
        "summary_state": run.get("summary_state") or "{}",
    }


def runs_with_state(conn: apsw.Connection) -> list[dict[str, Any]]:
    """Every run (read.runs.list_runs) with its internal ``summary_state`` kept, for sync and export."""
    states: dict[Any, Any] = {row[0]: row[1] for row in conn.execute("SELECT id, summary_state FROM runs")}
    runs = list_runs(conn)
    for run in runs:
        run["summary_state"] = states.get(run["id"], "{}")
    return runs


def _series_delta(conn: apsw.Connection, run_id: int, key_id: int, done: int) -> tuple[np.ndarray, ...]:
    """Values of one series' log after the first ``done``: (steps, times, values, seq)."""
    parts: list[tuple[bytes, bytes, bytes, int]] = []
    seen = 0
    first = done
    for n, steps, times, vals in conn.execute(
        "SELECT n, steps, times, vals FROM chunks WHERE run_id=? AND key_id=? ORDER BY id", (run_id, key_id)
    ):
        if seen + n <= done:
            seen += n
            continue
        skip = max(0, done - seen)
        parts.append((steps, times, vals, skip))
        seen += n
    if not parts:
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        return empty_i, empty_f, empty_f, empty_i
    steps_out = np.concatenate([decode_steps(p[0])[p[3] :] for p in parts])
    times_out = np.concatenate([decode_floats(p[1])[p[3] :] for p in parts])
    vals_out = np.concatenate([decode_floats(p[2])[p[3] :] for p in parts])
    seq = np.arange(first, first + steps_out.size, dtype=np.int64)
    return steps_out, times_out, vals_out, seq


def _column(name: str, count: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(count, np.int32), pa.array([name])).cast(pa.string())


def collect(conn: apsw.Connection, runs: list[dict[str, Any]], marks: Marks, force: bool = False) -> list[RunDelta]:
    """The changes of ``runs`` since ``marks`` (all of them with a fresh Marks); updates ``marks`` in place.

    Call inside a read transaction so the runs, series and texts read are one snapshot.
    """
    deltas = []
    row = conn.execute("SELECT MAX(rev) FROM texts").fetchone()
    newest_rev = int(row[0] or 0) if row else 0
    for run in runs:
        name = f"{run['project']}/{run['run_key']}"
        if not force and marks.runs.get(name) == run["updated_at"]:
            continue
        done = marks.series.setdefault(name, {})
        point_parts: list[pa.Table] = []
        for key, key_id, total in conn.execute(
            "SELECT k.name, c.key_id, SUM(c.n) FROM chunks c JOIN keys k ON k.id = c.key_id WHERE c.run_id=? "
            "GROUP BY c.key_id",
            (run["id"],),
        ):
            if total <= done.get(key, 0):
                continue
            steps, times, vals, seq = _series_delta(conn, run["id"], key_id, done.get(key, 0))
            n = steps.size
            point_parts.append(
                pa.table(
                    [
                        _column(run["project"], n),
                        _column(run["run_key"], n),
                        _column(key, n),
                        steps,
                        times,
                        vals,
                        seq,
                    ],
                    schema=POINTS_SCHEMA,
                )
            )
            done[key] = int(total)
        text_rows = conn.execute(
            "SELECT k.name, t.step, t.ts, t.value, t.rev FROM texts t JOIN keys k ON k.id = t.key_id "
            "WHERE t.run_id=? AND t.rev > ? ORDER BY t.rev",
            (run["id"], marks.text_rev),
        ).fetchall()
        texts = None
        if text_rows:
            columns = list(zip(*text_rows))
            texts = pa.table(
                {
                    "project": [run["project"]] * len(text_rows),
                    "run_id": [run["run_key"]] * len(text_rows),
                    "key": list(columns[0]),
                    "step": list(columns[1]),
                    "timestamp": list(columns[2]),
                    "value": list(columns[3]),
                    "seq": list(columns[4]),
                },
                schema=TEXTS_SCHEMA,
            )
        points = pa.concat_tables(point_parts) if point_parts else None
        deltas.append(RunDelta(run, points, texts))
        marks.runs[name] = run["updated_at"]
    marks.text_rev = max(marks.text_rev, newest_rev)
    return deltas


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, fsync it and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_deltas(deltas: list[RunDelta], root: Path, source: str, tick: int) -> list[str]:
    """Write ``deltas`` into ``root`` in the dataset layout; returns the paths written, relative to ``root``."""
    written = []
    for delta in deltas:
        project, run_key = delta.run["project"], delta.run["run_key"]
        files = [(run_path(project, run_key), pa.Table.from_pylist([run_record(delta.run)], schema=RUNS_SCHEMA))]
        if delta.points is not None:
            files.append((part_path("points", project, run_key, source, tick), delta.points))
        if delta.texts is not None:
            files.append((part_path("texts", project, run_key, source, tick), delta.texts))
        for relative, table in files:
            write_atomic(table, root / relative)
            written.append(relative)
    return written


def layout_marker() -> bytes:
    from trackiod import __version__

    return json.dumps({"layout_version": LAYOUT_VERSION, "written_by": f"trackiod {__version__}"}, indent=1).encode()
