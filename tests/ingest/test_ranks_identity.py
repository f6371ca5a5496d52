"""The run identity rule of distributed jobs (docs/ranks.md#one-run-per-job), against a real daemon.

Each rank is its own interpreter with the launcher's variables set, as torchrun would start it: a late rank
joins its job's run even after rank 0 finished it; a job that reuses its key (a resubmission) gets a new run
even while the old run's records are fresh; a run another rank made takes rank 0's id, so the id rank 0
prints is the run's; a job where one rank failed and the others were killed ends failed with that code.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script, spawn_script
from trackio_shim import Api

_RANK = """
import os, trackio_shim as wandb
run = wandb.init(project="jobs", config={"lr": 0.1})
for step in range(STEPS):
    run.log({"x": float(run.rank * 1000 + step)}, step=step)
open(os.environ["OUT"], "w").write(run.id)
run.finish()
"""


def _rank(env: dict[str, str], tmp_path: Path, rank: int, job: str, out: str, steps: int = 5) -> str:
    """Run one rank of a 2-rank job to its end; returns the run id it printed."""
    path = tmp_path / out
    job_env = {**env, "RANK": str(rank), "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": job, "OUT": str(path)}
    job_env["TRACKIOD_SILENT"] = "1"
    run_script(_RANK.replace("STEPS", str(steps)), job_env)
    return path.read_text()


def test_a_late_rank_joins_the_run_rank_0_already_finished(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    first = _rank(env, tmp_path, 0, "late", "r0")
    second = _rank(env, tmp_path, 1, "late", "r1")
    assert first == second
    (run,) = list(Api().runs("jobs"))
    assert run.id == first and [r["rank"] for r in run.ranks()] == [0, 1]
    wait_for(lambda: Api().run(run.path).state == "finished", what="the run to finish again after rank 1")
    rows = Api().run(run.path).history(keys=["x"], ranks="all", pandas=False, samples=0)
    assert sorted(row["x"] for row in rows) == [float(r * 1000 + s) for r in (0, 1) for s in range(5)]
    # history() samples each rank on its own; scan_history() reads the ranks asked for, every row.
    sampled = Api().run(run.path).history(keys=["x"], ranks="all", pandas=False, samples=3)
    assert [row["_rank"] for row in sampled] == [0, 0, 0, 1, 1, 1]
    scanned = list(Api().run(run.path).scan_history(keys=["x"], ranks=[1], min_step=1, max_step=4))
    assert [(row["_rank"], row["_step"], row["x"]) for row in scanned] == [(1, s, 1000.0 + s) for s in (1, 2, 3)]


def test_a_resubmitted_job_with_the_same_key_gets_a_new_run(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    first = [_rank(env, tmp_path, rank, "same", f"a{rank}") for rank in (0, 1)]
    second = [_rank(env, tmp_path, rank, "same", f"b{rank}") for rank in (1, 0)]  # rank 1 first this time
    assert first[0] == first[1] and second[1] != first[0]
    runs = {run.id: run for run in Api().runs("jobs")}
    assert set(runs) == {first[0], second[1]}  # each job's run has the id its rank 0 printed
    for run in runs.values():
        assert [r["rank"] for r in run.ranks()] == [0, 1]
        assert len(run.history(keys=["x"], ranks="all", pandas=False, samples=0)) == 10  # nothing merged


def test_the_run_takes_rank_0s_id_when_another_rank_made_it(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    code = _RANK.replace("STEPS", "3").replace("run.finish()", "")
    code += "import pathlib, time\nwhile not pathlib.Path(os.environ['HOLD']).exists():\n    time.sleep(0.05)\n"
    code += "run.finish()\n"
    r1_out = tmp_path / "r1"
    r1_env = {**env, "RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "named", "OUT": str(r1_out)}
    rank1 = spawn_script(code, {**r1_env, "HOLD": str(hold), "TRACKIOD_SILENT": "1"})
    wait_for(r1_out.exists, timeout=60, what="rank 1 to start the job's run")
    made_by_rank1 = r1_out.read_text()
    rank0_id = _rank(env, tmp_path, 0, "named", "r0", steps=3)
    hold.touch()
    rank1.communicate(timeout=60)
    (run,) = list(Api().runs("jobs"))
    assert run.id == rank0_id != made_by_rank1  # what rank 0 printed names the run
    assert Api().run(f"jobs/{rank0_id}").ranks()[1]["rank"] == 1


def test_a_rank_that_failed_while_the_others_were_killed_fails_the_run(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    hang = """
import os, pathlib, time, trackio_shim as wandb
run = wandb.init(project="jobs")
run.log({"x": 1.0})
pathlib.Path(os.environ["READY"]).touch()
time.sleep(600)
"""
    job = {**env, "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "boom", "TRACKIOD_SILENT": "1"}
    rank0 = spawn_script(hang, {**job, "RANK": "0", "READY": str(ready)})
    wait_for(ready.exists, timeout=60, what="rank 0 to start")
    raises = "import trackio_shim as wandb\nrun = wandb.init(project='jobs')\nrun.log({'x': 2.0})\n"
    raises += "raise RuntimeError('boom')\n"
    result = run_script(raises, {**job, "RANK": "1"}, check=False)
    assert result.returncode == 1 and "boom" in result.stderr
    os.kill(rank0.pid, signal.SIGKILL)  # what torchrun does to the other ranks when one fails
    rank0.wait(timeout=30)
    (run,) = list(Api().runs("jobs"))
    wait_for(lambda: Api().run(run.path).state != "running", timeout=30, what="the run to end")
    ended = Api().run(run.path)
    assert ended.state == "failed" and ended.exit_code == 1 and ended.ranks()[1]["exit_code"] == 1
