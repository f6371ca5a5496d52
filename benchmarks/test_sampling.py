"""What system and GPU sampling costs the daemon; budget < 1% of one core at the default 2 s interval.

Both halves of the cost are measured as CPU time of the thread doing the work (``time.thread_time``), so
other load on the machine does not inflate them:
- the sampler thread taking one sample: psutil (CPU, load, memory, swap, disk, network), four watched
  processes (this one and three children), and eight GPUs through the scripted fake NVML (no GPU here; the
  fake answers from Python and stats its script file on each read, which is no cheaper than a real NVML
  call through ctypes);
- the writer applying that sample: series buffered, energy attributed, one transaction committed.
The floor, measured in the same run, is the least a sampler can do: ``psutil.cpu_percent()`` plus
``psutil.virtual_memory()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

INTERVAL_S = 2.0
BUDGET_CORE_PERCENT = 1.0
GPUS = 8


def _cpu_per_call(fn: Any, repeats: int) -> float:
    started = time.thread_time()
    for _ in range(repeats):
        fn()
    return (time.thread_time() - started) / repeats


@pytest.mark.benchmark(group="sampling")
def test_sampling_cost(benchmark: Any, tmp_path: Path, figures: Any, mode: Any) -> None:
    from trackiod.ingest.runs import RunBook
    from trackiod.sampling.energy import EnergyBook
    from trackiod.sampling.sampler import Sampler
    from trackiod.store.writer import Store
    from trackiod.testing.fake_nvml import ScriptedNvml

    test = "sampling"
    repeats = mode.size("sampling_samples")
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(3)]
    pids = [os.getpid(), *(c.pid for c in children)]
    script = tmp_path / "nvml.json"
    gpus = [
        {"uuid": f"GPU-{i:04d}", "name": "Fake H100", "utilization": 90, "processes": {str(pids[i % 4]): 1e9}}
        for i in range(GPUS)
    ]
    script.write_text(json.dumps({"gpus": gpus}))
    store = Store(tmp_path / "bench.db")
    try:
        runbook = RunBook(store, {}, lambda sid, text: None)
        host = os.uname().nodename
        with store.conn:
            for i, pid in enumerate(pids):
                sid = pid.to_bytes(16, "big")
                store.save_session(sid, {"pid": pid, "host": host}, None)
                runbook.start(sid, 1, {"project": "bench", "id": f"r{i}", "name": f"r{i}"})
        book = EnergyBook(store, runbook, host, INTERVAL_S, 475.0, "")
        sampler = Sampler(INTERVAL_S, ScriptedNvml(script))
        sampler.open()
        sessions = book.live_sessions()
        sampler.watch(frozenset(s.pid for s in sessions))
        sampler.sample()  # warm: psutil's first readings, NVML "unsupported" discovery

        floor_s = _cpu_per_call(lambda: (psutil.cpu_percent(interval=None), psutil.virtual_memory()), repeats)
        sample_s = _cpu_per_call(sampler.sample, repeats)

        def apply_one() -> None:
            taken = [sampler.sample()]
            started = time.thread_time()
            with store.conn:
                book.apply(taken, book.live_sessions())
                runbook.save_dirty()
            apply_cpu.append(time.thread_time() - started)

        apply_cpu: list[float] = []
        for _ in range(repeats):
            apply_one()
        apply_s = sorted(apply_cpu)[len(apply_cpu) // 2]
        benchmark.pedantic(sampler.sample, rounds=5, iterations=1)
        assert len(sampler.gpus) == GPUS and book.live_sessions()
        energy = store.conn.execute("SELECT COUNT(*), SUM(joules) FROM run_gpus").fetchone()
        assert energy is not None and energy[0] == GPUS and energy[1] > 0  # the work measured is the real work
    finally:
        for child in children:
            child.kill()
            child.wait()
        store.close()

    total_s = sample_s + apply_s
    figures.add(test, "floor: psutil cpu_percent + virtual_memory", floor_s * 1e3, "ms CPU")
    figures.add(test, f"sampler thread: one sample, {GPUS} GPUs, 4 processes", sample_s * 1e3, "ms CPU")
    figures.add(test, "writer: apply one sample and commit (median)", apply_s * 1e3, "ms CPU")
    figures.add(test, "sample / floor", sample_s / floor_s, "x")
    figures.budget(test, f"share of one core at {INTERVAL_S:g} s", 100 * total_s / INTERVAL_S, "%", BUDGET_CORE_PERCENT)
    figures.check(test)
