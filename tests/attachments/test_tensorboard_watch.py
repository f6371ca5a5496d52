"""The daemon's side of sync_tensorboard (trackiod/attachments/tensorboard.py), on a real Store and Ingest.

The worker thread reads; the test plays the writer loop's part (tick, then drain), as trackiod/daemon/loop.py does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support.daemons import wait_for
from tests.support.event_writing import scalar, summary_event, tensor_value, write_records
from tests.support.hostile_frames import H, IngestRig
from trackio_shim import protocol as P

pytest.importorskip("tensorboard")


def read_once(rig: IngestRig) -> None:
    """One maintenance tick: the worker reads the watched directories, then the writer stores what it found."""
    rig.attachments.tick(rig.store)
    wait_for(lambda: rig.attachments.tensorboard.ready, timeout=5, what="the watch's read")
    rig.attachments.drain(rig.ingest)


@pytest.mark.parametrize(
    "spec",
    [
        {"logdir": "relative/dir"},
        {"logdir": 7},
        {},
        {"logdir": "/abs", "prefix": "x" * 500},
        {"logdir": "/abs", "prefix": 3},
        {"logdir": "/abs", "since": "x"},
    ],
)
def test_a_bad_watch_is_refused_and_named(tmp_path: Path, spec: dict) -> None:
    rig = IngestRig(tmp_path)
    rig.feed_fields(P.TENSORBOARD, H, spec)
    rig.ingest.commit()
    assert any("TENSORBOARD" in text for text in rig.notices())
    assert rig.attachments.tensorboard.status() == {"tensorboard_runs": 0}


def test_the_watch_reads_what_is_appended_and_merges_hparams(tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    logdir.mkdir()
    events = logdir / "events.out.tfevents.1.host"
    write_records(events, [summary_event(step, 100.0 + step, [scalar("loss", 1.0 / (step + 1))]) for step in range(3)])
    rig = IngestRig(tmp_path / "home")
    rig.feed_fields(P.TENSORBOARD, H, {"logdir": str(logdir), "prefix": "train/"})
    rig.ingest.commit()
    read_once(rig)
    assert rig.series("train/loss") == pytest.approx([1.0, 0.5, 1 / 3])

    from tensorboard.plugins.hparams import summary_v2

    hparams = summary_v2.hparams_pb({"lr": 0.5, "opt": "sgd"}).value
    histogram = tensor_value("w", np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 5.0]]), "histograms")
    write_records(events, [summary_event(3, 103.0, [scalar("loss", 0.25), histogram]), summary_event(0, 99.0, hparams)])
    read_once(rig)
    assert rig.series("train/loss") == pytest.approx([1.0, 0.5, 1 / 3, 0.25])
    (row,) = rig.store.conn.execute("SELECT step, ts, kind, meta FROM media").fetchall()
    assert row[:3] == (3, 103.0, "histogram") and json.loads(row[3])["values"] == [2, 5]
    config = json.loads(rig.store.run(rig.run_id)["config"])
    assert (config["lr"], config["opt"]) == (0.5, "sgd")
