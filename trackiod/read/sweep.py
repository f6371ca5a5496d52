"""A project's runs as columns: every config key and every numeric summary key, one value per run.

The sweep view (docs/dashboard.md, "Sweep view") draws parallel coordinates, scatters and a best-runs table over
thousands of runs; it needs the same few keys of every run side by side, not one JSON object per run. Columns
are exact (float64, no sampling): a key's values are numbers when every run that has it logged a number or a
bool, otherwise categories (strings, lists and dicts as their JSON text) coded as indexes into a sorted list.
Missing values are NaN. Nested config dicts are flattened with dots, as the runs table does, and wandb's
``{"value": x}`` wrappers are unwrapped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import apsw
import numpy as np


@dataclass
class Column:
    """One key over the runs: ``values[i]`` is run i's value (or category index), NaN where it has none."""

    key: str
    values: np.ndarray
    categories: list[str] | None = None

    @property
    def distinct(self) -> int:
        finite = self.values[~np.isnan(self.values)]
        return int(np.unique(finite).size)


@dataclass
class SweepColumns:
    """The runs (newest first) and their config and summary columns."""

    run_keys: list[str]
    names: list[str]
    states: list[str]
    config: list[Column] = field(default_factory=list)
    summary: list[Column] = field(default_factory=list)


_NUMBER = (int, float, bool)


def _collect(obj: dict[str, Any], prefix: str, row: int, cells: dict[str, list[Any]], count: int) -> None:
    """Write a (nested) config's leaves into ``cells[flat key][row]``; dicts recurse, everything else is a leaf."""
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


def _columns(cells: dict[str, list[Any]], numeric_only: bool) -> list[Column]:
    """Columns from ``{key: [value or None per run]}``, by key name."""
    out = []
    nan = math.nan
    for key in sorted(cells):
        raw = cells[key]
        if all(type(v) in _NUMBER for v in raw if v is not None):
            out.append(Column(key, np.array([nan if v is None else v for v in raw], dtype=np.float64)))
            continue
        if numeric_only:
            # Summaries: numbers logged as such, and the NaN/Infinity strings JSON cannot hold; others are skipped.
            parsed = [_summary_number(v) for v in raw]
            if any(v is not None for v in parsed):
                out.append(Column(key, np.array([nan if v is None else v for v in parsed], dtype=np.float64)))
            continue
        texts = [None if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in raw]
        categories = sorted({t for t in texts if t is not None})
        index = {c: float(i) for i, c in enumerate(categories)}
        out.append(Column(key, np.array([nan if t is None else index[t] for t in texts], dtype=np.float64), categories))
    return out


def _summary_number(value: Any) -> float | None:
    if type(value) in _NUMBER:
        return float(value)
    if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return None


def sweep_columns(conn: apsw.Connection, project: str) -> SweepColumns:
    """Every run of ``project`` (newest first) with its config and numeric summary as columns."""
    rows = conn.execute(
        "SELECT r.run_key, r.name, r.state, r.config, r.summary FROM runs r JOIN projects p ON p.id = r.project_id "
        "WHERE p.name=? ORDER BY r.id DESC",
        (project,),
    ).fetchall()
    count = len(rows)
    config: dict[str, list[Any]] = {}
    summary: dict[str, list[Any]] = {}
    loads = json.loads
    for i, (_, _, _, raw_config, raw_summary) in enumerate(rows):
        if raw_config:
            _collect(loads(raw_config), "", i, config, count)
        top = loads(raw_summary) if raw_summary else None
        if type(top) is dict:
            for key, value in top.items():
                if not key.startswith("_"):
                    column = summary.get(key)
                    if column is None:
                        column = summary[key] = [None] * count
                    column[i] = value
    return SweepColumns(
        [r[0] for r in rows],
        [r[1] or r[0] for r in rows],
        [r[2] for r in rows],
        _columns(config, False),
        _columns(summary, True),
    )
