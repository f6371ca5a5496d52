"""Reads a trackiod dataset (the open Parquet layout of docs/sync.md) for the Space's dashboard.

Needs only pyarrow, so it is tested without Gradio. Points are deduplicated as the layout says: for each
(project, run, key, step) the row with the highest ``seq`` is the value that was logged last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

MAX_POINTS = 2000


class Dataset:
    """A downloaded copy of a trackiod dataset."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.runs = self._table("runs")
        self.points = self._table("points")

    def _table(self, kind: str) -> pa.Table | None:
        folder = self.root / kind
        files = sorted(str(p) for p in folder.rglob("*.parquet")) if folder.is_dir() else []
        return ds.dataset(files, format="parquet").to_table() if files else None

    def projects(self) -> list[str]:
        if self.runs is None:
            return []
        return sorted(set(self.runs["project"].to_pylist()))

    def run_rows(self, project: str) -> list[dict[str, Any]]:
        """The project's runs, newest first, with config and summary decoded."""
        if self.runs is None:
            return []
        rows = self.runs.filter(pc.equal(self.runs["project"], project)).to_pylist()
        for row in rows:
            for column in ("config", "summary"):
                row[column] = json.loads(row[column] or "{}")
        return sorted(rows, key=lambda r: r["created_at"] or 0, reverse=True)

    def keys(self, project: str) -> list[str]:
        if self.points is None:
            return []
        mine = self.points.filter(pc.equal(self.points["project"], project))
        return sorted(set(pc.unique(mine["key"]).to_pylist()))

    def series(self, project: str, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric, last-logged value per step, evenly thinned to MAX_POINTS."""
        if self.points is None:
            return np.empty(0, np.int64), np.empty(0)
        t = self.points
        mask = pc.and_(pc.and_(pc.equal(t["project"], project), pc.equal(t["run_id"], run_id)), pc.equal(t["key"], key))
        mine = t.filter(mask).sort_by([("step", "ascending"), ("seq", "ascending")])
        steps = mine["step"].to_numpy()
        values = mine["value"].to_numpy()
        if steps.size:
            last = np.ones(steps.size, bool)
            last[:-1] = steps[1:] != steps[:-1]
            steps, values = steps[last], values[last]
        if steps.size > MAX_POINTS:
            pick = np.unique(np.linspace(0, steps.size - 1, MAX_POINTS).round().astype(np.int64))
            steps, values = steps[pick], values[pick]
        return steps, values
