"""Issue 19, "What was found" 10: a torchrun job where one rank raises must end ``failed`` with that rank's exit
code, not ``crashed`` with none. Real torchrun (``python -m torch.distributed.run``, 2 processes on CPU): rank 1
raises after logging; torchrun then terminates rank 0, which never finishes its run."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from trackio_shim import Api

_TRAIN = """
import os, pathlib, time
import trackio_shim as wandb
rank = int(os.environ["RANK"])
run = wandb.init(project="raise")
run.log({"x": float(rank)}, step=0)
run.log({"x": float(rank)}, step=1)
if rank == 1:
    while not list(pathlib.Path(os.environ["OUT_DIR"]).glob("rank0.*")):
        time.sleep(0.05)  # rank 0 is logging: raise while it still runs, as a failing training step does
    raise RuntimeError("boom")
pathlib.Path(os.environ["OUT_DIR"], "rank0.up").touch()
time.sleep(120)  # rank 0 would go on training; torchrun terminates it when rank 1 fails
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_torchrun_job_where_one_rank_raises_ends_failed(
    daemon: DaemonProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    pytest.importorskip("torch")
    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    run_env = {**env, "OUT_DIR": str(tmp_path), "OMP_NUM_THREADS": "1", "TRACKIOD_SILENT": "1"}
    run_env.pop("TORCHELASTIC_RUN_ID", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), str(script)]
    result = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0 and "boom" in result.stdout + result.stderr
    (run,) = list(Api().runs("raise"))
    wait_for(lambda: Api().run(run.path).state != "running", timeout=60, what="the run to end")
    ended = Api().run(run.path)
    assert ended.state == "failed", (ended.state, ended.ranks())
    assert ended.exit_code == 1 and ended.ranks()[1]["exit_code"] == 1
