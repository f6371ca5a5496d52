"""What a mirror receives of a run that logs with metric context: the run's own series, never an internal key.

A series is named by a typed key (run, name, context, rank) inside the daemon; the mirror fan-out decides
what each becomes for a mirror (docs/mirrors.md). A real daemon mirrors a run to CSV, read back as text.
(Belongs with the mirror tests: tests/mirrors/.)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.daemons import DaemonProcess, wait_for
from trackiod.ingest.batch import Batch
from trackiod.mirrors.fanout import MirrorHub


def test_a_context_series_never_reaches_a_mirror_as_an_encoded_key(
    daemon: DaemonProcess, shim: Any, tmp_path: Path
) -> None:
    table = tmp_path / "run.csv"
    run = shim.init(project="mirrored", id="ctx1", mirror=[f"csv:{table}"])
    for step in range(5):
        run.log({"loss": 1.0 - step / 10, "note": "plain"}, step=step)
        run.log({"loss": 2.0 - step / 10, "note": "val"}, step=step, context={"subset": "val"})
    run.finish()

    def closed() -> bool:
        status = daemon.status() or {}
        return any(m["state"] == "closed" for m in status["mirrors"]["mirrors"])

    wait_for(closed, timeout=60, what="the csv mirror to close")
    with table.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    assert rows, "the mirror wrote nothing"
    assert all("\x00" not in cell for row in rows for cell in row), rows
    assert {row[2] for row in rows} == {"loss", "note"}
    # Only the context-free values: a context's values would be 1.9 .. 1.6 and "val".
    assert sorted(float(row[3]) for row in rows if row[2] == "loss") == [0.6, 0.7, 0.8, 0.9, 1.0]
    assert {row[3] for row in rows if row[2] == "note"} == {"plain"}


def test_the_fanout_offers_only_the_runs_own_series(tmp_path: Path) -> None:
    """In process: context and rank > 0 series of a mirrored run stay out of the mirror queue."""
    hub = MirrorHub([], tmp_path / "unused.db", queue_points=1_000_000)
    hub.mirrored.add(1)
    batch = Batch()
    batch.add(1, 0, 1.0, {"loss": 1.0, "label": "a"})
    batch.add_context(1, 7, 0, 1.0, {"loss": 2.0, "label": "b"})
    batch.add_rank(1, 3, 0, 1.0, {"loss": 3.0, "label": "c"})
    batch.add_rank(1, 3, 0, 1.0, {"loss": 4.0}, context_id=7)
    hub.offer([], batch.columns())
    (_, batches, _) = hub._queue.popleft()
    mirrored = batches[1]
    assert [(s.key, np.asarray(s.values).tolist()) for s in mirrored.series] == [("loss", [1.0])]
    assert [text[0] for text in mirrored.texts] == ["label"] and mirrored.texts[0][3] == "a"
