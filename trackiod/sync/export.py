"""``trackiod export``: one project (or run) written out as the sync layout (Parquet), CSV or JSON lines.

The Parquet form is exactly what sync commits (:mod:`trackiod.sync.layout` and its other kinds in
:mod:`trackiod.sync.layout_kinds`), so ``trackiod pull`` restores it; CSV and JSON lines carry runs and their
scalar and text histories for tools that read neither. Everything is read inside one read transaction.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import apsw

from trackiod.read.runs import history_rows, run_keys
from trackiod.sync.layout import Marks, collect, layout_marker, run_record, runs_with_state, segment, write_deltas
from trackiod.sync.layout_kinds import Collector, write_extras


def export(
    conn: apsw.Connection, project: str, run_key: str | None, fmt: str, out: Path, home: Path | None = None
) -> list[Path]:
    """``trackiod export``: one project (or run) as Parquet (the dataset layout), CSV or JSON lines.

    Parquet carries everything sync does (with ``home``, the data directory: media files, node series, energy,
    artifacts and their blobs); CSV and JSON lines carry the runs and their scalar and text histories.

    Raises:
        FileNotFoundError: no such project or run.
        ValueError: an unknown format.
    """
    if fmt not in ("parquet", "csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use parquet, csv or jsonl")
    conn.execute("BEGIN")
    try:
        runs = [r for r in runs_with_state(conn) if r["project"] == project and run_key in (None, r["run_key"])]
        if not runs:
            what = f"run {run_key!r} in project {project!r}" if run_key else f"project {project!r}"
            raise FileNotFoundError(f"no {what}; `trackiod runs` lists what there is")
        if fmt == "parquet":
            marks = Marks()
            deltas = collect(conn, runs, marks, force=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / "trackiod.json").write_bytes(layout_marker())
            names = write_deltas(deltas, out, "export", 0)
            if home is not None:
                extras = Collector(conn, home, out, marks, link=False).collect(runs, runs)
                names += write_extras(extras, out, "export", 0)
            return [out / p for p in names]
        single = run_key is not None and out.suffix == f".{fmt}"
        written = []
        for run in runs:
            path = out if single else out / segment(project) / f"{segment(run['run_key'])}.{fmt}"
            _write_history(conn, run, fmt, path)
            written.append(path)
        if not single:
            path = out / segment(project) / f"runs.{fmt}"
            _write_runs(runs, fmt, path)
            written.append(path)
        return written
    finally:
        conn.execute("COMMIT")


def _replace_into(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_history(conn: apsw.Connection, run: dict[str, Any], fmt: str, path: Path) -> None:
    """A run's history, one row per step (as ``scan_history``): CSV with ``step,timestamp,<keys>``, or JSONL."""
    keys = list(run_keys(conn, run["id"]))
    tmp = _replace_into(path)
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f) if fmt == "csv" else None
        if writer is not None:
            writer.writerow(["step", "timestamp", *keys])
        for row in history_rows(conn, run):
            if writer is not None:
                writer.writerow([row["_step"], row["_timestamp"], *(_csv_cell(row.get(k)) for k in keys)])
            else:
                record = {"step": row["_step"], "timestamp": row["_timestamp"]}
                record.update({k: row[k] for k in keys if k in row})
                f.write(json.dumps(record, default=str) + "\n")
    os.replace(tmp, path)


def _csv_cell(value: Any) -> Any:
    return "" if value is None else value


def _write_runs(runs: list[dict[str, Any]], fmt: str, path: Path) -> None:
    records = [run_record(r) for r in runs]
    for record in records:
        record.pop("summary_state")
    tmp = _replace_into(path)
    with open(tmp, "w", newline="") as f:
        if fmt == "csv":
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            for record in records:
                writer.writerow({**record, "tags": json.dumps(record["tags"])})
        else:
            for record in records:
                for column in ("config", "summary", "metric_defs"):
                    record[column] = json.loads(record[column])
                f.write(json.dumps(record, default=str) + "\n")
    os.replace(tmp, path)
