"""The training-process side of the peer comparison: one tracker, one task, in a fresh interpreter.

``python -m benchmarks.peers_child TASK LIBRARY RUN_ID [ARGS]`` (from the repository root; the environment,
built by :func:`benchmarks.peers.peer_env`, points every library at a temporary directory). Tasks:

- ``lifecycle STEPS``: import, init(), STEPS log() calls, finish(); prints the times as JSON.
- ``latency BATCHES CALLS SAMPLES_PATH``: init(), then batches of single log() calls interleaved with the
  msgpack + zmq floor (and an empty call, the timer's own cost), each call timed on its own; writes the raw
  samples (ns, ``.npz``) and prints percentiles, init() and finish() times as JSON.
- ``kill STEPS PACE_MS TIMES_PATH``: init(), then STEPS log() calls, one every PACE_MS; the monotonic time
  each call returned goes into TIMES_PATH (a file of STEPS + 1 float64, memory-mapped, so it survives the
  process); right after the last call returns, the time is written to the last slot and the process sends
  itself SIGKILL. Nothing else runs in between: no finish(), no atexit, no flush.

Every library logs the same 10-scalar dict once per step, the way its documentation shows: ``run.log(d)``
(trackio_shim, wandb), ``trackio.log(d)``, ``mlflow.log_metrics(d, step=step)``, and one
``writer.add_scalar(key, value, step)`` per key (tensorboardX). Only the standard library is imported before
the tracker, so the import time measured is the tracker's alone.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

PROJECT = "peers"

# Steps are numbered from 0 by every library: the shim, trackio and wandb count them themselves; MLflow and
# tensorboardX are given the same numbers explicitly.


def _names() -> dict[str, float]:
    names = ["loss", "accuracy", "lr", "grad_norm", "tokens_per_s", "loss_ema", "val_loss", "ppl", "mem_gb", "clip"]
    return {f"train/{name}": 0.125 * (i + 1) for i, name in enumerate(names)}


def _import(library: str) -> Any:
    if library == "trackio_shim":
        import trackio_shim

        return trackio_shim
    if library == "trackio":
        import trackio

        return trackio
    if library == "wandb":
        import wandb

        return wandb
    if library == "mlflow":
        import mlflow

        return mlflow
    if library == "tensorboardX":
        import tensorboardX

        return tensorboardX
    raise SystemExit(f"unknown library {library!r}")


def _init(library: str, module: Any, run_id: str) -> tuple[Callable[[dict[str, float]], Any], Callable[[], Any]]:
    """Start a run; return its ``log(d)`` and ``finish()``."""
    if library == "trackio_shim":
        run = module.init(project=PROJECT, id=run_id)
        return run.log, run.finish
    if library == "trackio":
        module.init(project=PROJECT, name=run_id)
        return module.log, module.finish
    if library == "wandb":
        settings = module.Settings(console="off", silent=True)
        run = module.init(project=PROJECT, id=run_id, mode="offline", dir=os.environ["WANDB_DIR"], settings=settings)
        return run.log, run.finish
    if library == "mlflow":
        module.set_experiment(PROJECT)
        module.start_run(run_name=run_id)
        log_metrics = module.log_metrics
        step = 0

        def log_mlflow(data: dict[str, float]) -> None:
            nonlocal step
            log_metrics(data, step=step)
            step += 1

        return log_mlflow, module.end_run
    if library == "tensorboardX":
        writer = module.SummaryWriter(logdir=os.path.join(os.environ["TRACKIOD_PEER_DIR"], "tensorboardX", run_id))
        add_scalar = writer.add_scalar
        tb_step = 0

        def log_tensorboardx(data: dict[str, float]) -> None:
            nonlocal tb_step
            for key, value in data.items():
                add_scalar(key, value, tb_step)
            tb_step += 1

        return log_tensorboardx, writer.close
    raise SystemExit(f"unknown library {library!r}")


def lifecycle(library: str, run_id: str, steps: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    module = _import(library)
    t1 = time.perf_counter()
    log, finish = _init(library, module, run_id)
    t2 = time.perf_counter()
    data = _names()
    for _ in range(steps):
        log(data)
    t3 = time.perf_counter()
    finish()
    t4 = time.perf_counter()
    return {
        "import_ms": (t1 - t0) * 1e3,
        "init_ms": (t2 - t1) * 1e3,
        "log_ms": (t3 - t2) * 1e3,
        "finish_ms": (t4 - t3) * 1e3,
    }


def latency(library: str, run_id: str, batches: int, calls: int, samples_path: str) -> dict[str, Any]:
    module = _import(library)
    import numpy as np

    from benchmarks._support import interleaved, percentiles, start_floor

    t0 = time.perf_counter()
    log, finish = _init(library, module, run_id)
    init_ms = (time.perf_counter() - t0) * 1e3
    floor = start_floor()
    try:
        fns = {"floor": floor.send, "log": log, "timer": lambda data: None}
        data = _names()
        interleaved(fns, data, 1, max(20, calls // 4))  # warm-up: first calls, caches, background threads
        timed = interleaved(fns, data, batches, calls)
    finally:
        floor.close()
    t0 = time.perf_counter()
    finish()
    finish_ms = (time.perf_counter() - t0) * 1e3
    np.savez(samples_path, **{name: np.frombuffer(values, dtype=np.int64) for name, values in timed.items()})
    return {
        "init_ms": init_ms,
        "finish_ms": finish_ms,
        "logged": batches * calls + max(20, calls // 4),
        **{name: percentiles(values) for name, values in timed.items()},
    }


def kill(library: str, run_id: str, steps: int, pace_ms: float, times_path: str) -> None:
    module = _import(library)
    log, _finish = _init(library, module, run_id)
    with open(times_path, "r+b") as f:
        times = memoryview(mmap.mmap(f.fileno(), (steps + 1) * 8)).cast("d")
    data = _names()
    clock = time.monotonic
    pace = pace_ms / 1e3
    next_at = clock()
    for step in range(steps):
        log(data)
        times[step] = clock()
        next_at += pace
        if step + 1 < steps:
            delay = next_at - clock()
            if delay > 0:
                time.sleep(delay)
    times[steps] = clock()
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    task, library, run_id, *args = argv
    if task == "lifecycle":
        report = lifecycle(library, run_id, int(args[0]))
    elif task == "latency":
        report = latency(library, run_id, int(args[0]), int(args[1]), args[2])
    elif task == "kill":
        kill(library, run_id, int(args[0]), float(args[1]), args[2])
        raise SystemExit("still alive after SIGKILL")
    else:
        raise SystemExit(f"unknown task {task!r}")
    sys.stdout.flush()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
