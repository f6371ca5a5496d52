"""fork after init(): workers' logs are stored through a session of their own, and nothing hangs (issue 18: 3, 5, 6).

Each test runs a real training script in a fresh interpreter against a real daemon and counts what was stored
straight from the database (tests/support/training.raw_points). The script's own timeout is the deadline: a
child that spins or deadlocks fails the test instead of hanging it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from tests.support.training import raw_points

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEAD = """
import json, os, signal, sys, threading, time
import trackio_shim as wandb
run = wandb.init(project="rel", id=os.environ["T_RUN"])
for step in range(100):
    wandb.log({"parent": step})
"""


def _steps(run_id: str, key: str) -> list[int]:
    points = raw_points(run_id) or {}
    series = points.get(key)
    return [] if series is None else sorted(int(s) for s in series[:, 0])


def _stored(run_id: str, key: str, want: list[int], timeout: float = 30) -> None:
    wait_for(lambda: len(_steps(run_id, key)) >= len(want), timeout=timeout, what=f"{len(want)} points of {key}")
    assert _steps(run_id, key) == want


def _state(run_id: str) -> str | None:
    from trackio_shim import Api

    try:
        return str(Api().run(f"rel/{run_id}").state)
    except Exception:
        return None


POOL = (
    HEAD
    + """
import multiprocessing as mp

def work(i):
    if os.environ["T_CHILD_LOGS"] == "1":
        wandb.log({"task": i}, step=1000 + i)
    return i * i

ctx = mp.get_context("fork")
if os.environ["T_EXIT"] == "join":
    pool = ctx.Pool(2)
    out = pool.map(work, range(400), chunksize=8)
    pool.close()
    pool.join()
else:
    with ctx.Pool(2) as pool:
        out = pool.map(work, range(400), chunksize=8)
        time.sleep(0.05)  # as a script does between map() and the pool's terminate() at the end of `with`
assert out == [i * i for i in range(400)]
for step in range(100, 200):
    wandb.log({"parent": step})
wandb.finish()
"""
)


@pytest.mark.slow
@pytest.mark.parametrize("exit_mode", ["join", "terminate"])
@pytest.mark.parametrize("child_logs", [True, False], ids=["children-log", "children-silent"])
def test_pool_fork_children_logs_are_stored(
    daemon: DaemonProcess, env: dict[str, str], child_logs: bool, exit_mode: str
) -> None:
    """Pool(fork) workers log to the parent's run through sessions of their own; the parent's data is whole."""
    run_id = f"pool-{exit_mode}-{int(child_logs)}"
    run_script(POOL, {**env, "T_RUN": run_id, "T_CHILD_LOGS": str(int(child_logs)), "T_EXIT": exit_mode}, timeout=90)
    _stored(run_id, "parent", list(range(200)))
    if child_logs:
        _stored(run_id, "task", [1000 + i for i in range(400)])
    else:
        assert _steps(run_id, "task") == []
    wait_for(lambda: _state(run_id) == "finished", timeout=20, what="the run to be finished by the parent")


FORK = (
    HEAD
    + """
how = os.environ["T_HOW"]
pid = os.fork()
if pid == 0:
    if os.environ["T_CHILD_LOGS"] == "1":
        for i in range(50):
            wandb.log({"child": i}, step=500 + i)
        time.sleep(0.1)  # past the coalescing window: what a kill -9 may lose is the last 10 ms only
    if how == "sys.exit":
        sys.exit(0)  # atexit runs in the child: it must neither hang nor finish the parent's run
    if how == "os._exit":
        os._exit(0)
    os.kill(os.getpid(), signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    time.sleep(10)
_, status = os.waitpid(pid, 0)
print(json.dumps({"status": status, "state_after_child": None}), flush=True)
for step in range(100, 200):
    wandb.log({"parent": step})
wandb.finish()
"""
)


@pytest.mark.parametrize("how", ["sys.exit", "os._exit", "SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("child_logs", [True, False], ids=["child-logs", "child-silent"])
def test_os_fork_child_exits_every_way(daemon: DaemonProcess, env: dict[str, str], how: str, child_logs: bool) -> None:
    """os.fork() after init(): the child exits (sys.exit with atexit, os._exit, a signal) without blocking."""
    run_id = f"fork-{how.replace('.', '-')}-{int(child_logs)}"
    result = run_script(FORK, {**env, "T_RUN": run_id, "T_HOW": how, "T_CHILD_LOGS": str(int(child_logs))}, timeout=60)
    status = json.loads(result.stdout.strip().splitlines()[-1])["status"]
    assert how != "sys.exit" or status == 0, f"the child failed: {result.stderr}"
    _stored(run_id, "parent", list(range(200)))
    if child_logs:
        _stored(run_id, "child", [500 + i for i in range(50)])
    wait_for(lambda: _state(run_id) == "finished", timeout=20, what="the run to be finished by the parent")


LOCKED = (
    HEAD
    + """
client = run._client
held, release = threading.Event(), threading.Event()

def holder():
    with client.lock:  # as the pump or a logging thread does, for a few microseconds at a time
        held.set()
        release.wait()

t = threading.Thread(target=holder)
t.start()
held.wait()
pid = os.fork()
if pid == 0:
    wandb.log({"child": 1}, step=700)  # before the fix: waits forever on the copy of the held lock
    wandb.finish()
    os._exit(0)
release.set()
t.join()
_, status = os.waitpid(pid, 0)
assert status == 0, status
wandb.finish()
"""
)


def test_fork_while_another_thread_holds_the_session_lock(daemon: DaemonProcess, env: dict[str, str]) -> None:
    run_script(LOCKED, {**env, "T_RUN": "fork-locked"}, timeout=60)
    _stored("fork-locked", "parent", list(range(100)))
    _stored("fork-locked", "child", [700])


LOGGING_THREAD = (
    HEAD
    + """
stop = threading.Event()
logged = [0]

def logger():
    while not stop.is_set():
        wandb.log({"thread": logged[0]})
        logged[0] += 1
        if logged[0] % 10 == 0:
            time.sleep(0.0002)  # keeps the volume to what a loaded test machine ingests in seconds

t = threading.Thread(target=logger)
t.start()
for n in range(30):
    pid = os.fork()
    if pid == 0:
        wandb.log({"forked": n})
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
stop.set()
t.join()
wandb.finish()
print(json.dumps({"logged": logged[0]}), flush=True)
"""
)


def test_forks_while_a_thread_logs_never_deadlock(daemon: DaemonProcess, env: dict[str, str]) -> None:
    """Thirty forks while another thread logs: every child exits and the thread's points are all stored."""
    result = run_script(LOGGING_THREAD, {**env, "T_RUN": "fork-thread"}, timeout=120)
    logged = json.loads(result.stdout.strip().splitlines()[-1])["logged"]
    wait_for(lambda: len(_steps("fork-thread", "thread")) >= logged, timeout=60, what="the thread's points")
    steps = np.array(_steps("fork-thread", "thread"))
    assert len(steps) == logged and len(np.unique(steps)) == logged


DATALOADER = (
    HEAD
    + """
import torch
from torch.utils.data import DataLoader, Dataset

class Squares(Dataset):
    def __len__(self):
        return 64
    def __getitem__(self, i):
        return torch.tensor(float(i * i))

loader = DataLoader(Squares(), batch_size=8, num_workers=2, multiprocessing_context="fork")
for epoch in range(2):
    for batch in loader:
        wandb.log({"batch_sum": float(batch.sum())})
wandb.finish()
"""
)


@pytest.mark.slow
def test_dataloader_workers(daemon: DaemonProcess, env: dict[str, str]) -> None:
    pytest.importorskip("torch")
    run_script(DATALOADER, {**env, "T_RUN": "loader"}, timeout=120)
    _stored("loader", "parent", list(range(100)))
    _stored("loader", "batch_sum", list(range(100, 116)))
    wait_for(lambda: _state("loader") == "finished", timeout=20, what="the run to be finished")
