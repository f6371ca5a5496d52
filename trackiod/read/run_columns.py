"""A project's runs as columns (one list per field, one entry per run) instead of one object per run.

The dashboard's runs table and sweep view show the same few fields of thousands of runs side by side; as columns a
key is named once, not once per run, and each view takes only the columns it draws. Config and summary are
flattened with dots (wandb's ``{"value": x}`` wrappers unwrapped), as the dashboard's tables show them; a run
without a key has None in that key's column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw

#: The plain fields of a run, in the order the runs table lists them (``id`` is the run's key).
BASE_FIELDS = (
    "id",
    "name",
    "state",
    "created_at",
    "updated_at",
    "ended_at",
    "host",
    "group",
    "job_type",
    "notes",
    "last_step",
    "exit_code",
    "tags",
)

_SQL = (
    "SELECT r.run_key, r.name, r.state, r.created_at, r.updated_at, r.ended_at, r.host, r.group_name, r.job_type, "
    "r.notes, r.last_step, r.exit_code, r.tags, r.config, r.summary FROM runs r JOIN projects p "
    "ON p.id = r.project_id WHERE p.name=? ORDER BY r.id DESC"
)

#: What tells whether any run of a project changed: cheap enough to ask before every reuse of decoded columns.
STAMP_SQL = (
    "SELECT COUNT(*), MAX(r.updated_at), SUM(r.id) FROM runs r JOIN projects p ON p.id = r.project_id WHERE p.name=?"
)


@dataclass
class RunColumns:
    """``base[field][i]``, ``config[flat key][i]``, ``summary[flat key][i]`` for run i (newest first)."""

    count: int
    base: dict[str, list[Any]]
    config: dict[str, list[Any]]
    summary: dict[str, list[Any]]


def _collect(obj: dict[str, Any], prefix: str, row: int, cells: dict[str, list[Any]], count: int) -> None:
    """Write a (nested) dict's leaves into ``cells[flat key][row]``; dicts recurse, everything else is a leaf."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if type(value) is dict and value:
            if list(value) == ["value"]:
                value = value["value"]
                if type(value) is dict and value:
                    _collect(value, f"{name}.", row, cells, count)
                    continue
            else:
                _collect(value, f"{name}.", row, cells, count)
                continue
        column = cells.get(name)
        if column is None:
            column = cells[name] = [None] * count
        column[row] = value


def project_stamp(conn: apsw.Connection, project: str) -> tuple[Any, ...]:
    """Changes whenever a run of ``project`` is added, removed or updated (its ``updated_at`` moves)."""
    return tuple(conn.execute(STAMP_SQL, (project,)).fetchone() or ())


def run_columns(conn: apsw.Connection, project: str) -> RunColumns:
    """Every run of ``project``, newest first, as columns."""
    rows: list[Any] = conn.execute(_SQL, (project,)).fetchall()
    count = len(rows)
    base: dict[str, list[Any]] = {name: [] for name in BASE_FIELDS}
    if rows:
        for name, values in zip(BASE_FIELDS[:-1], zip(*(row[:12] for row in rows))):
            base[name] = list(values)
    loads = json.loads
    base["tags"] = [loads(row[12]) if row[12] else [] for row in rows]
    config: dict[str, list[Any]] = {}
    summary: dict[str, list[Any]] = {}
    for i, row in enumerate(rows):
        if row[13]:
            _collect(loads(row[13]), "", i, config, count)
        if row[14]:
            top = loads(row[14])
            if type(top) is dict:
                _collect(top, "", i, summary, count)
    return RunColumns(count, base, config, summary)
