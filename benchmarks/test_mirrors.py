"""Mirrors: what a daemon-wide mirror costs the ingest path, and how far behind the mirror runs.

The same burst as ``test_ingest_burst`` (sender processes logging 10 scalars per step as fast as they can,
real daemon), once without mirrors and once with each of a CSV and a TensorBoard mirror for every run
(TRACKIOD_MIRRORS). Reported: committed-and-acknowledged points/s, its ratio to the run without mirrors
measured in the same session, and how long after the last ACK the mirror had written (or counted as
dropped) every point. The writer must not wait on the mirror: the ratio is the GIL share the mirror thread
takes, not a queue stall.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.test_ingest import KEYS, _go, _senders
from tests.support.daemons import DaemonProcess, wait_for

_RATES: dict[str, float] = {}


@pytest.mark.benchmark(group="mirrors")
@pytest.mark.parametrize("mirror", ["none", "csv", "tensorboard"])
def test_ingest_with_a_mirror(
    benchmark: Any, env: dict[str, str], tmp_path: Path, figures: Any, mode: Any, mirror: str
) -> None:
    test = f"ingest burst, mirror {mirror}"
    extra = {} if mirror == "none" else {"TRACKIOD_MIRRORS": f"{mirror}:{tmp_path / 'mirror'}"}
    daemon = DaemonProcess(env, tmp_path / "daemon-stdout.log").start(**extra)
    try:
        senders, steps = mode.size("ingest_senders"), mode.size("ingest_steps")
        points = senders * steps * KEYS
        procs = _senders(env, senders, steps, 0, 100)
        reports, _ = benchmark.pedantic(_go, args=(procs, daemon), rounds=1, iterations=1)
        assert all(r["ok"] for r in reports), "a sender was not acknowledged in time"
        first = min(r["first"] for r in reports)
        acked = max(r["acked"] for r in reports)
        rate = points / (acked - first)
        _RATES[mirror] = rate
        figures.add(test, "committed and acknowledged", rate, "points/s", note=f"{points:,} points")
        if mirror != "none":
            if "none" in _RATES:
                figures.add(test, "ratio to no mirror (same session)", rate / _RATES["none"], "x")

            def settled() -> dict[str, Any] | None:
                status = daemon.status() or {}
                hub = status.get("mirrors", {})
                done = sum(m["points"] + m["dropped"] for m in hub.get("mirrors", [])) + hub.get("overflow_points", 0)
                return hub if done >= points else None

            hub = wait_for(settled, timeout=300, interval=0.1, what="the mirror to catch up")
            figures.add(test, "mirror caught up, after the last ACK", time.monotonic() - acked, "s")
            mirrored = sum(m["points"] for m in hub["mirrors"])
            figures.add(
                test,
                "points mirrored / dropped at the queue",
                mirrored,
                "points",
                note=f"{hub['overflow_points']} dropped",
            )
    finally:
        daemon.cleanup()
