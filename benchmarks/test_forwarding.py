"""Forwarding: how fast a head commits what two node daemons forward, against one daemon ingesting locally.

Real processes on loopback: a head daemon listening with CURVE, two node daemons forwarding to it (their
roles stored the documented way, ``trackiod start --forward``), and one sender process per node that
``import trackio_shim`` and logs 10 scalars per step. Measured in the same session, so the figure is a ratio:

- **Local reference.** The same two senders against one daemon that does not forward: points / (first
  log() -> last ACK). This is what "one daemon ingests locally" means here.
- **Forwarded backlog.** The senders log into their nodes while the head is down (the nodes journal it, as
  after an outage); then the head starts and its committed-points counter (``points_total`` in its status)
  is polled: points / (first point on the head -> the head holding the last point). This is the head's own
  rate of committing forwarded points, as the local reference is one daemon's own rate of ingesting them.
  Budget (issue 19): at least 50% of the local reference.
- **Forwarded, live.** The senders log as fast as they can while the head runs: points / (first log() ->
  the head holding the last point). Reported: here five processes (two senders, two nodes, the head) share
  the cores that three shared in the local reference, so this is bounded by the machine, not the head.
- **Forwarded, paced at 100,000 points/s** (50,000 per node): every 100th step's wall-clock time of log() is
  recorded in the sender, and the head's database is polled every 5 ms for each run's ``last_step``: the
  latency of a step is when the head first shows it minus when it was logged. Budget: p99 <= 250 ms.

The machine these run on is shared (2 cores for five processes here, and other work besides): the ratio is
what is asserted, the absolute rates are reported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks._support import percentiles, release_senders, start_senders
from tests.support.cluster import FlaggedDaemon
from tests.support.daemons import DaemonProcess
from tests.support.nodes import env_for_node, free_port, trackiod_keys
from trackiod.read.connection import open_reader

RATIO_BUDGET = 0.5
VISIBLE_P99_BUDGET = 250.0  # ms
PACED_RATE = 100_000  # points/s over both nodes
KEYS = 10

SENDER = """
import json, sys, time
import trackio_shim as wandb

steps, rate, every, name = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
run = wandb.init(project="bench-forward", name=name)
print("ready", flush=True)
sys.stdin.readline()
data = {f"train/metric_{j}": 0.5 * j for j in range(10)}
log, mono, marks = run.log, time.monotonic, []
first, first_wall = mono(), time.time()
for start in range(0, steps, every):
    if rate > 0:
        delay = first + start / rate - mono()
        if delay > 0:
            time.sleep(delay)
    marks.append((start, time.time()))
    for step in range(start, min(start + every, steps)):
        log(data, step=step)
logged = mono()
ok = run._client.wait_acked(run._client.seq, 300)
acked = mono()
run.finish()
print(json.dumps({"ok": ok, "first": first, "first_wall": first_wall, "logged": logged, "acked": acked,
                  "marks": marks, "id": run.id}))
"""


def _senders(envs: list[dict[str, str]], steps: int, rate: float, every: int) -> list[Any]:
    return start_senders(SENDER, [{**env, "TRACKIOD_SILENT": "1"} for env in envs], steps, rate, every)


def _go(procs: list[Any], watch: Any = None, timeout: float = 600) -> list[dict[str, Any]]:
    """Release the senders together, call ``watch()`` until they are done, and return their reports."""
    return release_senders(procs, watch or (lambda: time.sleep(0.05)), timeout)


def _start_team(env: dict[str, str], tmp_path: Path, started: list[DaemonProcess]) -> Any:
    url = f"tcp://127.0.0.1:{free_port()}"
    head_env = {**env_for_node(env, tmp_path, "head"), "TRACKIOD_LISTEN": url}
    nodes = [env_for_node(env, tmp_path, name) for name in ("a", "b")]
    keys = [trackiod_keys(node) for node in nodes]
    for key in keys:  # one key per call: `--authorize` takes one
        head_key = trackiod_keys(head_env, "--authorize", key)
    for node in nodes:
        trackiod_keys(node, "--head", head_key)
    head = DaemonProcess(head_env, tmp_path / "head.log")
    started.append(head)
    for node, name in zip(nodes, ("a", "b")):
        started.append(FlaggedDaemon(node, tmp_path / f"{name}.log", ["--forward", url]).start())
    return head, nodes


@pytest.fixture
def team(env: dict[str, str], tmp_path: Path) -> Any:
    """A head (not started yet) and two forwarding nodes, stopped here (the benchmarks have no daemons tracker)."""
    started: list[DaemonProcess] = []
    try:
        yield _start_team(env, tmp_path, started)
    finally:
        for daemon in reversed(started):
            if daemon.alive:
                try:
                    daemon.terminate(timeout=30)
                finally:
                    daemon.cleanup()


def _head_points(head: DaemonProcess) -> int:
    return int((head.status() or {}).get("points_total") or 0)


def _until_all(head: DaemonProcess, points: int, timeout: float = 600) -> list[tuple[float, int]]:
    """Poll the head's committed-points counter every 20 ms until it holds ``points``; the (time, count) trace.

    A rate from it is a lower bound: between two looks, the head may have held the last point for 20 ms.
    """
    seen: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while (not seen or seen[-1][1] < points) and time.monotonic() < deadline:
        seen.append((time.monotonic(), _head_points(head)))
        time.sleep(0.02)
    assert seen[-1][1] == points, f"the head counted {seen[-1][1]} points, expected {points}"
    return seen


@pytest.mark.benchmark(group="forwarding")
def test_forwarding_rate_against_local_ingest(
    benchmark: Any, daemon: DaemonProcess, env: dict[str, str], team: Any, figures: Any, mode: Any
) -> None:
    test = "forwarding, rate"
    steps = mode.size("forward_steps")
    points = 2 * steps * KEYS
    local = _go(_senders([env, env], steps, 0, 100))
    local_rate = points / (max(r["acked"] for r in local) - min(r["first"] for r in local))

    head, nodes = team
    _go(_senders(nodes, steps, 0, 100))  # the head is down: both nodes journal everything
    head.start()

    def drain() -> list[tuple[float, int]]:
        return _until_all(head, points)

    seen = benchmark.pedantic(drain, rounds=1, iterations=1)
    arrived = [(t, n) for t, n in seen if n > 0]  # from the first point on: the nodes' reconnection is not timed
    (t0, n0) = arrived[0] if len(arrived) > 1 else max((t, n) for t, n in seen if n == 0)
    backlog_rate = (points - n0) / (seen[-1][0] - t0)

    live_first: list[float] = []
    procs = _senders(nodes, steps, 0, 100)
    reports = _go(procs)
    live_first.append(min(r["first"] for r in reports))
    live = _until_all(head, 2 * points)
    live_rate = points / (live[-1][0] - live_first[0])
    dups = (head.status() or {}).get("duplicates_dropped")
    figures.add(test, "senders x steps x keys", points, "points", note=f"2 x {steps:,} x {KEYS}")
    figures.add(test, "one daemon, local (first log -> last ACK)", local_rate, "points/s")
    figures.add(test, "head, forwarded backlog of 2 nodes", backlog_rate, "points/s", note=f"{dups} duplicates")
    figures.budget(test, "head backlog rate / local rate", backlog_rate / local_rate, "ratio", RATIO_BUDGET, True)
    figures.add(test, "head, live (first log -> all on head)", live_rate, "points/s", note="5 processes, 2 cores")
    figures.add(test, "head live rate / local rate", live_rate / local_rate, "ratio")
    benchmark.extra_info.update(points=points, local_rate=local_rate, backlog_rate=backlog_rate, live_rate=live_rate)
    figures.check(test)


@pytest.mark.benchmark(group="forwarding")
def test_forwarding_latency_at_100k_points_per_s(benchmark: Any, team: Any, figures: Any, mode: Any) -> None:
    test = "forwarding, paced 100k pts/s"
    head, nodes = team
    head.start()
    per_node = PACED_RATE / KEYS / 2  # steps/s
    steps = int(per_node * mode.size("forward_paced_seconds"))
    procs = _senders(nodes, steps, per_node, 100)
    visible: dict[str, list[tuple[float, int]]] = {}
    conn = None

    def watch() -> None:
        nonlocal conn
        if conn is None:
            if not (head.home / "trackiod.db").exists():
                return
            conn = open_reader(head.home / "trackiod.db")
        now = time.time()
        for name, last in conn.execute("SELECT name, last_step FROM runs WHERE last_step IS NOT NULL"):
            seen = visible.setdefault(name, [])
            if not seen or seen[-1][1] != last:
                seen.append((now, int(last)))
        time.sleep(0.005)

    reports = benchmark.pedantic(_go, args=(procs, watch), rounds=1, iterations=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(
        not visible.get(f"sender-{i}") or visible[f"sender-{i}"][-1][1] < steps - 1 for i in range(2)
    ):
        watch()
    if conn is not None:
        conn.close()
    latencies = []
    for i, report in enumerate(reports):
        shown = visible[f"sender-{i}"]
        times = np.array([t for t, _ in shown])
        last_steps = np.array([s for _, s in shown])
        for start, logged_at in report["marks"]:
            step = start + 99  # the last step of the chunk logged at that moment (every=100)
            at = int(np.searchsorted(last_steps, min(step, steps - 1)))
            if at < len(times):
                latencies.append((times[at] - logged_at) * 1000)
    lat = percentiles(latencies)
    figures.add(
        test,
        "offered rate",
        2 * steps * KEYS / (max(r["logged"] for r in reports) - min(r["first"] for r in reports)),
        "points/s",
    )
    figures.add(test, "log() -> visible on head p50", lat["p50"], "ms", note=f"n={lat['n']}")
    figures.budget(test, "log() -> visible on head p99", lat["p99"], "ms", VISIBLE_P99_BUDGET)
    benchmark.extra_info.update(p50_ms=lat["p50"], p99_ms=lat["p99"])
    figures.check(test)
