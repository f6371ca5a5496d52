"""Reads a trackiod dataset (the open Parquet layout of docs/sync.md) for the Space's dashboard.

Needs only pyarrow, so it is tested without Gradio. Points are deduplicated as the layout says: for each
(project, run, key, step) the row with the highest ``seq`` is the value that was logged last.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds

MAX_POINTS = 2000


def _value(name: str) -> str:
    """A name as the dataset's folders spell it (trackiod.sync.layout.partition_value; copied: the Space has only
    this file)."""
    return quote(name, safe="-_.~@+,")


class Dataset:
    """A downloaded copy of a trackiod dataset, read lazily: each question scans only the files of the project or
    run it is about (the ``project=``/``run_id=`` folders, or a layout 1-2 dataset's plain folders), and only the
    columns it needs, through pyarrow dataset scans, so opening a year of data reads nothing but the runs' rows.
    """

    def __init__(self, root: Path, fetch: Callable[[list[str]], None] | None = None) -> None:
        """``fetch(patterns)``, when given, downloads the dataset's files matching ``patterns`` into ``root``
        (the Space passes huggingface_hub's ``snapshot_download`` with ``allow_patterns``): called for the runs
        at start, then for a project's or a run's folders the first time a question needs them."""
        self.root = Path(root)
        self._fetch = fetch
        self._fetched: set[tuple[str, ...]] = set()
        self._need(["trackiod.json", "runs/**"])
        runs = self._scan(self._files("runs"))
        self.runs = runs.to_table() if runs is not None else None

    def _need(self, patterns: list[str]) -> None:
        if self._fetch is not None and tuple(patterns) not in self._fetched:
            self._fetch(patterns)
            self._fetched.add(tuple(patterns))

    def _files(self, kind: str, project: str | None = None, run_id: str | None = None) -> list[str]:
        """Parquet files of ``kind``, of one project (and run) when given, in either folder naming."""
        folder = self.root / kind
        if project is None:
            found = folder.rglob("*.parquet") if folder.is_dir() else iter(())
        else:
            hive = f"{kind}/project={_value(project)}"
            plain = f"{kind}/{quote(project, safe='-_.~@+=,')}"
            if run_id is not None:
                hive, plain = f"{hive}/run_id={_value(run_id)}", f"{plain}/{quote(run_id, safe='-_.~@+=,')}"
            self._need([f"{hive}/**", f"{plain}/**"])
            bases = [self.root / hive, self.root / plain]
            found = (f for base in bases if base.is_dir() for f in base.rglob("*.parquet"))
        return sorted(str(f) for f in found if not f.name.startswith((".", "_")))

    @staticmethod
    def _scan(files: list[str]) -> ds.Dataset | None:
        return ds.dataset(files, format="parquet") if files else None

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
        points = self._scan(self._files("points", project))
        if points is None:
            return []
        keys = points.to_table(columns=["key"], filter=pc.field("project") == project)["key"]
        return sorted(set(pc.unique(keys).to_pylist()))

    def series(self, project: str, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric, last-logged value per step, evenly thinned to MAX_POINTS."""
        points = self._scan(self._files("points", project, run_id))
        if points is None:
            return np.empty(0, np.int64), np.empty(0)
        wanted = (pc.field("project") == project) & (pc.field("run_id") == run_id) & (pc.field("key") == key)
        mine = points.to_table(columns=["step", "value", "seq"], filter=wanted)
        mine = mine.sort_by([("step", "ascending"), ("seq", "ascending")])
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
