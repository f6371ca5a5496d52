"""A project's config and numeric summary as float64 columns, for the sweep view.

The sweep view (docs/dashboard.md, "Sweep view") draws parallel coordinates, scatters and a best-runs table over
thousands of runs; it needs the same few keys of every run side by side, not one JSON object per run. Columns
are exact (float64, no sampling): a key's values are numbers when every run that has it logged a number or a
bool, otherwise categories (strings, lists and dicts as their JSON text) coded as indexes into a sorted list.
Missing values are NaN. Keys are flattened as :mod:`trackiod.read.run_columns` flattens them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trackiod.read.run_columns import RunColumns


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


def sweep_columns(runs: RunColumns) -> SweepColumns:
    """The runs' config columns and numeric summary columns (keys starting with ``_`` left out), coded as floats."""
    summary = {key: values for key, values in runs.summary.items() if not key.startswith("_")}
    return SweepColumns(
        list(runs.base["id"]),
        [name or key for name, key in zip(runs.base["name"], runs.base["id"])],
        list(runs.base["state"]),
        _columns(runs.config, False),
        _columns(summary, True),
    )
