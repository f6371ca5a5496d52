"""Helpers for the dashboard tests: a store filled the way the daemon fills it, and an HTTP client on the app.

Data is written through the daemon's own writer (``trackiod.store.writer.Store``) into a real SQLite file; the app
reads it through its query-only connections, as it does next to a running daemon.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

from trackio_shim.settings import TrackiodSettings

LOOPBACK = "http://127.0.0.1:7860"
#: Variables of a daemon that serves the dashboard on a free port and polls its store often.
SERVING = {"TRACKIOD_DASHBOARD": "1", "TRACKIOD_DASHBOARD_PORT": "0", "TRACKIOD_DASHBOARD_POLL_INTERVAL_S": "0.5"}


def isolated_env(home: Path, **variables: str) -> dict[str, str]:
    """This environment without WANDB_*/TRACKIOD_* variables, with TRACKIOD_HOME=home, no autostart, ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKIOD_"))}
    env.update(TRACKIOD_HOME=str(home), TRACKIOD_AUTOSTART="0", **variables)
    return env


def settings_for(home: Path, **overrides: Any) -> TrackiodSettings:
    return TrackiodSettings.load(environ={}, home=str(home), runtime_dir=str(home / "rt"), **overrides)


def client(settings: TrackiodSettings, token: str = "", base_url: str = LOOPBACK) -> TestClient:
    from trackiod.dashboard.app import create_app

    return TestClient(create_app(settings, token, "trackiod_token_7860"), base_url=base_url)


def fill(
    home: Path,
    project: str = "proj",
    runs: int = 2,
    points: int = 1000,
    keys: tuple[str, ...] = ("train/loss", "train/acc"),
    config: dict[str, Any] | None = None,
) -> list[str]:
    """Write ``runs`` finished runs of ``points`` steps per key; returns their ids (run_key), oldest first."""
    from trackiod.store.writer import Store

    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = Store(home / "trackiod.db")
    ids = []
    try:
        with store.conn:
            for r in range(runs):
                run_key = f"run{r}"
                cfg = {"lr": 0.1 * (r + 1), "model": {"depth": 4}, **(config or {})}
                row = store.create_run(project, run_key, f"name-{r}", {"tags": ["t"], "group": "g"}, cfg, "h", 1)
                steps = np.arange(points, dtype=np.int64)
                times = float(row["created_at"]) + steps * 0.5
                for k, key in enumerate(keys):
                    vals = np.sin(steps / 50.0) + r + k
                    store.write_series(int(row["id"]), store.key_id(key), steps, times, vals)
                store.count_keys({(int(row["id"]), store.key_id(key)): ("scalar", points, points - 1) for key in keys})
                store.update_run(int(row["id"]), state="finished", last_step=points - 1, summary='{"train/loss": 1}')
                ids.append(run_key)
    finally:
        store.close()
    return ids


def decode_chart(body: bytes) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray]]:
    """The binary chart answer: header, x, and one y array per series."""
    import json
    import struct

    (head_len,) = struct.unpack_from("<I", body)
    header = json.loads(body[4 : 4 + head_len])
    n = header["n"]
    arrays = np.frombuffer(body, "<f8", offset=4 + head_len)
    x = arrays[:n]
    ys = [arrays[n * (i + 1) : n * (i + 2)] for i in range(len(header["series"]))]
    return header, x, ys


# A training script that logs everything the run page and the system panel show: scalars with and without
# a context, images, a table, histograms over steps, HTML, an array, an alert and artifacts. It runs for about
# 2 s (with CUDA_VISIBLE_DEVICES=0 it declares the fake GPU 0, so energy is attributed to it).
RICH_RUN = """
import os, sys, time
import numpy as np
import trackio_shim as wandb

data_file = sys.argv[1]
run = wandb.init(project="rich", name="rich-run", config={"lr": 0.01, "optimizer": {"name": "adam"}})
rng = np.random.default_rng(0)
started = time.time()
for step in range(40):
    run.log({"loss": 1.0 / (step + 1)}, step=step)
    if step % 4 == 0:
        run.log({"loss": 2.0 / (step + 1)}, step=step, context={"subset": "val"})
        gradient = rng.normal(step / 10.0, 1.0, 500)
        run.log({"weights": wandb.Histogram(gradient, num_bins=20)}, step=step)
    if step % 10 == 0:
        pixels = np.zeros((24, 32, 3), np.uint8)
        pixels[:, : 8 + step // 2, 0] = 255
        pixels[8:16, :, 2] = 200
        run.log({"samples": wandb.Image(pixels, caption=f"step {step}")}, step=step)
    time.sleep(max(0.0, started + 0.05 * (step + 1) - time.time()))  # paces the run: one step per 50 ms
table = wandb.Table(columns=["id", "label", "score"], data=[[i, f"item-{i}", i / 100] for i in range(120)])
run.log({"predictions": table, "report": wandb.Html("<h1 id='x'>Report</h1><p>all good</p>"),
         "embedding": wandb.Array(np.arange(12, dtype=np.float32).reshape(3, 4))}, step=40)
run.alert(title="loss spike", text="loss went up at step 12", level="WARN")
artifact = wandb.Artifact("toy-data", type="dataset")
artifact.add_file(data_file)
run.log_artifact(artifact).wait()
run.use_artifact("toy-data:latest")
run.finish()
print(run.id)
"""

SYSTEM_FAKE_GPUS = [
    {"uuid": "GPU-0000-used", "name": "Fake A100", "utilization": 80, "idle_w": 50, "max_w": 400, "memory_total": 4e10},
    {"uuid": "GPU-1111-idle", "name": "Fake A100", "utilization": 0, "idle_w": 50, "max_w": 400, "memory_total": 4e10},
]


def log_rich_run(env: dict[str, str], tmp: Path) -> str:
    """Run RICH_RUN against the daemon of ``env``; returns the run's id."""
    import subprocess
    import sys

    data = tmp / "toy.csv"
    data.write_text("a,b\n1,2\n")
    script = tmp / "rich_run.py"
    script.write_text(RICH_RUN)
    done = subprocess.run(
        [sys.executable, str(script), str(data)],
        env={**env, "CUDA_VISIBLE_DEVICES": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def store_rich_run(env: dict[str, str], tmp: Path) -> str:
    """Start a daemon for ``env``, run RICH_RUN against it and stop it (a stop flushes the node series, which
    reach the database in chunks); returns the run's id."""
    from tests.support.daemons import Daemons

    with Daemons() as daemons:
        daemon = daemons(env, tmp / "daemon.log").start()
        run_id = log_rich_run(env, tmp)
        assert daemon.terminate() == 0
    return run_id


def fake_nvml_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """``env`` with the test-only scripted NVML (trackiod/testing/fake_nvml.py: no GPU here) and fast sampling."""
    import json

    script = tmp / "nvml.json"
    script.write_text(json.dumps({"gpus": SYSTEM_FAKE_GPUS}))
    return {
        **env,
        "TRACKIOD_NVML": f"fake:{script}",
        "TRACKIOD_SAMPLE_INTERVAL_S": "0.2",
        "TRACKIOD_MAINTENANCE_INTERVAL_S": "0.2",
    }
