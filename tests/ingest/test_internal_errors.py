"""A bug in the daemon is not bad input: the frame is undone all the same, but it is logged with its traceback
and counted as ``internal_errors``, never as a malformed frame (docs/robustness.md).

In process, on the fuzzers' rig (a real Store, Ingest and Features on a temporary SQLite file).
(Belongs with the ingest tests: tests/ingest/.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess
from tests.support.hostile_frames import H, IngestRig
from trackio_shim import protocol as P


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[IngestRig]:
    rig = IngestRig(tmp_path)
    yield rig
    rig.close()


def test_a_handler_bug_is_logged_with_its_traceback_counted_and_undone(
    rig: IngestRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    book = rig.ingest.runs
    real_config = book.config

    def buggy_config(sid: bytes, handle: Any, items: dict[str, Any]) -> None:
        real_config(sid, handle, items)  # writes the run's config, then a bug strikes
        raise AttributeError("'NoneType' object has no attribute 'simulated'")

    before = rig.stored()
    monkeypatch.setattr(book, "config", buggy_config)
    with caplog.at_level(logging.ERROR, logger="trackiod.ingest"):
        rig.feed_fields(P.CONFIG, H, {"lr": 0.5})
        assert rig.ingest.commit()
    monkeypatch.undo()

    counters = rig.ingest.counters
    assert (counters.internal_errors, counters.malformed) == (1, 0)
    assert "AttributeError" in str(counters.last_error)
    assert rig.stored() == before, "the frame that hit the bug left rows behind"
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR and "CONFIG frame" in r.getMessage()]
    assert bugs and bugs[0].exc_info is not None and "simulated" in caplog.text  # the traceback is logged
    assert any("daemon bug" in text for text in rig.notices())

    # The session goes on: the next frames are applied.
    rig.feed_fields(P.CONFIG, H, {"lr": 0.25})
    rig.feed_fields(P.LOG, H, 1, 1.0, {"after": 3.0})
    assert rig.ingest.commit()
    assert rig.series("after") == [3.0]
    assert '"lr": 0.25' in rig.store.conn.execute("SELECT config FROM runs").fetchone()[0]
    assert counters.internal_errors == 1


def test_bad_input_is_malformed_not_a_bug(rig: IngestRig) -> None:
    for kind, fields in (
        (P.CONFIG, [H, "lr=0.1"]),
        (P.CONFIG, [[1, 2], {"lr": 0.1}]),  # an unhashable run handle
        (P.RUN_FINISH, [H, "zero", 1.0]),
        (P.DEFINE_METRIC, [H, {"name": "x", "summary": ["median"]}]),
        (P.ALERT, [H, {"title": "t", "text": "x", "timestamp": "soon"}]),
    ):
        rig.feed_fields(kind, *fields)
    assert rig.ingest.commit()
    assert (rig.ingest.counters.malformed, rig.ingest.counters.internal_errors) == (5, 0)


def test_status_reports_internal_errors(daemon: DaemonProcess) -> None:
    status = daemon.status()
    assert status is not None and status["internal_errors"] == 0 and status["malformed_frames"] == 0
