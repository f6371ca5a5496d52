"""Helpers for the dashboard tests: a store filled the way the daemon fills it, and an HTTP client on the app.

Data is written through the daemon's own writer (``trackiod.store.Store``) into a real SQLite file; the app
reads it through its query-only connections, as it does next to a running daemon.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

from trackio_shim.settings import TrackiodSettings

LOOPBACK = "http://127.0.0.1:7860"


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
    from trackiod.store import Store

    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "trackiod.db")
    ids = []
    try:
        with store.transaction():
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
