"""Start-up and shut-down costs a training script pays once: import, init() and finish().

- ``import trackio_shim`` in a fresh interpreter: timed inside the child (perf_counter around the import),
  and cross-checked as the wall time of ``python -c "import trackio_shim"`` minus that of ``python -c pass``
  (the floor), interleaved. Budget: <= 50 ms.
- ``init()`` with a daemon running, in a fresh process (first init: settings, ZeroMQ context and socket, the
  pump thread, a ping, and RUN_START answered after its commit). Budget: <= 50 ms.
- ``finish()`` after 1,000 logged steps (waits until the daemon has acknowledged everything). Budget: <= 100 ms.
  finish() right after a flat-out burst is reported too: it then waits for the daemon to catch up.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

import pytest

from benchmarks._support import run_json
from tests.support.daemons import DaemonProcess

IMPORT_BUDGET_MS = 50.0
INIT_BUDGET_MS = 50.0
FINISH_BUDGET_MS = 100.0

IMPORT_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import trackio_shim
t1 = time.perf_counter()
heavy = sorted(m for m in ("numpy", "apsw", "psutil", "torch", "trackiod") if m in sys.modules)
print(json.dumps({"import_ms": (t1 - t0) * 1000, "modules": len(sys.modules), "heavy": heavy}))
"""

LIFECYCLE_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import trackio_shim as wandb
t1 = time.perf_counter()
run = wandb.init(project="bench-startup", config={"lr": 3e-4, "batch_size": 64})
t2 = time.perf_counter()
data = {f"train/metric_{j}": 0.5 * j for j in range(10)}
for _ in range(int(sys.argv[1])):
    run.log(data)
t3 = time.perf_counter()
run.finish()
t4 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "init_ms": (t2 - t1) * 1e3, "log_ms": (t3 - t2) * 1e3,
                  "finish_ms": (t4 - t3) * 1e3, "seq": run._client.seq, "acked": run._client.acked}))
"""


def _wall(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


@pytest.mark.benchmark(group="startup")
def test_import_time(benchmark: Any, env: dict[str, str], figures: Any, mode: Any) -> None:
    test = "import trackio_shim"
    repeats = mode.size("startup_repeats")
    _wall(["-c", "import trackio_shim"], env)  # warm the page cache and .pyc files
    floor, full, inside = [], [], []
    for _ in range(repeats):
        floor.append(_wall(["-c", "pass"], env))
        full.append(_wall(["-c", "import trackio_shim"], env))
        inside.append(run_json(IMPORT_CHILD, env)["import_ms"])
    child = run_json(IMPORT_CHILD, env)
    figures.add(test, "python -c pass (floor), median wall", statistics.median(floor), "ms", note=f"n={repeats}")
    figures.add(test, "python -c 'import trackio_shim', median wall", statistics.median(full), "ms")
    figures.budget(
        test, "import, wall minus floor", statistics.median(full) - statistics.median(floor), "ms", IMPORT_BUDGET_MS
    )
    figures.budget(test, "import, timed in the child (median)", statistics.median(inside), "ms", IMPORT_BUDGET_MS)
    figures.add(test, "modules loaded after import", child["modules"], "modules")
    assert child["heavy"] == [], f"import trackio_shim pulled in {child['heavy']}"
    benchmark.pedantic(_wall, args=(["-c", "import trackio_shim"], env), rounds=repeats, iterations=1)
    figures.check(test)


@pytest.mark.benchmark(group="startup")
def test_init_and_finish(benchmark: Any, daemon: DaemonProcess, env: dict[str, str], figures: Any, mode: Any) -> None:
    test = "init() and finish()"
    repeats = mode.size("startup_repeats")
    run_json(LIFECYCLE_CHILD, env, "1000")  # the first run also creates the project's rows; not counted
    reports = [run_json(LIFECYCLE_CHILD, env, "1000") for _ in range(repeats)]
    assert all(r["acked"] >= r["seq"] for r in reports), "finish() returned before everything was acknowledged"
    init_ms = [r["init_ms"] for r in reports]
    finish_ms = [r["finish_ms"] for r in reports]
    figures.budget(test, "init(), daemon running, median", statistics.median(init_ms), "ms", INIT_BUDGET_MS)
    figures.add(test, "init() max", max(init_ms), "ms", note=f"n={repeats}")
    figures.budget(test, "finish() after 1,000 steps, median", statistics.median(finish_ms), "ms", FINISH_BUDGET_MS)
    figures.add(test, "finish() after 1,000 steps, max", max(finish_ms), "ms")

    burst = 2_000 if mode.quick else 20_000
    after_burst = run_json(LIFECYCLE_CHILD, env, str(burst))
    figures.add(
        test,
        f"finish() right after {burst:,} steps flat out",
        after_burst["finish_ms"],
        "ms",
        note=f"logging took {after_burst['log_ms']:.0f} ms; finish waits for the daemon to catch up",
    )
    benchmark.pedantic(run_json, args=(LIFECYCLE_CHILD, env, "1000"), rounds=1, iterations=1)
    figures.check(test)
