"""An explicit summary value set after a key's points wins, even when both arrive in the same batch.

Points are folded into the run's summary at the commit, after every frame of the batch was applied; before
the fix, ``log({"loss": 1.0}); run.summary["loss"] = 0.5`` within one batch (25 ms) ended with summary
``loss == 1.0``, the logged value replacing the explicit one set after it. A key logged again after the
explicit value still replaces it, as in wandb.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess
from tests.support.hostile_frames import IngestRig
from trackio_shim import protocol as P

H = 1


def _summary(rig: IngestRig) -> dict[str, Any]:
    return rig.ingest.runs.summary_view(rig.sid, H) or {}


def test_a_value_set_after_the_batch_points_is_kept(tmp_path: Path) -> None:
    rig = IngestRig(tmp_path)
    try:
        rig.feed_fields(P.LOG, H, 0, 1.0, {"loss": 1.0, "acc": 0.1})
        rig.feed_fields(P.SUMMARY, H, {"loss": 0.5})
        rig.feed_fields(P.LOG, H, 1, 2.0, {"acc": 0.2})  # another key: loss stays explicit
        assert rig.ingest.commit()
        assert _summary(rig)["loss"] == 0.5
        assert _summary(rig)["acc"] == 0.2
        # Logged again in a later batch: the logged value replaces the explicit one.
        rig.feed_fields(P.LOG, H, 2, 3.0, {"loss": 0.75})
        assert rig.ingest.commit()
        assert _summary(rig)["loss"] == 0.75
    finally:
        rig.close()


def test_a_key_logged_after_the_explicit_value_in_the_same_batch_wins(tmp_path: Path) -> None:
    rig = IngestRig(tmp_path)
    try:
        rig.feed_fields(P.LOG, H, 0, 1.0, {"loss": 1.0, "label": "cat"})
        rig.feed_fields(P.SUMMARY, H, {"loss": 0.5, "label": "set"})
        rig.feed_fields(P.LOG, H, 1, 2.0, {"loss": 0.25})
        assert rig.ingest.commit()
        assert _summary(rig)["loss"] == 0.25
        assert _summary(rig)["label"] == "set"  # the text value came before the explicit one
    finally:
        rig.close()


def test_the_order_holds_on_the_many_frames_path(tmp_path: Path) -> None:
    """A spool slice or a coalesced message goes through handle_messages, which appends LOG frames itself."""
    rig = IngestRig(tmp_path)
    try:
        msgs = []
        for step in range(5):
            msgs.append([P.LOG, rig.sid, rig.next_seq(), H, step, float(step), {"loss": float(step)}])
        msgs.append([P.SUMMARY, rig.sid, rig.next_seq(), H, {"loss": -1.0}])
        rig.ingest.handle_messages(msgs, rig.sid)
        assert rig.ingest.commit()
        assert _summary(rig)["loss"] == -1
        assert rig.series("loss") == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        rig.close()


@pytest.mark.usefixtures("daemon")
def test_end_to_end_summary_set_right_after_log(shim: Any, daemon: DaemonProcess) -> None:
    run = shim.init(project="order", id="explicit-after-log")
    for step in range(3):
        run.log({"loss": 1.0 + step})
    run.summary["loss"] = 0.125
    run.finish()
    assert shim.Api().run("order/explicit-after-log").summary["loss"] == 0.125
