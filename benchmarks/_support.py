"""Measurement helpers shared by the benchmark modules: sizes, percentiles, per-call sampling, the floor.

Everything that decides *how big* a benchmark is lives in :data:`SIZES`, with a quick and a full value. Quick
sizes are used when ``TRACKIOD_BENCH_QUICK=1`` or when pytest-benchmark is disabled (``--benchmark-disable``,
the CI smoke run); full sizes otherwise. Budgets are asserted only at full size (see conftest.py).
"""

from __future__ import annotations

import array
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: name -> (quick, full)
SIZES: dict[str, tuple[int, int]] = {
    # Hub sync: points per key (4 keys) exported in a full pass, and the share appended for an incremental one
    "sync_points": (50_000, 1_000_000),
    # log() against the floor: interleaved batches of single calls, each call timed on its own
    "log_batches": (4, 60),
    "log_batch_calls": (500, 2_000),
    "log_sustained_calls": (20_000, 300_000),
    # log() with no daemon: calls made after the buffer is full, to see it spool
    "nodaemon_buffer_bytes": (2 << 20, 16 << 20),
    "nodaemon_spool_calls": (40_000, 600_000),
    # daemon ingest: senders x steps x 10 keys
    "ingest_senders": (2, 2),
    "ingest_steps": (20_000, 200_000),
    # one-key frames logged flat out by one sender (test_ingest.py)
    "one_key_frames": (200_000, 2_000_000),
    "paced_seconds": (1, 4),
    # forwarding (test_forwarding.py): steps x 10 keys per sender, one sender per node; paced seconds at 100k pts/s
    "forward_steps": (10_000, 60_000),
    "forward_paced_seconds": (2, 6),
    # system and GPU sampling: samples timed per figure
    "sampling_samples": (20, 300),
    # store read
    "read_points": (100_000, 1_000_000),
    "read_repeats": (3, 15),
    # fresh interpreters for import / init / finish
    "startup_repeats": (2, 12),
    # tensors: single log() calls per variant, and MLP training steps per variant (interleaved batches)
    "tensor_calls": (300, 5_000),
    "tensor_batches": (2, 10),
    "tensor_steps": (50, 400),
    # dashboard: one chart request for one series; the runs table; a page of runs x metrics x points in a browser
    "chart_points": (100_000, 1_000_000),
    "chart_repeats": (3, 25),
    "table_runs": (1_000, 10_000),
    "table_repeats": (3, 15),
    "page_runs": (10, 100),
    "page_metrics": (10, 10),
    "page_points": (10_000, 100_000),
    "page_repeats": (1, 3),
    # peers (test_peers.py): interleaved batches x single calls (fewer for the slow trackers, see peers.calls_for);
    # fresh processes per tracker for import / init / finish; paced steps before a kill -9
    "peer_batches": (2, 20),
    "peer_calls": (500, 2_000),
    "peer_repeats": (1, 7),
    "peer_kill_steps": (150, 600),
    # the dataset query (test_dataset.py): runs x 5-minute ticks (2016 = a week) of keys x steps per tick; the
    # uncompacted layout (one file per run per tick, as before compaction) is written for this many ticks only
    "dataset_runs": (3, 10),
    "dataset_ticks": (200, 2016),
    "dataset_uncompacted_ticks": (200, 500),
    # a sweep (test_dataset.py): this many short runs of three ticks each, every one ended
    "dataset_sweep_runs": (50, 500),
    # restart (test_restart.py): one-key frames in a dead trainer's spool, points in the database, one-key
    # frames sent through the socket
    "restart_spool_frames": (200_000, 10_000_000),
    "restart_db_points": (500_000, 80_000_000),
    "socket_frames": (100_000, 2_000_000),
    # history reads (test_history.py): steps x 10 keys of one run; runs listed by `trackiod runs`
    "history_steps": (100_000, 1_000_000),
    "history_repeats": (2, 5),
    "list_runs": (200, 1_000),
}


def percentiles(samples: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 90, 99, 99.9)) -> dict[str, float]:
    """``{"p50": ..., "p99": ...}`` of ``samples`` (any unit), plus ``n`` and ``mean``."""
    a = np.asarray(samples, dtype=np.float64)
    out = {f"p{q:g}": float(np.percentile(a, q)) for q in qs}
    out["mean"] = float(a.mean())
    out["n"] = int(a.size)
    return out


def time_calls(fn: Callable[[Any], Any], arg: Any, calls: int, out: array.array[int]) -> None:
    """Time ``calls`` single calls of ``fn(arg)`` with perf_counter_ns, appending each duration (ns) to ``out``.

    ``out`` is an ``array("q")``: raw 8-byte slots, so the samples do not allocate an int object each and
    do not disturb memory measurements. The two clock reads (about 80 ns) are included in every sample.
    """
    clock = time.perf_counter_ns
    append = out.append
    for _ in range(calls):
        t0 = clock()
        fn(arg)
        append(clock() - t0)


def samples() -> array.array[int]:
    return array.array("q")


def interleaved(
    fns: dict[str, Callable[[Any], Any]],
    arg: Any,
    batches: int,
    calls: int,
    out: dict[str, array.array[int]] | None = None,
) -> dict[str, array.array[int]]:
    """Per-call timings (ns) of several functions, alternating batches of ``calls`` so drift hits all alike."""
    if out is None:
        out = {name: samples() for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            time_calls(fn, arg, calls, out[name])
    return out


def tight_loop_ns(fn: Callable[[Any], Any], arg: Any, calls: int) -> float:
    """Mean ns per call over a tight loop (no per-call timer)."""
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn(arg)
    return (time.perf_counter_ns() - t0) / calls


def ten_scalars() -> dict[str, float]:
    """The dict every log benchmark sends: 10 floats under realistic names."""
    names = ["loss", "accuracy", "lr", "grad_norm", "tokens_per_s", "loss_ema", "val_loss", "ppl", "mem_gb", "clip"]
    return {f"train/{name}": 0.125 * (i + 1) for i, name in enumerate(names)}


# ---------------------------------------------------------------------------------------------- the floor
_RECEIVER = """
import sys, zmq
ctx = zmq.Context(io_threads=1)
sock = ctx.socket(zmq.ROUTER)
sock.setsockopt(zmq.LINGER, 0)
sock.bind(sys.argv[1])
print("ready", flush=True)
recv = sock.recv
while True:
    peer = recv()  # a DEALER's single-part message arrives as [identity, body]
    body = recv()
    if len(body) < 6:
        if body == b"hello":
            sock.send_multipart([peer, b"hello"])
        elif body == b"stop":
            break
"""


@dataclass
class Floor:
    """The floor: ``msgpack.packb(d)`` plus a blocking DEALER ``send`` over ipc to a ROUTER that only drains."""

    proc: subprocess.Popen[bytes]
    ctx: Any
    sock: Any
    send: Callable[[Any], None]

    def close(self) -> None:
        try:
            self.sock.send(b"stop")
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.sock.close(linger=0)
        self.ctx.term()


def start_floor() -> Floor:
    """Start the draining receiver in another process and connect a DEALER to it (handshake included)."""
    import msgpack
    import zmq

    directory = tempfile.mkdtemp(prefix="tkbf")
    endpoint = f"ipc://{directory}/floor.sock"
    proc = subprocess.Popen([sys.executable, "-c", _RECEIVER, endpoint], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the floor receiver did not start")
    ctx = zmq.Context(io_threads=1)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(b"hello")
    if not sock.poll(10_000):
        raise RuntimeError("the floor receiver did not answer")
    sock.recv()
    packb, zsend = msgpack.packb, sock.send

    def send(data: Any) -> None:
        zsend(packb(data))

    return Floor(proc, ctx, sock, send)


# ---------------------------------------------------------------------------------------------- subprocesses
def run_json(code: str, env: dict[str, str], *args: str, timeout: float = 300) -> Any:
    """Run ``code`` (with ``args`` as sys.argv[1:]) in a fresh interpreter; parse its last stdout line as JSON."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(f"benchmark script failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def start_senders(script: str, envs: Sequence[dict[str, str]], *args: Any) -> list[subprocess.Popen[str]]:
    """One sender process per env running ``script`` with ``args`` and ``sender-<i>``; each prints ``ready``
    once initialised and waits for :func:`release_senders` (so that they all start logging together)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args), f"sender-{i}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, env in enumerate(envs)
    ]
    for p in procs:
        assert p.stdout is not None and p.stderr is not None
        line = p.stdout.readline().strip()
        if line != "ready":
            p.kill()
            raise AssertionError(f"sender did not start: {line!r} {p.stderr.read()}")
    return procs


def release_senders(
    procs: list[subprocess.Popen[str]], watch: Callable[[], None], timeout: float
) -> list[dict[str, Any]]:
    """Release the senders together, call ``watch()`` (which paces itself) until they are done or ``timeout``
    passes, and return each one's report (the JSON of its last output line)."""
    outputs: list[tuple[str, str]] = [("", "")] * len(procs)

    def collect(i: int) -> None:  # read each sender's output as it comes (a full pipe would stall it)
        outputs[i] = procs[i].communicate(timeout=timeout)

    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    readers = [threading.Thread(target=collect, args=(i,), daemon=True) for i in range(len(procs))]
    for r in readers:
        r.start()
    deadline = time.monotonic() + timeout
    while any(r.is_alive() for r in readers) and time.monotonic() < deadline:
        watch()
    reports = []
    for p, r, (out, err) in zip(procs, readers, outputs):
        r.join(timeout=1)
        if p.returncode != 0:
            raise AssertionError(f"sender failed ({p.returncode}):\n{out}\n{err}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports
