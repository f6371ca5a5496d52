"""The reliability training script and the checks on what it stored, shared by the daemon and ingest tests.

TRAIN logs ``value = step * 10 + k`` for keys ``k0..k9`` in project PROJECT; ``assert_complete`` reads the run
back through ``trackio_shim.Api().run(...).scan_history()`` and also from the raw chunk blobs, because
scan_history shows one value per step and so would hide a point stored twice.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import numpy as np

from tests.support.daemons import wait_for
from tests.support.scripts import spawn_script

PROJECT = "rel"
KEYS = 10

# A training script. T_RUN: run id; T_STEPS: steps to log (0: until the file T_STOP exists);
# T_PACE: sleep 1 ms every T_PACE steps; T_GO: a file touched once 500 steps are logged;
# T_END: "finish" (default), "raise" (an uncaught exception), "hang" (log, then wait to be killed),
# "atexit" (exit without finish()), "exit3" (sys.exit(3) without finish()).
TRAIN = """
import json, os, sys, time
from pathlib import Path
import trackio_shim as wandb

run_id = os.environ["T_RUN"]
steps = int(os.environ.get("T_STEPS", "0"))
stop = Path(os.environ["T_STOP"]) if os.environ.get("T_STOP") else None
go = Path(os.environ["T_GO"]) if os.environ.get("T_GO") else None
pace = int(os.environ.get("T_PACE", "0"))
end = os.environ.get("T_END", "finish")
wandb.init(project="rel", id=run_id)
latencies = []
step = 0
give_up = time.monotonic() + 150
while True:
    if steps and step >= steps:
        break
    if not steps and step % 100 == 0 and (stop.exists() or time.monotonic() > give_up):
        break
    values = {f"k{k}": step * 10 + k for k in range(10)}
    t0 = time.perf_counter()
    wandb.log(values)
    latencies.append(time.perf_counter() - t0)
    step += 1
    if pace and step % pace == 0:
        time.sleep(0.001)  # T_PACE: paces the load
    if go is not None and step == 500:
        go.touch()
latencies.sort()
report = {"steps": step, "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else 0.0,
          "max_ms": latencies[-1] * 1e3 if latencies else 0.0}
if end == "raise":
    print(json.dumps(report), flush=True)
    raise RuntimeError("training blew up")
if end == "hang":
    print(json.dumps(report), flush=True)
    while True:
        time.sleep(1)  # "hang": idle until the test kills it
if end in ("atexit", "exit3"):
    print(json.dumps(report), flush=True)
    if end == "exit3":
        sys.exit(3)
    raise SystemExit
t0 = time.perf_counter()
wandb.finish()
report["finish_s"] = time.perf_counter() - t0
print(json.dumps(report), flush=True)
"""


def start_training(env: dict[str, str], run_id: str, **params: Any) -> subprocess.Popen[str]:
    """Spawn TRAIN with ``T_<NAME>`` variables from ``params`` (e.g. steps=100 sets T_STEPS)."""
    extra = {f"T_{name.upper()}": str(value) for name, value in params.items()}
    return spawn_script(TRAIN, {**env, "T_RUN": run_id, **extra})


def report_of(proc: subprocess.Popen[str], timeout: float = 120, returncode: int = 0) -> dict[str, Any]:
    """Wait for a TRAIN process and return the JSON report it printed."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == returncode, f"training exited {proc.returncode}:\n{out}\n{err}"
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no report from the training script:\n{out}\n{err}"
    return dict(json.loads(lines[-1]))


def raw_points(run_id: str) -> dict[str, np.ndarray] | None:
    """Every stored (step, value) of a run, straight from the chunk blobs: ``{key: array of [step, value]}``."""
    from trackio_shim import Api
    from trackiod.read.connection import open_reader
    from trackiod.read.runs import get_run

    api = Api()
    if not api.settings.db_path.exists():
        return None
    conn = open_reader(api.settings.db_path)
    try:
        row = get_run(conn, PROJECT, run_id)
        if row is None:
            return None
        out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for name, steps, vals in conn.execute(
            "SELECT k.name, c.steps, c.vals FROM chunks c JOIN keys k ON k.id = c.key_id WHERE c.run_id=? "
            "ORDER BY c.id",
            (row["id"],),
        ):
            out.setdefault(name, []).append((np.frombuffer(steps, "<i8"), np.frombuffer(vals, "<f8")))
        return {
            name: np.column_stack((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
            for name, parts in out.items()
        }
    finally:
        conn.close()


def stored_points(run_id: str) -> int:
    """How many points of a run are in the database (0 when there is no run or no database yet)."""
    points = raw_points(run_id)
    return 0 if not points else sum(len(a) for a in points.values())


def assert_complete(run_id: str, steps: int, timeout: float = 30) -> None:
    """Every step 0..steps-1 of ``run_id`` stored exactly once for each key, with the logged values."""
    assert steps > 0
    expected = steps * KEYS
    wait_for(lambda: stored_points(run_id) >= expected, timeout=timeout, what=f"{expected} points of run {run_id}")
    points = raw_points(run_id)
    assert points is not None
    assert sorted(points) == [f"k{k}" for k in range(KEYS)]
    want_steps = np.arange(steps, dtype=np.int64)
    for k in range(KEYS):
        series = points[f"k{k}"]
        assert len(series) == steps, f"k{k}: {len(series)} points stored for {steps} steps"
        order = np.argsort(series[:, 0], kind="stable")
        got_steps = series[order, 0].astype(np.int64)
        assert np.array_equal(got_steps, want_steps), f"k{k}: steps missing or duplicated"
        assert np.array_equal(series[order, 1], want_steps * 10.0 + k), f"k{k}: wrong values"

    from trackio_shim import Api

    run = Api().run(f"{PROJECT}/{run_id}")
    rows = list(run.scan_history())
    assert len(rows) == steps
    assert [r["_step"] for r in rows] == list(range(steps))
    bad = [r for r in rows if any(r.get(f"k{k}") != r["_step"] * 10 + k for k in range(KEYS))]
    assert not bad, f"{len(bad)} rows with wrong values, first: {bad[0]}"
    assert run.last_step == steps - 1
