"""The generated Space's data module reads lazily: the runs at start, then only the folders a view needs.

No Hub here: the dataset is a folder written by ``trackiod export``, and the Space's download is replaced by a
function that copies the files matching the patterns it is given (what ``snapshot_download(allow_patterns=…)``
does on the Space), recording each call.
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from tests.support.stores import new_run
from trackiod.read.connection import open_reader
from trackiod.store.writer import Store
from trackiod.sync.export import export


def test_space_reads_only_the_runs_and_the_folders_asked_for(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    for run_key in ("a", "b"):
        run_id = new_run(store, run_key)
        steps = np.arange(100, dtype=np.int64)
        with store.conn:
            store.write_series(
                run_id, store.key_id("loss"), steps, steps * 1.0, steps * (2.0 if run_key == "a" else 3.0)
            )
            store.count_keys({(run_id, store.key_id("loss")): ("scalar", 100, 99)})
            store.update_run(run_id, updated_at=time.time())
    store.close()
    conn = open_reader(tmp_path / "db.sqlite")
    try:
        export(conn, "proj", None, "parquet", tmp_path / "remote")
    finally:
        conn.close()
    asked: list[list[str]] = []

    def fetch(patterns: list[str]) -> None:
        asked.append(patterns)
        for f in (tmp_path / "remote").rglob("*"):
            relative = str(f.relative_to(tmp_path / "remote"))
            if f.is_file() and any(fnmatch.fnmatch(relative, p) for p in patterns):
                (tmp_path / "local" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, tmp_path / "local" / relative)

    sys.path.insert(0, str(Path(__file__).parents[2] / "trackiod" / "sync" / "space_app"))
    try:
        import trackiod_data

        dataset = trackiod_data.Dataset(tmp_path / "local", fetch)
        assert [r["run_id"] for r in dataset.run_rows("proj")] in (["a", "b"], ["b", "a"])
        assert not (tmp_path / "local" / "points").exists()  # nothing but the runs at start
        steps, values = dataset.series("proj", "b", "loss")
        assert steps.tolist() == list(range(100)) and values.tolist() == [s * 3.0 for s in range(100)]
        fetched = {str(f.relative_to(tmp_path / "local")) for f in (tmp_path / "local" / "points").rglob("*.parquet")}
        assert fetched and all(p.startswith("points/project=proj/run_id=b/") for p in fetched)
        dataset.series("proj", "b", "loss")
        assert len(asked) == 2  # the runs, then run b's folder once
    finally:
        sys.path.pop(0)
        sys.modules.pop("trackiod_data", None)
