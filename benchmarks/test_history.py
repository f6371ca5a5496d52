"""The read API on a large run, and ``trackiod runs`` on many runs (issue 16, part 6).

The database is built the way the daemon builds it (``Store.write_series`` in batches, sealed chunks), one run
of ``history_steps`` steps x 10 keys plus ``list_runs`` small runs, and read through ``trackio_shim.Api``.

- ``history(samples=500)``: budget <= 100 ms, on one Api (which keeps its connection), and also printed with a
  new Api for each call. It reads each key's chunk rows and then only the sampled points
  (trackiod.read.sampled); the peer in the same run is the dashboard's read of the same data (``read_series`` of
  every key on a mapped connection, what a chart of each key costs), which a history read paid before.
- ``scan_history()`` of every key and ``scan_history(keys=["k0"])``, streamed: budget >= 1M values/s each.
- ``trackiod runs`` in a fresh process, start-up included: budget <= 200 ms; the floor is ``python -c pass``.

On a shared machine the wall-clock figures move with the other processes; the CPU time of this process (also
printed) is the figure that holds there.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks._support import percentiles

HISTORY_BUDGET_MS = 100.0
SCAN_BUDGET = 1_000_000  # values/s
RUNS_BUDGET_MS = 200.0
KEYS = 10


def _build(home: Path, steps: int, runs: int) -> None:
    from trackio_shim.settings import TrackiodSettings
    from trackiod.store.writer import Store

    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(home)})
    settings.ensure_dirs()
    store = Store(settings.db_path)
    with store.conn:
        run_id = int(store.create_run("bench-history", "big", "big", {}, {}, "host", 1)["id"])
        key_ids = [store.key_id(f"k{k}") for k in range(KEYS)]
    rng = np.random.default_rng(0)
    for start in range(0, steps, 25_000):
        chunk = np.arange(start, min(start + 25_000, steps), dtype=np.int64)
        with store.conn:
            for key_id in key_ids:
                store.write_series(run_id, key_id, chunk, 1.7e9 + chunk * 0.01, rng.random(chunk.size))
    with store.conn:
        store.count_keys({(run_id, key_id): ("scalar", steps, steps - 1) for key_id in key_ids})
        for i in range(runs):
            store.create_run("bench-runs", f"r{i:05d}", f"run-{i}", {"lr": 0.001, "seed": i}, {}, "host", 1)
    store.close()


@pytest.mark.benchmark(group="history")
def test_history_and_scan(benchmark: Any, env: dict[str, str], figures: Any, mode: Any) -> None:
    from trackio_shim import Api
    from trackiod.read.connection import open_reader
    from trackiod.read.runs import get_run, run_keys
    from trackiod.read.series import read_series

    test = "read API, 1 run x 10 keys"
    steps, repeats = mode.size("history_steps"), mode.size("history_repeats")
    home = Path(env["TRACKIOD_HOME"])
    _build(home, steps, 0)
    run = Api().run("bench-history/big")
    assert len(run.history(samples=500, pandas=False)) == min(500, steps)  # warm the page cache

    def dashboard_reads() -> None:
        conn = open_reader(home / "trackiod.db", mapped=True)
        try:
            row = get_run(conn, "bench-history", "big")
            assert row is not None
            for key_id, _, _ in run_keys(conn, row["id"]).values():
                read_series(conn, row["id"], key_id)
        finally:
            conn.close()

    history_ms, history_cpu_ms, peer_ms, fresh_ms = [], [], [], []
    for _ in range(repeats * 2):
        started, cpu = time.perf_counter(), time.process_time()
        run.history(samples=500, pandas=False)
        history_ms.append((time.perf_counter() - started) * 1000)
        history_cpu_ms.append((time.process_time() - cpu) * 1000)
        started = time.perf_counter()
        dashboard_reads()
        peer_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()  # a new Api: its first read opens and maps the file
        Api().run("bench-history/big").history(samples=500, pandas=False)
        fresh_ms.append((time.perf_counter() - started) * 1000)
    h, p = percentiles(history_ms, (50,)), percentiles(peer_ms, (50,))
    h_cpu, fresh = percentiles(history_cpu_ms, (50,)), percentiles(fresh_ms, (50,))

    def scan(keys: list[str] | None) -> tuple[int, float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        values = sum(len(row) - 3 for row in run.scan_history(keys=keys))
        return values, time.perf_counter() - started, time.process_time() - cpu

    values, scan_s, scan_cpu = benchmark.pedantic(scan, args=(None,), rounds=1, iterations=1)
    assert values == steps * KEYS
    one, one_s, one_cpu = scan(["k0"])
    assert one == steps

    figures.add(test, "steps x keys", steps * KEYS, "points")
    figures.budget(test, "history(samples=500) p50", h["p50"], "ms", HISTORY_BUDGET_MS)
    figures.add(test, "history(samples=500) p50, CPU time", h_cpu["p50"], "ms")
    figures.add(test, "history(samples=500) p50, a new Api each time", fresh["p50"], "ms")
    figures.add(
        test,
        "peer: dashboard read_series of each key p50",
        p["p50"],
        "ms",
        note=f"history/peer {h['p50'] / p['p50']:.3f}",
    )
    figures.budget(test, "scan_history() of every key", values / scan_s, "values/s", SCAN_BUDGET, at_least=True)
    figures.add(test, "scan_history() of every key, per CPU second", values / scan_cpu, "values/s")
    figures.budget(test, "scan_history(keys=['k0'])", one / one_s, "values/s", SCAN_BUDGET, at_least=True)
    figures.add(test, "scan_history(keys=['k0']), per CPU second", one / one_cpu, "values/s")
    figures.check(test)


@pytest.mark.benchmark(group="history")
def test_trackiod_runs_startup_included(benchmark: Any, env: dict[str, str], figures: Any, mode: Any) -> None:
    test = "trackiod runs"
    runs = mode.size("list_runs")
    home = Path(env["TRACKIOD_HOME"])
    _build(home, 10, runs)
    child_env = {**os.environ, **env}
    # As an installed package, which has its bytecode: with PYTHONDONTWRITEBYTECODE=1 (set on some machines) a
    # checkout would compile every module it imports at every start, about 0.1-0.3 s that users do not pay.
    child_env.pop("PYTHONDONTWRITEBYTECODE", None)

    cpu_ms: list[float] = []

    def timed(args: list[str]) -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(args, env=child_env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        wall = (time.perf_counter() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_ms.append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
        return wall

    command = [sys.executable, "-m", "trackiod", "runs"]
    timed(command)  # warm the page cache and the bytecode
    cli_ms, floor_ms, cli_cpu, floor_cpu = [], [], [], []
    for _ in range(mode.size("history_repeats") * 2):
        cli_ms.append(timed(command))
        cli_cpu.append(cpu_ms[-1])
        floor_ms.append(timed([sys.executable, "-c", "pass"]))
        floor_cpu.append(cpu_ms[-1])
    benchmark.pedantic(timed, args=(command,), rounds=1, iterations=1)
    c, f = percentiles(cli_ms, (50,)), percentiles(floor_ms, (50,))
    c_cpu, f_cpu = percentiles(cli_cpu, (50,)), percentiles(floor_cpu, (50,))
    figures.add(test, "runs listed", runs + 1, "runs")
    figures.budget(test, "trackiod runs p50, start-up included", c["p50"], "ms", RUNS_BUDGET_MS)
    figures.add(test, "floor: python -c pass p50", f["p50"], "ms", note=f"ratio {c['p50'] / f['p50']:.2f}")
    figures.add(test, "trackiod runs p50, CPU time", c_cpu["p50"], "ms", note=f"python -c pass: {f_cpu['p50']:.0f} ms")
    figures.check(test)
