"""A restarted daemon with a large spool and a large database serves at once and reads the spool fast.

Real processes: a daemon (``python -m trackiod start --foreground``) on a home holding a dead trainer's spool of
one-key LOG frames (tests/support/spool_files.py) and a database of many points (``Store.write_series``).

- Restart to serving: daemon start -> ``trackiod status`` answered -> a new trainer's init() answered, with the
  large spool and database, against the same daemon start with an empty home in the same run (process start-up
  and imports are in both; the difference is what the spool and the database cost). Budget: the difference
  <= 1 s (issue 16, part 4).
- Spool frames/s: spooled frames / (serving -> the last spool file read), against the floor measured in the same
  run: decoding the same files with ``msgpack.Unpacker`` alone. Budget: >= 500,000 frames/s (part 7). The
  daemon's peak RSS while it reads is reported (files are streamed: memory does not grow with the spool).
- Socket frames/s: one-key LOG frames, one per ZeroMQ message, sent from a raw DEALER in another process as
  fast as the daemon acknowledges them, against the floor: the same frames into a ROUTER that only drains
  (timed until it answers a message sent after the last frame).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import psutil
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.spool_files import spooled_run

SERVE_BUDGET_S = 1.0
FRAMES_BUDGET = 500_000  # frames/s

INIT_CHILD = """
import time, trackio_shim as wandb
t0 = time.perf_counter()
run = wandb.init(project="bench-restart", name="fresh")
t1 = time.perf_counter()
run.log({"x": 1.0})
run.finish()
print(t1 - t0)
"""


def _build_database(home: Path, points: int) -> int:
    """A database of ``points`` points (10 keys of one run, sealed chunks); returns its size in bytes."""
    from trackio_shim.settings import TrackiodSettings
    from trackiod.store.writer import Store

    settings = TrackiodSettings.load(environ={"TRACKIOD_HOME": str(home)})
    settings.ensure_dirs()
    store = Store(settings.db_path)
    with store.conn:
        run_id = int(store.create_run("bench-restart", "old", "old", {}, {}, "host", 1)["id"])
        key_ids = [store.key_id(f"k{k}") for k in range(10)]
    per_key = max(points // 10, 1)
    rng = np.random.default_rng(0)
    for start in range(0, per_key, 100_000):
        steps = np.arange(start, min(start + 100_000, per_key), dtype=np.int64)
        with store.conn:
            for key_id in key_ids:
                store.write_series(run_id, key_id, steps, 1.7e9 + steps * 0.01, rng.random(steps.size))
    store.close()
    return settings.db_path.stat().st_size


def _decode_floor(spool: Path) -> float:
    """Frames/s of msgpack.Unpacker alone over the spool files (the floor of reading them)."""
    frames = 0
    started = time.perf_counter()
    for path in sorted(spool.glob("*.spool")):
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=1 << 26)
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                unpacker.feed(block)
                frames += sum(1 for _ in unpacker)
    return frames / (time.perf_counter() - started)


def _restart(env: dict[str, str], log: Path) -> tuple[DaemonProcess, float, float]:
    """Start the daemon; seconds until status answers and until a new trainer's init() returns."""
    daemon = DaemonProcess(env, log)
    started = time.perf_counter()
    daemon.start(wait=False)
    wait_for(daemon.status, timeout=120, interval=0.01, what="the daemon to answer status")
    serving = time.perf_counter() - started
    child = subprocess.run([sys.executable, "-c", INIT_CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    init_s = float(child.stdout.strip().splitlines()[-1])
    return daemon, serving, init_s


@pytest.mark.timeout(3600)  # at full size: a 2 GB database and 10M frames to write, then to read
@pytest.mark.benchmark(group="restart")
def test_restart_with_large_spool_and_database(
    benchmark: Any, env: dict[str, str], tmp_path: Path, figures: Any, mode: Any
) -> None:
    test = "restart, large spool and database"
    frames, db_points = mode.size("restart_spool_frames"), mode.size("restart_db_points")

    empty_env = {**env, "TRACKIOD_HOME": str(tmp_path / "empty")}
    empty, empty_serving, empty_init = _restart(empty_env, tmp_path / "empty.log")
    empty.terminate()
    empty.cleanup()

    home = Path(env["TRACKIOD_HOME"])
    db_bytes = _build_database(home, db_points)
    spool = home / "spool"
    spooled_run(spool, "bench-restart", "spooled", frames, files=max(1, frames // 2_000_000))
    spool_bytes = sum(p.stat().st_size for p in spool.glob("*.spool"))
    floor = _decode_floor(spool)

    def restart_and_read() -> tuple[float, float, float, float]:
        daemon, serving, init_s = _restart(env, tmp_path / "daemon.log")
        proc = psutil.Process(daemon.proc.pid if daemon.proc else 0)
        t0 = time.perf_counter()
        cpu0 = sum(proc.cpu_times()[:2])
        peak = 0
        try:
            while True:
                peak = max(peak, proc.memory_info().rss)
                status = daemon.status() or {}
                if status.get("spool_files_queued") == 0 and status.get("spool_files_pending") == 0:
                    break
                assert time.perf_counter() - t0 < 1800, "the spool was not read within 30 minutes"
                time.sleep(0.2)
            read_s = time.perf_counter() - t0
            cpu_s = sum(proc.cpu_times()[:2]) - cpu0
        finally:
            daemon.terminate(timeout=120)
            daemon.cleanup()
        return serving, init_s, read_s, peak / 2**20, cpu_s

    serving, init_s, read_s, peak_mib, cpu_s = benchmark.pedantic(restart_and_read, rounds=1, iterations=1)
    rate = frames / read_s
    figures.add(test, "spool", frames, "frames", note=f"{spool_bytes / 2**20:.0f} MiB")
    figures.add(test, "database", db_bytes / 2**30, "GiB", note=f"{db_points:,} points")
    figures.add(test, "start -> status answered, empty home", empty_serving, "s")
    figures.add(test, "start -> status answered", serving, "s")
    figures.add(test, "new init() answered, empty home", empty_init, "s")
    figures.add(test, "new init() answered, spool pending", init_s, "s")
    figures.budget(test, "serving: extra time over the empty home", serving - empty_serving, "s", SERVE_BUDGET_S)
    figures.budget(test, "init(): extra time over the empty home", init_s - empty_init, "s", SERVE_BUDGET_S)
    figures.budget(test, "spool read (committed)", rate, "frames/s", FRAMES_BUDGET, at_least=True)
    figures.add(test, "floor: msgpack.Unpacker alone", floor, "frames/s", note=f"ratio {rate / floor:.2f}")
    figures.add(test, "daemon peak RSS while reading", peak_mib, "MiB")
    # On a shared machine the daemon gets a fraction of a core: frames per second of its own CPU time say what
    # one core reads (its threads included: the sampler, the background integrity check).
    if cpu_s > 0:  # psutil counts CPU time in clock ticks: a quick-size spool can be read within one
        figures.add(test, "spool read per daemon CPU second", frames / cpu_s, "frames/s", note=f"{cpu_s:.1f} s CPU")
    benchmark.extra_info.update(serving_s=serving, init_s=init_s, spool_frames_per_s=rate, floor=floor)
    figures.check(test)


SENDER = """
import os, sys, time, msgpack, zmq
from trackio_shim import protocol as P
endpoint, frames, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sid = os.urandom(P.SESSION_ID_BYTES)
ctx = zmq.Context(io_threads=1)
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.ROUTING_ID, sid)
sock.setsockopt(zmq.SNDHWM, 100_000)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(endpoint)
pk = msgpack.Packer(use_bin_type=True)
if mode == "daemon":
    info = {"version": P.PROTOCOL_VERSION, "pid": os.getpid(), "host": "bench", "started": time.time()}
    sock.send(pk.pack([P.SESSION, sid, 1, info]))
    params = {"project": "bench-restart", "id": "socket", "resume": "allow", "req": 1}
    sock.send(pk.pack([P.RUN_START, sid, 2, 1, params]))
    while msgpack.unpackb(sock.recv())[0] != P.REPLY:
        pass
    first = 3
else:
    sock.send(b"hello")
    sock.recv()
    first = 1
now = time.time()
data = [pk.pack([P.LOG, sid, first + i, 1, i, now, {"k0": float(i)}]) for i in range(frames)]
last = first + frames - 1
t0 = time.perf_counter()
send = sock.send
for raw in data:
    send(raw)
if mode == "daemon":
    acked = 0
    while acked < last:
        msg = msgpack.unpackb(sock.recv())
        if msg[0] == P.ACK:
            acked = msg[1]
        elif msg[0] == P.NACK:
            raise SystemExit(f"NACK {msg}")
else:
    sock.send(b"hello")  # answered after every frame before it was drained
    sock.recv()
print(frames / (time.perf_counter() - t0))
"""


@pytest.mark.benchmark(group="restart")
def test_one_key_frames_from_the_socket(
    benchmark: Any, daemon: DaemonProcess, env: dict[str, str], figures: Any, mode: Any
) -> None:
    from benchmarks._support import _RECEIVER

    test = "one-key frames from the socket"
    frames = mode.size("socket_frames")
    endpoint = daemon.settings().endpoint

    receiver_dir = Path(env["TRACKIOD_HOME"]).parent / "floor"
    receiver_dir.mkdir(exist_ok=True)
    floor_endpoint = f"ipc://{receiver_dir}/floor.sock"
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER, floor_endpoint], stdout=subprocess.PIPE)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == b"ready"
    try:
        out = subprocess.run(
            [sys.executable, "-c", SENDER, floor_endpoint, str(frames), "floor"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        floor = float(out.stdout.strip())
    finally:
        receiver.kill()
        receiver.wait()

    def send() -> float:
        done = subprocess.run(
            [sys.executable, "-c", SENDER, endpoint, str(frames), "daemon"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip())

    proc = psutil.Process(daemon.proc.pid if daemon.proc else 0)
    cpu0 = sum(proc.cpu_times()[:2])
    rate = benchmark.pedantic(send, rounds=1, iterations=1)
    cpu_s = sum(proc.cpu_times()[:2]) - cpu0
    status = daemon.status() or {}
    figures.add(test, "frames", frames, "frames", note="one per ZeroMQ message, one sender")
    figures.budget(test, "committed and acknowledged", rate, "frames/s", FRAMES_BUDGET, at_least=True)
    figures.add(test, "floor: a ROUTER that only drains", floor, "frames/s", note=f"ratio {rate / floor:.2f}")
    if cpu_s > 0:  # CPU time is counted in clock ticks: a quick-size run can fit in none
        figures.add(test, "frames per daemon CPU second", frames / cpu_s, "frames/s", note=f"{cpu_s:.1f} s CPU")
    figures.add(test, "daemon commit duration p99", status.get("commit_ms_p99", float("nan")), "ms")
    benchmark.extra_info.update(frames_per_s=rate, floor=floor)
    figures.check(test)
