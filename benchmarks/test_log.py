"""log() of a 10-scalar dict, against the floor measured in the same run, with the daemon running and stopped.

The floor is ``msgpack.packb(d)`` plus a blocking ZeroMQ DEALER ``send`` over ipc to a ROUTER in another
process that only drains (DESIGN.md, "Measured"). Floor and log() are timed call by call (perf_counter_ns) in
alternating batches, so machine noise hits both alike. log() coalesces its frames (docs/protocol.md,
"Coalescing"), so it pays one pack and one append per call and a send per 2 ms: the budgets (issue 16) are
log() p50 <= 1.0x the floor's p50 and log() p99 <= 1.0x the floor's p99 with the daemon running; 1.5x at p50
with the daemon stopped (buffering, then spooling). pytest-benchmark's own table (group "log: 10 scalars")
shows the same three side by side.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from benchmarks._support import Floor, interleaved, percentiles, rss_bytes, ten_scalars, tight_loop_ns
from tests.support.daemons import DaemonProcess, wait_for

D = ten_scalars()
RATIO_BUDGET = 1.5  # daemon stopped
RUNNING_P50_BUDGET = 1.0
RUNNING_P99_BUDGET = 1.0


def _noop(data: Any) -> None:
    return None


def _record_ratio(
    figures: Any, test: str, t: dict[str, Any], label: str = "", p50: float = RATIO_BUDGET, p99: float | None = None
) -> float:
    floor, log, timer = (percentiles(t[k]) for k in ("floor", "log", "timer"))
    for name, p in (("floor", floor), ("log()", log)):
        for q in ("p50", "p90", "p99"):
            figures.add(test, f"{name}{label} {q}", p[q] / 1000, "µs", note=f"n={p['n']}")
    figures.add(test, "timer overhead p50 (in every sample)", timer["p50"] / 1000, "µs")
    ratio = log["p50"] / floor["p50"]
    figures.budget(test, f"log(){label} p50 / floor p50", ratio, "x", p50)
    if p99 is None:
        figures.add(test, f"log(){label} p99 / floor p99", log["p99"] / floor["p99"], "x")
    else:
        figures.budget(test, f"log(){label} p99 / floor p99", log["p99"] / floor["p99"], "x", p99)
    return ratio


@pytest.mark.benchmark(group="log: 10 scalars")
def test_floor_send(benchmark: Any, floor: Floor) -> None:
    """pytest-benchmark's figure for the floor alone (the budget itself is checked in the tests below)."""
    benchmark(floor.send, D)


@pytest.mark.benchmark(group="log: 10 scalars")
@pytest.mark.filterwarnings("ignore:trackio_shim")  # a spill to the spool warns once; reported as a figure
def test_log_daemon_running(
    benchmark: Any, daemon: DaemonProcess, shim: Any, floor: Floor, figures: Any, mode: Any
) -> None:
    test = "log, daemon running"
    run = shim.init(project="bench-log")
    client = run._client
    first_seq = client.seq
    fns = {"floor": floor.send, "log": run.log, "timer": _noop}
    interleaved(fns, D, 1, 2_000)  # warm-up: connections, caches, the daemon's first batches
    t = interleaved(fns, D, mode.size("log_batches"), mode.size("log_batch_calls"))
    _record_ratio(figures, test, t, p50=RUNNING_P50_BUDGET, p99=RUNNING_P99_BUDGET)

    # Sustained: a tight loop of calls, then the time until the daemon acknowledged all of them.
    n = mode.size("log_sustained_calls")
    started = time.perf_counter()
    per_call = tight_loop_ns(run.log, D, n)
    logged = time.perf_counter()
    assert client.wait_acked(client.seq, 120), "the daemon did not acknowledge the sustained burst"
    acked = time.perf_counter()
    figures.add(test, "log() tight loop, mean per call", per_call / 1000, "µs", note=f"{n:,} calls")
    figures.add(test, "log() calls/s while logging", n / (logged - started), "calls/s")
    figures.add(test, "log() calls/s until all acknowledged", n / (acked - started), "calls/s")
    floor_ns = tight_loop_ns(floor.send, D, n)
    figures.add(test, "floor tight loop, mean per call", floor_ns / 1000, "µs", note="paced by the receiver")

    benchmark(run.log, D)
    figures.add(
        test,
        "frames spilled to the spool (daemon running)",
        client.stats()["spooled_frames"],
        "frames",
        note="a burst faster than ingest outgrows buffer_bytes (64 MiB)",
    )

    # Nothing lost: every LOG frame of this test is committed, 10 points each.
    logs = client.seq - first_seq
    assert client.wait_acked(client.seq, 120)
    wait_for(
        lambda: (daemon.status() or {}).get("points_total") == logs * len(D), timeout=30, what="all points counted"
    )
    figures.check(test)


@pytest.mark.benchmark(group="log: 10 scalars")
@pytest.mark.filterwarnings("ignore:trackio_shim")  # "no trackiod answered", "spooling": expected here
def test_log_daemon_stopped(
    benchmark: Any,
    env: dict[str, str],
    shim: Any,
    floor: Floor,
    figures: Any,
    mode: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """No daemon (TRACKIOD_AUTOSTART=0): log() buffers up to buffer_bytes, then the pump spools to disk.

    Checks along the way: the in-memory buffer stays near buffer_bytes, the process's memory stays bounded,
    every frame is either buffered or spooled, and a daemon started afterwards ingests all of it.
    """
    test = "log, daemon stopped"
    buffer = mode.size("nodaemon_buffer_bytes")
    monkeypatch.setenv("TRACKIOD_BUFFER_BYTES", str(buffer))
    env = {**env, "TRACKIOD_BUFFER_BYTES": str(buffer)}
    run = shim.init(project="bench-offline")
    client = run._client
    assert not client.stats()["connected"]
    first_seq = client.seq
    fns = {"floor": floor.send, "log": run.log, "timer": _noop}
    calls = mode.size("log_batch_calls")
    frame = len(client.packer.pack((3, client.sid, 1, 1, 1, 1.0, D)))
    rss_before = rss_bytes()

    # Phase 1: the buffer is filling (below buffer_bytes, no disk involved).
    interleaved({"floor": floor.send, "log": run.log}, D, 1, 200)
    batches = max(1, min(mode.size("log_batches"), int(0.8 * buffer / (frame * calls))))
    t = interleaved(fns, D, batches, calls)
    assert client.stats()["spooled_frames"] == 0, "spooling started before the buffer was full"
    _record_ratio(figures, test, t, " buffering")

    # Phase 2: past buffer_bytes, the pump moves frames to the spool file while log() goes on.
    spool_calls = mode.size("nodaemon_spool_calls")
    t2 = interleaved(fns, D, max(1, spool_calls // calls), calls)
    spooling = percentiles(t2["log"])
    floor2 = percentiles(t2["floor"])
    figures.add(test, "log() spooling p50", spooling["p50"] / 1000, "µs", note=f"n={spooling['n']}")
    figures.add(test, "log() spooling p99", spooling["p99"] / 1000, "µs")
    figures.add(test, "log() spooling p99.9", spooling["p99.9"] / 1000, "µs")
    figures.budget(test, "log() spooling p50 / floor p50", spooling["p50"] / floor2["p50"], "x", RATIO_BUDGET)

    benchmark(run.log, D)

    time.sleep(0.2)  # one pump round or more
    stats = client.stats()
    logs = client.seq - first_seq
    rss_growth = rss_bytes() - rss_before
    figures.add(test, "frames logged", logs, "frames", note=f"{logs * frame / 2**20:.0f} MiB of frames")
    figures.add(test, "buffer_bytes setting", buffer / 2**20, "MiB")
    figures.add(test, "buffered at the end", stats["buffered_bytes"] / 2**20, "MiB")
    figures.add(test, "spooled frames", stats["spooled_frames"], "frames")
    figures.add(test, "process RSS growth", rss_growth / 2**20, "MiB")
    assert stats["spooled_frames"] > 0, "the buffer never spilled to the spool"
    assert stats["buffered_frames"] + stats["spooled_frames"] == stats["seq"], f"frames unaccounted for: {stats}"
    assert stats["buffered_bytes"] <= buffer + 8 * 2**20, f"buffer grew past buffer_bytes: {stats}"
    assert rss_growth <= 2 * buffer + 96 * 2**20, f"memory grew by {rss_growth / 2**20:.0f} MiB"

    # Delivery: finish (bounded, no daemon), then a daemon started later ingests the spool: nothing lost.
    started = time.perf_counter()
    run.finish()
    figures.add(test, "finish() with no daemon", (time.perf_counter() - started) * 1000, "ms")
    client.close(timeout=0)
    d = DaemonProcess(env, tmp_path / "late-daemon.log")
    started = time.perf_counter()
    d.start(wait=False)
    try:
        wait_for(lambda: (d.status() or {}).get("points_total") == logs * len(D), timeout=120, what="spool ingested")
        elapsed = time.perf_counter() - started
        figures.add(test, "late daemon: start + spool ingest", elapsed, "s", note=f"{logs * len(D):,} points")
        figures.add(test, "spool ingest, points/s (incl. start)", logs * len(D) / elapsed, "points/s")
    finally:
        d.terminate()
    figures.check(test)
