"""Reads of projects and runs, and of a run's history (wandb's ``history()`` / ``scan_history()`` rows).

Run rows come back as dicts with their JSON columns decoded; :func:`find_run` resolves the ``project/id``
references the CLI takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import apsw

from trackio_shim.errors import RunNotFoundError, UsageError
from trackiod.read.keys import run_keys as run_keys  # where the readers of runs look for it
from trackiod.store.schema import dict_rows

RUN_JSON_COLUMNS = ("pids", "config", "summary", "tags", "metric_defs", "mirrors")


def _run_dict(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in RUN_JSON_COLUMNS:
        out[column] = (
            json.loads(out[column]) if out.get(column) else ([] if column in ("pids", "tags", "mirrors") else {})
        )
    out.pop("summary_state", None)
    return out


_RUN_SELECT = "SELECT r.*, p.name AS project FROM runs r JOIN projects p ON p.id = r.project_id"


def list_projects(conn: apsw.Connection) -> list[dict[str, Any]]:
    """Every project: ``{name, runs, last_update}``, by name."""
    return dict_rows(
        conn,
        "SELECT p.name, COUNT(r.id) AS runs, MAX(r.updated_at) AS last_update FROM projects p "
        "LEFT JOIN runs r ON r.project_id = p.id GROUP BY p.id ORDER BY p.name",
    )


def running_runs(conn: apsw.Connection) -> dict[str, int]:
    """``{project: runs in state running}``, for the projects that have any."""
    return {
        str(name): int(count)
        for name, count in conn.execute(
            "SELECT p.name, COUNT(*) FROM runs r JOIN projects p ON p.id = r.project_id "
            "WHERE r.state='running' GROUP BY p.id"
        )
    }


def list_runs(conn: apsw.Connection, project: str | None = None) -> list[dict[str, Any]]:
    """Runs (newest first), optionally of one project, with JSON columns decoded."""
    if project is None:
        rows = dict_rows(conn, f"{_RUN_SELECT} ORDER BY r.id DESC")
    else:
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? ORDER BY r.id DESC", (project,))
    return [_run_dict(r) for r in rows]


def run_table(conn: apsw.Connection, project: str | None = None) -> list[tuple[Any, ...]]:
    """``(project, run_key, name, state, last_step, created_at, ended_at, updated_at)`` of each run, newest
    first: what ``trackiod runs`` prints, without decoding every run's JSON columns."""
    sql = (
        "SELECT p.name, r.run_key, r.name, r.state, r.last_step, r.created_at, r.ended_at, r.updated_at "
        "FROM runs r JOIN projects p ON p.id = r.project_id"
    )
    if project is None:
        return list(conn.execute(f"{sql} ORDER BY r.id DESC"))
    return list(conn.execute(f"{sql} WHERE p.name=? ORDER BY r.id DESC", (project,)))


def get_run(conn: apsw.Connection, project: str, run_key: str) -> dict[str, Any] | None:
    rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? AND r.run_key=?", (project, run_key))
    return _run_dict(rows[0]) if rows else None


def find_run(conn: apsw.Connection, ref: str) -> dict[str, Any]:
    """A run by ``project/id`` or by a bare id that is unique across projects.

    Raises:
        RunNotFoundError: no run matches.
        UsageError: a bare id matches runs in several projects.
    """
    parts = ref.split("/")
    if len(parts) == 2 and all(parts):
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE p.name=? AND r.run_key=?", (parts[0], parts[1]))
    elif len(parts) == 1 and ref:
        rows = dict_rows(conn, f"{_RUN_SELECT} WHERE r.run_key=?", (ref,))
    else:
        raise UsageError(f"run {ref!r} must be 'project/run_id' or a run id")
    if not rows:
        raise RunNotFoundError(f"no run {ref!r}; `trackiod runs` lists them")
    if len(rows) > 1:
        projects = ", ".join(sorted(r["project"] for r in rows))
        raise UsageError(f"run id {ref!r} is in several projects ({projects}); name it as 'project/{ref}'")
    return _run_dict(rows[0])


def runs_by_key(conn: apsw.Connection, project: str, wanted: list[str]) -> list[dict[str, Any]]:
    """The runs of ``project`` named by id (or name, newest first), in the order asked, without repeats."""
    if not wanted:
        return []
    marks = ",".join("?" * len(wanted))
    rows = [
        _run_dict(r)
        for r in dict_rows(
            conn,
            f"{_RUN_SELECT} WHERE p.name=? AND (r.run_key IN ({marks}) OR r.name IN ({marks})) ORDER BY r.id DESC",
            (project, *wanted, *wanted),
        )
    ]
    out: list[dict[str, Any]] = []
    for ref in wanted:
        run = next((r for r in rows if r["run_key"] == ref), None) or next((r for r in rows if r["name"] == ref), None)
        if run is not None and run not in out:
            out.append(run)
    return out


def history_rows(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
    samples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """History rows ``{"_step", key: value..., "_timestamp", "_runtime"}`` in step order, made lazily.

    With ``keys``, only rows where every one of those keys has a value (as wandb's scan_history). With
    ``samples``, at most that many rows, evenly spread over the steps and including the first and last.
    Built by :mod:`trackiod.read.history`, imported here on first use: listing runs needs no numpy.
    """
    from trackiod.read.history import rows

    return rows(conn, run, keys, min_step, max_step, samples)


def history_pages(
    conn: apsw.Connection,
    run: dict[str, Any],
    keys: list[str] | None = None,
    min_step: int | None = None,
    max_step: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The rows of :func:`history_rows` a page (a list) at a time, for callers that stream many rows."""
    from trackiod.read.history import pages

    return pages(conn, run, keys, min_step, max_step)
