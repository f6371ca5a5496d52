"""Threads: eight threads logging to one run, runs started and finished from several threads, log() after
finish(), finish() twice (issue 18, part 5). Real scripts against a real daemon; the scripts' timeouts are
the deadlines (a deadlock fails the test), and what was stored is read back from the database.
"""

from __future__ import annotations

import json

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from tests.support.training import raw_points

EIGHT = """
import os, threading
import trackio_shim as wandb
run = wandb.init(project="rel", id=os.environ["T_RUN"])
N = 2000
go = threading.Barrier(8)

def worker(t):
    go.wait()
    for i in range(N):
        wandb.log({f"t{t}": i})

threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wandb.finish()
"""


def _series(run_id: str) -> dict[str, list[tuple[int, float]]]:
    points = raw_points(run_id) or {}
    return {key: sorted((int(s), float(v)) for s, v in arr) for key, arr in points.items()}


def test_eight_threads_log_to_one_run(daemon: DaemonProcess, env: dict[str, str]) -> None:
    """Every point of every thread stored once, each call at a step of its own."""
    run_script(EIGHT, {**env, "T_RUN": "eight"}, timeout=120)
    wait_for(lambda: sum(len(v) for v in _series("eight").values()) >= 8 * 2000, timeout=30, what="16,000 points")
    series = _series("eight")
    assert sorted(series) == [f"t{t}" for t in range(8)]
    all_steps = [step for points in series.values() for step, _ in points]
    assert sorted(all_steps) == list(range(8 * 2000)), "steps lost, repeated or skipped"
    for points in series.values():
        assert [v for _, v in points] == [float(i) for i in range(2000)], "a thread's values out of step order"


MANY_RUNS = """
import json, os, threading, warnings
import trackio_shim as wandb

errors = []

def one(t):
    try:
        run = wandb.init(project="rel", id=f"threads-{t}", reinit="create_new")
        for i in range(300):
            run.log({"v": i})
        run.finish()
        run.log({"v": -1})  # after finish: ignored with a warning, never raised
        run.finish()  # twice: a no-op
    except BaseException as exc:
        errors.append(f"run {t}: {exc!r}")

# warnings.catch_warnings is process-wide (not per thread) and the shim warns once per cause: the warning for
# log() after finish() is looked for once, over all the threads.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    threads = [threading.Thread(target=one, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
if not any("finished" in str(w.message) for w in caught):
    errors.append("no warning for log() after finish()")
print(json.dumps({"errors": errors}), flush=True)
"""


def _state(run_id: str) -> str | None:
    from trackio_shim import Api

    try:
        return str(Api().run(f"rel/{run_id}").state)
    except Exception:
        return None


def test_runs_started_and_finished_from_several_threads(daemon: DaemonProcess, env: dict[str, str]) -> None:
    result = run_script(MANY_RUNS, env, timeout=120)
    assert json.loads(result.stdout.strip().splitlines()[-1])["errors"] == []
    for t in range(6):
        run_id = f"threads-{t}"
        wait_for(lambda r=run_id: len(_series(r).get("v", [])) >= 300, timeout=30, what=f"the points of {run_id}")
        assert _series(run_id)["v"] == [(i, float(i)) for i in range(300)]
        wait_for(lambda r=run_id: _state(r) == "finished", timeout=20, what=f"{run_id} finished")
