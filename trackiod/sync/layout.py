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
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trackiod.read.runs import list_runs
from trackiod.store.codec import decode_floats, decode_steps
from trackiod.store.schema import RANK_KEY_OFFSET, dict_rows

#: Version of the file layout; written to ``trackiod.json`` at the dataset's root. Version 2 added media,
#: energy, node series and artifacts (new folders only: a version 1 dataset reads as a version 2 one without them).
#: Version 3 names folders ``key=value`` (Hive partitions: ``points/project=p/run_id=r/``) so query engines
#: prune, and adds every rank's series (``rank_points``, ``rank_texts``) and ``run_ranks``; readers of this
#: module read all three (every file carries its names as columns, so the folders are never parsed). The
#: metric-context series (``context_points``, ``context_texts``) were added within version 3: new folders only,
#: which a reader that predates them ignores.
LAYOUT_VERSION = 3

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
        ("job_key", pa.string()),
        ("world_size", pa.int64()),
    ]
)
#: Rank r > 0's series of a distributed run (docs/ranks.md): ``points`` / ``texts`` keep rank 0's, as the
#: local store does, so every query written for one process still means rank 0.
RANK_POINTS_SCHEMA = POINTS_SCHEMA.append(pa.field("rank", pa.int64()))
RANK_TEXTS_SCHEMA = TEXTS_SCHEMA.append(pa.field("rank", pa.int64()))
#: Every series logged with ``context=`` (docs/storage.md, "Metric context"), of any rank: the context as
#: canonical JSON text (sorted keys, no spaces), so each ``(key, context, rank)`` is one series. They live apart
#: from ``points`` so that a query over ``points`` still means the series the script logged without a context.
CONTEXT_POINTS_SCHEMA = RANK_POINTS_SCHEMA.append(pa.field("context", pa.string()))
CONTEXT_TEXTS_SCHEMA = RANK_TEXTS_SCHEMA.append(pa.field("context", pa.string()))
#: Which ranks joined a distributed run (``run_ranks``); replaced whole when the run changes.
RUN_RANKS_SCHEMA = pa.schema(
    [
        ("project", pa.string()),
        ("run_id", pa.string()),
        ("rank", pa.int64()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("local_rank", pa.int64()),
        ("joined_at", pa.float64()),
        ("exit_code", pa.int64()),
        ("ended_at", pa.float64()),
        ("config", pa.string()),
    ]
)


def segment(name: str) -> str:
    """A project or run id as one path segment (percent-encoded; the files carry the real names)."""
    return quote(name, safe="-_.~@+=,")


def partition_value(name: str) -> str:
    """A value as a Hive partition segment (``key=<value>``): percent-encoded, ``=`` and ``/`` included,
    which DuckDB, pyarrow, polars and Spark decode back to the value the files' columns hold."""
    return quote(name, safe="-_.~@+,")


def partition(kind: str, **values: str) -> str:
    """``kind/key=value/...``: the folder of one partition (``partition("points", project=p, run_id=r)``)."""
    return "/".join([kind, *(f"{key}={partition_value(value)}" for key, value in values.items())])


def run_folder(kind: str, project: str, run_key: str) -> str:
    """The folder of one run's files of ``kind``: ``kind/project=<project>/run_id=<run_key>``."""
    return partition(kind, project=project, run_id=run_key)


def part_name(source: str, tick: int) -> str:
    """A part file's name: the node that wrote it and its tick, so a retried tick overwrites its attempt."""
    return f"{source}-{tick:08d}.parquet"


def run_path(project: str, run_key: str) -> str:
    return f"{run_folder('runs', project, run_key)}/run.parquet"


def part_path(kind: str, project: str, run_key: str, source: str, tick: int) -> str:
    """``points/…``, ``texts/…``, ``rank_points/…``: a tick's new rows of one run."""
    return f"{run_folder(kind, project, run_key)}/{part_name(source, tick)}"


@dataclass
class Marks:
    """What was already exported: values per series, the highest text revision, each run's updated_at, and the
    watermarks of the other kinds (trackiod.sync.layout_kinds)."""

    series: dict[str, dict[str, int]] = field(default_factory=dict)  # "project/run_key" -> {key: values}
    rank_series: dict[str, dict[str, int]] = field(default_factory=dict)  # "project/run_key" -> {"rank/key": values}
    # "project/run_key" -> {"rank/context/key": values}; a run missing here was synced before context series
    # were exported, and is looked at once more so that they reach the dataset.
    context_series: dict[str, dict[str, int]] = field(default_factory=dict)
    text_rev: int = 0
    context_text_rev: int = 0  # its own revision mark, 0 in a watermark older than context series
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
        marks.context_text_rev = int(marks.context_text_rev)
        return marks


@dataclass
class RunDelta:
    """One run's changes: its row, its new points and texts (None when there are none), the same of its ranks
    > 0 and of its context series, and its ``run_ranks`` rows (None for a run logged by one process)."""

    run: dict[str, Any]
    points: pa.Table | None
    texts: pa.Table | None
    rank_points: pa.Table | None = None
    rank_texts: pa.Table | None = None
    ranks: pa.Table | None = None
    context_points: pa.Table | None = None
    context_texts: pa.Table | None = None


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
        "job_key": run.get("job_key"),
        "world_size": run.get("world_size"),
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


#: Rank 0's numeric series of a run: (rank, key, context, series key id, values stored).
_PLAIN_SERIES = (
    "SELECT 0, k.name, NULL, c.key_id, SUM(c.n) FROM chunks c JOIN keys k ON k.id = c.key_id WHERE c.run_id=:run "
    "GROUP BY c.key_id"
)
#: Ranks > 0: their series key ids are RANK_KEY_OFFSET + rank_keys.id (docs/ranks.md, "Storage").
_RANK_SERIES = (
    "SELECT rk.rank, k.name, NULL, c.key_id, SUM(c.n) FROM chunks c "
    f"JOIN rank_keys rk ON c.key_id = {RANK_KEY_OFFSET} + rk.id JOIN keys k ON k.id = rk.key_id "
    "WHERE c.run_id=:run GROUP BY c.key_id"
)
#: Series with a context, every rank's: rank 0's have key id -key_contexts.id, a rank r > 0's the rank key of that
#: negative id (docs/storage.md, "Metric context").
_CONTEXT_SERIES = (
    "SELECT 0, kc.base_name, x.body, c.key_id, SUM(c.n) FROM chunks c JOIN key_contexts kc ON kc.id = -c.key_id "
    "JOIN contexts x ON x.id = kc.context_id WHERE c.run_id=:run AND c.key_id < 0 GROUP BY c.key_id "
    "UNION ALL "
    "SELECT rk.rank, kc.base_name, x.body, c.key_id, SUM(c.n) FROM chunks c "
    f"JOIN rank_keys rk ON c.key_id = {RANK_KEY_OFFSET} + rk.id JOIN key_contexts kc ON kc.id = -rk.key_id "
    "JOIN contexts x ON x.id = kc.context_id "
    f"WHERE c.run_id=:run AND c.key_id >= {RANK_KEY_OFFSET} AND rk.key_id < 0 GROUP BY c.key_id"
)
_PLAIN_TEXTS = (
    "SELECT 0, k.name, t.step, t.ts, t.value, t.rev FROM texts t JOIN keys k ON k.id = t.key_id "
    "WHERE t.run_id=:run AND t.rev > :since ORDER BY t.rev"
)
_RANK_TEXTS = (
    f"SELECT rk.rank, k.name, t.step, t.ts, t.value, t.rev FROM texts t JOIN rank_keys rk "
    f"ON t.key_id = {RANK_KEY_OFFSET} + rk.id JOIN keys k ON k.id = rk.key_id "
    "WHERE t.run_id=:run AND t.rev > :since ORDER BY t.rev"
)
_CONTEXT_TEXTS = (
    "SELECT * FROM ("
    "SELECT 0, kc.base_name, t.step, t.ts, t.value, t.rev, x.body FROM texts t JOIN key_contexts kc "
    "ON kc.id = -t.key_id JOIN contexts x ON x.id = kc.context_id "
    "WHERE t.run_id=:run AND t.key_id < 0 AND t.rev > :since "
    "UNION ALL "
    f"SELECT rk.rank, kc.base_name, t.step, t.ts, t.value, t.rev, x.body FROM texts t JOIN rank_keys rk "
    f"ON t.key_id = {RANK_KEY_OFFSET} + rk.id JOIN key_contexts kc ON kc.id = -rk.key_id "
    "JOIN contexts x ON x.id = kc.context_id WHERE t.run_id=:run AND rk.key_id < 0 AND t.rev > :since"
    ") ORDER BY 6"
)


def _points(
    conn: apsw.Connection, run: dict[str, Any], done: dict[str, int], sql: str, schema: pa.Schema
) -> pa.Table | None:
    """New values of a run's series (``sql`` picks rank 0's, the other ranks' or the context series); updates
    ``done`` in place.

    ``done`` counts values exported per series: by key for rank 0, by ``"<rank>/<key>"`` for the other ranks, by
    ``"<rank>/<context>/<key>"`` for the context series.
    """
    ranked = "rank" in schema.names
    with_context = "context" in schema.names
    parts: list[pa.Table] = []
    for rank, key, context, key_id, total in conn.execute(sql, {"run": run["id"]}):
        mark = f"{rank}/{context}/{key}" if with_context else f"{rank}/{key}" if ranked else key
        if total <= done.get(mark, 0):
            continue
        steps, times, vals, seq = _series_delta(conn, run["id"], key_id, done.get(mark, 0))
        n = steps.size
        columns = [_column(run["project"], n), _column(run["run_key"], n), _column(key, n), steps, times, vals, seq]
        if ranked:
            columns.append(np.full(n, rank, np.int64))
        if with_context:
            columns.append(_column(context, n))
        parts.append(pa.table(columns, schema=schema))
        done[mark] = int(total)
    return pa.concat_tables(parts) if parts else None


def _texts(conn: apsw.Connection, run: dict[str, Any], since: int, sql: str, schema: pa.Schema) -> pa.Table | None:
    """A run's text values with a revision above ``since`` (rank 0's or the other ranks', as ``sql`` picks)."""
    rows = conn.execute(sql, {"run": run["id"], "since": since}).fetchall()
    if not rows:
        return None
    columns = list(zip(*rows))
    data = {
        "project": [run["project"]] * len(rows),
        "run_id": [run["run_key"]] * len(rows),
        "key": list(columns[1]),
        "step": list(columns[2]),
        "timestamp": list(columns[3]),
        "value": list(columns[4]),
        "seq": list(columns[5]),
    }
    if "rank" in schema.names:
        data["rank"] = list(columns[0])
    if "context" in schema.names:
        data["context"] = list(columns[6])
    return pa.table(data, schema=schema)


def _run_ranks(conn: apsw.Connection, run: dict[str, Any]) -> pa.Table | None:
    """The ``run_ranks`` rows of a distributed run (None for a run logged by one process)."""
    rows = [
        {"project": run["project"], "run_id": run["run_key"], **row}
        for row in dict_rows(
            conn,
            "SELECT rank, host, pid, local_rank, joined_at, exit_code, ended_at, config FROM run_ranks "
            "WHERE run_id=? ORDER BY rank",
            (run["id"],),
        )
    ]
    return pa.Table.from_pylist(rows, schema=RUN_RANKS_SCHEMA) if rows else None


def collect(conn: apsw.Connection, runs: list[dict[str, Any]], marks: Marks, force: bool = False) -> list[RunDelta]:
    """The changes of ``runs`` since ``marks`` (all of them with a fresh Marks); updates ``marks`` in place.

    Call inside a read transaction so the runs, series and texts read are one snapshot.
    """
    deltas = []
    row = conn.execute("SELECT MAX(rev) FROM texts").fetchone()
    newest_rev = int(row[0] or 0) if row else 0
    for run in runs:
        name = f"{run['project']}/{run['run_key']}"
        if not force and marks.runs.get(name) == run["updated_at"] and name in marks.context_series:
            continue
        deltas.append(
            RunDelta(
                run,
                _points(conn, run, marks.series.setdefault(name, {}), _PLAIN_SERIES, POINTS_SCHEMA),
                _texts(conn, run, marks.text_rev, _PLAIN_TEXTS, TEXTS_SCHEMA),
                _points(conn, run, marks.rank_series.setdefault(name, {}), _RANK_SERIES, RANK_POINTS_SCHEMA),
                _texts(conn, run, marks.text_rev, _RANK_TEXTS, RANK_TEXTS_SCHEMA),
                _run_ranks(conn, run),
                _points(conn, run, marks.context_series.setdefault(name, {}), _CONTEXT_SERIES, CONTEXT_POINTS_SCHEMA),
                _texts(conn, run, marks.context_text_rev, _CONTEXT_TEXTS, CONTEXT_TEXTS_SCHEMA),
            )
        )
        marks.runs[name] = run["updated_at"]
    marks.text_rev = max(marks.text_rev, newest_rev)
    marks.context_text_rev = max(marks.context_text_rev, newest_rev)
    return deltas


def with_partition_types(table: pa.Table, path: str | Path) -> pa.Table:
    """``table`` with the columns its folders name (``project=…/run_id=…``) stored as dictionary strings.

    pyarrow (``pq.read_table(folder)``, so pandas) infers Hive partition columns as dictionaries and refuses a
    file column of the same name typed string; stored as a dictionary, the file's column merges with it, and
    DuckDB, polars and Spark read it as a plain string either way. The files keep these columns so that one file
    read alone still says which run it holds.
    """
    keys = {part.split("=", 1)[0] for part in Path(path).parts[:-1] if "=" in part}
    for name in keys & set(table.column_names):
        i = table.schema.get_field_index(name)
        if pa.types.is_string(table.schema.field(i).type):
            table = table.set_column(i, name, pc.dictionary_encode(table.column(i)))
    return table


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temporary name, fsync it and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(with_partition_types(table, path), tmp, compression="zstd")
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
        for kind, table in (
            ("texts", delta.texts),
            ("rank_points", delta.rank_points),
            ("rank_texts", delta.rank_texts),
            ("context_points", delta.context_points),
            ("context_texts", delta.context_texts),
        ):
            if table is not None:
                files.append((part_path(kind, project, run_key, source, tick), table))
        if delta.ranks is not None:
            files.append((f"{run_folder('run_ranks', project, run_key)}/ranks.parquet", delta.ranks))
        for relative, table in files:
            write_atomic(table, root / relative)
            written.append(relative)
    return written


def layout_marker() -> bytes:
    from trackiod import __version__

    return json.dumps({"layout_version": LAYOUT_VERSION, "written_by": f"trackiod {__version__}"}, indent=1).encode()
