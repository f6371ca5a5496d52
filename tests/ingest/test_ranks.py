"""Ranks of a distributed job: 4 real torch.distributed (gloo, CPU) processes started by torchrun join one run.

Each rank logs every step against a real daemon; the run is read back from the SQLite store: four ranks,
aggregates across them that match values computed here, one config, and a warning naming a disagreeing key.
Also: rank detection from each launcher's environment, explicit values, the rank-0-only setting, and a
failed rank failing the run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script, spawn_script
from trackio_shim import Api
from trackio_shim.errors import UsageError
from trackio_shim.integrations._base import process_rank
from trackio_shim.sdk.ranks import detect

STEPS = 20
WORLD = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_TRAIN = """
import os, warnings
import torch
import torch.distributed as dist
import trackio_shim as wandb

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
caught = warnings.catch_warnings(record=True)
records = caught.__enter__()
warnings.simplefilter("always")
run = wandb.init(project="ddp", config={"lr": 0.1, "layers": 2, "seed": 1000 + rank if rank == 2 else 1000})
for step in range(STEPS):
    value = torch.tensor([float(rank * 100 + step)])
    dist.all_reduce(value.clone())  # a real collective each step, as training does; the tracker needs none
    wandb.log({"loss": value.item(), "tag": f"r{rank}"}, step=step)
dist.barrier()
wandb.finish(exit_code=EXIT_CODE)
warned = [str(w.message) for w in records if "config disagrees" in str(w.message)]
open(os.path.join(os.environ["OUT_DIR"], f"rank{rank}.txt"), "w").write(f"{run.id}\\n{run.rank}\\n{warned}\\n")
dist.destroy_process_group()
"""


def _torchrun(tmp_path: Path, env: dict[str, str], exit_code: str = "0") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_TRAIN).replace("STEPS", str(STEPS)).replace("EXIT_CODE", exit_code))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    run_env = {**env, "OUT_DIR": str(out), "OMP_NUM_THREADS": "1", "TRACKIOD_SILENT": "1"}
    run_env.pop("TORCHELASTIC_RUN_ID", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD)]
    cmd += ["--master_port", str(_free_port()), str(script)]
    result = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=240)
    return result


@pytest.mark.slow
def test_torchrun_four_gloo_ranks_join_one_run(daemon: DaemonProcess, tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("torch")
    result = _torchrun(tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [(tmp_path / "out" / f"rank{r}.txt").read_text().splitlines() for r in range(WORLD)]
    assert [int(line[1]) for line in lines] == list(range(WORLD))
    runs = list(Api().runs("ddp"))
    assert len(runs) == 1, f"ranks started different runs: {[r.id for r in runs]}"
    # The run has the id rank 0 printed (a rank that started before rank 0 holds the id it was given then).
    assert runs[0].id == lines[0][0]
    api_run = Api().run(f"ddp/{lines[0][0]}")
    wait_for(lambda: Api().run(api_run.path).state == "finished", what="the run to finish once all ranks did")
    ranks = api_run.ranks()
    assert [r["rank"] for r in ranks] == list(range(WORLD)) and all(r["exit_code"] == 0 for r in ranks)
    # One config, written once: rank 2's disagreeing seed is not in it, and rank 2 was told, naming the key.
    assert api_run.config == {"lr": 0.1, "layers": 2, "seed": 1000}
    assert "'seed'" in lines[2][2] and "rank 2" in lines[2][2]
    assert all(line[2] == "[]" for r, line in enumerate(lines) if r != 2)
    # Rank 0 reads exactly as a single-process run; every rank's series is stored.
    plain = list(api_run.scan_history(keys=["loss"]))
    assert [row["loss"] for row in plain] == [float(s) for s in range(STEPS)]
    per_rank = api_run.history(keys=["loss", "tag"], ranks="all", pandas=False, samples=0)
    assert len(per_rank) == WORLD * STEPS
    for row in per_rank:
        assert row["loss"] == row["_rank"] * 100 + row["_step"] and row["tag"] == f"r{row['_rank']}"
    agg = api_run.rank_aggregates("loss", pandas=False)
    assert [row["_step"] for row in agg] == list(range(STEPS))
    for row in agg:
        expected = np.array([r * 100 + row["_step"] for r in range(WORLD)], float)
        assert row["count"] == WORLD
        assert row["mean"] == pytest.approx(expected.mean()) and row["std"] == pytest.approx(expected.std())
        assert (row["min"], row["max"]) == (expected.min(), expected.max())
    two = api_run.rank_aggregates("loss", ranks=[1, 3], pandas=False)
    assert two[0]["count"] == 2 and two[0]["mean"] == pytest.approx(200.0)
    assert api_run.summary["loss"] == STEPS - 1  # the summary is rank 0's, as wandb's


@pytest.mark.slow
def test_a_failed_rank_fails_the_run(daemon: DaemonProcess, tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("torch")
    result = _torchrun(tmp_path, env, exit_code="3 if rank == 1 else 0")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = list(Api().runs("ddp"))
    wait_for(lambda: Api().run(run.path).state == "failed", what="the run to fail because rank 1 failed")
    assert Api().run(run.path).ranks()[1]["exit_code"] == 3


def test_rank_zero_only_setting(daemon: DaemonProcess, env: dict[str, str]) -> None:
    code = """
        import trackio_shim as wandb
        run = wandb.init(project="zero", id="job", ranks="zero")
        run.log({"x": run.rank})
        run.finish()
    """
    for rank in (1, 0):
        run_script(code, {**env, "RANK": str(rank), "WORLD_SIZE": "2", "TRACKIOD_JOB_ID": "j1"})
    run = Api().run("zero/job")
    assert [r["rank"] for r in run.ranks()] == [0]
    assert [row["x"] for row in run.scan_history()] == [0]
    bad = run_script("import trackio_shim as w; w.init(ranks='some')", env, check=False)
    assert bad.returncode != 0 and "init(ranks='some')" in bad.stderr


def test_ranks_join_by_explicit_id_and_single_process_reads_unchanged(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    code = """
        import os, pathlib, time, trackio_shim as wandb
        rank = int(os.environ["R"])
        run = wandb.init(project="byid", id="shared", rank=rank, world_size=2, config={"a": 1})
        for step in range(3):
            run.log({"m": step + 10 * run.rank}, step=step)
        pathlib.Path(os.environ["SYNC"], f"ready{rank}").touch()
        deadline = time.time() + 60
        while not pathlib.Path(os.environ["SYNC"], f"ready{1 - rank}").exists() and time.time() < deadline:
            time.sleep(0.05)  # both ranks run at once, as a job's do
        run.finish()
    """
    procs = [spawn_script(code, {**env, "R": str(rank), "SYNC": str(tmp_path)}) for rank in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    run = Api().run("byid/shared")
    assert run.state == "finished" and [r["rank"] for r in run.ranks()] == [0, 1]
    assert [row["m"] for row in run.scan_history()] == [0, 1, 2]
    agg = run.rank_aggregates("m", pandas=False)
    assert [row["mean"] for row in agg] == [5.0, 6.0, 7.0] and {row["count"] for row in agg} == {2}
    run_script("import trackio_shim as w\nr = w.init(project='single', id='one')\nr.log({'m': 1})\nr.finish()", env)
    single = Api().run("single/one")
    assert single.ranks() == [] and [row["m"] for row in single.scan_history()] == [1]
    assert single.rank_aggregates("m", pandas=False) == [
        {"_step": 0, "mean": 1.0, "min": 1.0, "max": 1.0, "std": 0.0, "count": 1}
    ]


def test_rank_detection_from_each_launcher() -> None:
    assert detect(env={}).rank == 0 and not detect(env={}).distributed
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "TORCHELASTIC_RUN_ID": "abc"}
    assert detect(env=torchrun) == detect(env=torchrun)
    info = detect(env=torchrun)
    assert (info.rank, info.local_rank, info.world_size, info.job_key) == (3, 1, 8, "torchelastic:abc")
    none_id = {"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "none", "MASTER_ADDR": "h", "MASTER_PORT": "7"}
    assert detect(env=none_id).job_key == "rendezvous:h:7"
    slurm = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "6", "SLURM_JOB_ID": "42", "SLURM_STEP_ID": "0"}
    info = detect(env=slurm)
    assert (info.rank, info.local_rank, info.world_size, info.job_key) == (5, 1, 6, "slurm:42.0")
    ompi = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_MCA_ess_base_jobid": "99"}
    assert (detect(env=ompi).rank, detect(env=ompi).world_size, detect(env=ompi).job_key) == (2, 4, "mpi:99")
    assert detect(env={**ompi, "TRACKIOD_JOB_ID": "mine"}).job_key == "mine"
    assert detect(rank=1, world_size=2, env=slurm).rank == 1
    with pytest.raises(UsageError, match="below the world size"):
        detect(rank=2, world_size=2, env={})
    with pytest.raises(UsageError, match="rank"):
        detect(rank=-1, env={})


def test_integrations_read_the_same_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    for name in ("RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert process_rank() == 2 == detect().rank
