"""GPU energy on a real GPU: real NVML (pynvml), real CUDA matmuls, a real daemon.

Runs only on a machine with an NVIDIA GPU, a driver and a CUDA build of torch; elsewhere it is skipped with
the reason. It checks that the readings are plausible and that a run doing matmuls for a few seconds is
attributed more energy than a run that sleeps for as long.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess, wait_for

pytestmark = pytest.mark.gpu


def _gpu_or_skip() -> None:
    try:
        import pynvml
    except ImportError:
        pytest.skip("pynvml (nvidia-ml-py) is not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        pytest.skip(f"no NVML here (no NVIDIA driver or GPU): {exc}")
    count = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    if count == 0:
        pytest.skip("NVML found no GPU")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (CPU build, or no usable GPU)")


def test_real_nvml_readings_are_plausible() -> None:
    _gpu_or_skip()
    from trackiod.sampling.nvml import PynvmlProvider
    from trackiod.sampling.sampler import Sampler

    sampler = Sampler(2.0, PynvmlProvider())
    sampler.open()
    try:
        assert sampler.gpus and all(g.uuid.startswith(("GPU-", "MIG-")) for g in sampler.gpus)
        first = sampler.sample()
        second = sampler.sample()
        for reading in second.gpus:
            values = reading.values
            assert not reading.lost
            assert 0 <= values["utilization_pct"] <= 100
            assert 0 < values["memory_used_bytes"] <= values["memory_total_bytes"] < 1e12
            if "power_w" in values:
                assert 1 <= values["power_w"] <= 2000 and 10 <= values["power_limit_w"] <= 2000
            if "temperature_c" in values:
                assert 5 <= values["temperature_c"] <= 110
            if "sm_clock_mhz" in values:
                assert 0 <= values["sm_clock_mhz"] <= 4000
        for before, after in zip(first.gpus, second.gpus):
            if before.energy_mj is not None and after.energy_mj is not None:
                assert after.energy_mj >= before.energy_mj  # the counter only grows (no wrap in a second)
        assert second.cpu_s < 0.5  # per-sample cost: a loose sanity bound; the benchmark measures it
    finally:
        sampler.stop()


WORKLOAD = """
import sys, time
import torch
import trackio_shim as wandb
torch.cuda.init()
torch.cuda.set_device(0)
run = wandb.init(project="gpu-energy", name=sys.argv[1])
a = torch.randn(8192, 8192, device="cuda")
deadline = time.time() + 8
while time.time() < deadline:
    if sys.argv[1] == "matmul":
        for _ in range(20):
            a = (a @ a).tanh()
        torch.cuda.synchronize()
    else:
        time.sleep(0.1)  # the idle run: sleeps as long as the other multiplies
    wandb.log({"t": time.time()})
wandb.finish()
"""


def test_a_matmul_run_gets_more_energy_than_an_idle_one(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    _gpu_or_skip()
    env = {**env, "TRACKIOD_SAMPLE_INTERVAL_S": "0.5", "TRACKIOD_MAINTENANCE_INTERVAL_S": "0.5"}
    env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    stopped_daemon.env = env
    stopped_daemon.start()
    status = wait_for(lambda: (s := stopped_daemon.status()) and s["sampling"]["samples"] > 1 and s, timeout=30)
    assert "via pynvml" in status["sampling"]["nvml"], status["sampling"]
    script = tmp_path / "work.py"
    script.write_text(WORKLOAD)
    for name in ("idle", "matmul"):  # one after the other: they must not share the GPU
        subprocess.run([sys.executable, str(script), name], env=env, check=True, timeout=300)
    out = subprocess.run(
        [sys.executable, "-m", "trackiod", "energy", "--project", "gpu-energy", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    reports: dict[str, Any] = {r["name"]: r for r in json.loads(out.stdout)}
    idle, busy = reports["idle"], reports["matmul"]
    assert idle["recorded"] and busy["recorded"], (idle, busy)
    assert busy["gpu_joules"] > idle["gpu_joules"] * 1.2, (busy["gpu_joules"], idle["gpu_joules"])
    # Plausible: at least a few watts and at most the GPU's limit, over the run's lifetime.
    for report in (idle, busy):
        watts = report["gpu_joules"] / report["duration_s"]
        assert 5 < watts < 2000, report
    assert stopped_daemon.terminate() == 0
