"""The peer comparison's driver side: environments, child processes, reading back what each tracker stored.

The training side is :mod:`benchmarks.peers_child`. Every tracker runs fully offline in its own fresh
interpreter, pointed at one temporary directory: trackio's ``TRACKIO_DIR``, wandb ``mode="offline"`` with
``WANDB_DIR``, MLflow with a ``sqlite:///`` tracking URI, tensorboardX writing event files; telemetry and Hub
access are switched off by environment. Used by ``benchmarks/test_peers.py`` and ``scripts/bench_peers.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks._support import ROOT

#: The trackers compared, in table order. "trackio_shim" runs twice: with the daemon running and stopped.
PEERS = ("trackio", "wandb", "mlflow", "tensorboardX")
MODULES = {lib: lib for lib in ("trackio_shim", *PEERS)}
#: The key every reader counts steps of (the first of the 10 scalars).
KEY = "train/loss"
PROJECT = "peers"
#: Marks every process a peer benchmark starts (and whatever those start), to find leftovers afterwards.
MARKER = "TRACKIOD_PEER_DIR"


def missing(libraries: Iterable[str]) -> list[str]:
    """The libraries (of ``libraries``) that cannot be imported here."""
    return [lib for lib in libraries if importlib.util.find_spec(MODULES[lib]) is None]


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("trackio", "wandb", "mlflow-skinny", "SQLAlchemy", "tensorboardX", "pyzmq", "msgpack"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def peer_env(base: dict[str, str], directory: Path) -> dict[str, str]:
    """``base`` plus everything that keeps every tracker local, offline and inside ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in base.items() if not k.startswith(("WANDB_", "MLFLOW_", "TRACKIO_"))}
    env.update(
        {
            MARKER: str(directory),
            "PYTHONPATH": str(ROOT),
            "TRACKIO_DIR": str(directory / "trackio"),
            "WANDB_DIR": str(directory / "wandb"),
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_GIT": "true",
            "WANDB_CACHE_DIR": str(directory / "wandb-cache"),
            "WANDB_CONFIG_DIR": str(directory / "wandb-config"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{directory / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
    )
    (directory / "wandb").mkdir(exist_ok=True)
    return env


def child(env: dict[str, str], *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m benchmarks.peers_child ARGS``; its last stdout line, as JSON."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers_child", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"peers_child {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------- per-call cost
def latency(
    env: dict[str, str], library: str, run_id: str, batches: int, calls: int, out_dir: Path
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-call timings of ``library``'s log() interleaved with the floor's, in a fresh process."""
    path = out_dir / f"samples-{run_id}.npz"
    report = child(env, "latency", library, run_id, str(batches), str(calls), str(path))
    with np.load(path) as npz:
        samples = {name: npz[name].copy() for name in npz.files}
    return report, samples


def calls_for(library: str, calls: int) -> int:
    """Calls per batch for ``library``: the slow trackers get fewer, so each batch takes a similar time."""
    scale = {"trackio_shim": 1, "trackio": 1, "wandb": 4, "tensorboardX": 8, "mlflow": 100}[library]
    return max(10, calls // scale)


# ---------------------------------------------------------------------------------------------- kill -9
def kill_run(env: dict[str, str], library: str, run_id: str, steps: int, pace_ms: float, out_dir: Path) -> np.ndarray:
    """Log ``steps`` steps, one every ``pace_ms``, then SIGKILL; the monotonic return time of each log() and,
    last, of the kill. Waits until the child's own helper processes (wandb's service) have exited."""
    path = out_dir / f"times-{run_id}.f64"
    np.full(steps + 1, np.nan).tofile(path)
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.peers_child", "kill", library, run_id, str(steps), str(pace_ms), str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != -9:
        raise AssertionError(
            f"the {library} training process did not die by SIGKILL ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return np.fromfile(path, dtype=np.float64)


def leftovers(directory: Path) -> list[psutil.Process]:
    """Live processes started for ``directory`` (they carry its marker in their environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER) == str(directory):
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def reap_leftovers(directory: Path, grace: float = 15.0) -> tuple[list[str], float]:
    """Wait up to ``grace`` s for processes started for ``directory`` to exit, then SIGKILL the rest (by pid).

    Returns the names of those that lingered and how long the wait took.
    """
    started = time.monotonic()
    deadline = started + grace
    procs = leftovers(directory)
    while procs and time.monotonic() < deadline:
        time.sleep(0.05)
        procs = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    names = []
    for proc in procs:
        try:
            names.append(proc.name())
            proc.kill()
        except psutil.Error:
            pass
    return names, time.monotonic() - started


# ---------------------------------------------------------------------------------------------- read back
def stored_steps(library: str, env: dict[str, str], directory: Path, run_id: str) -> set[int]:
    """The steps of ``run_id`` whose ``train/loss`` the tracker stored, read from its files."""
    if library == "trackio_shim":
        return _shim_steps(env, run_id)
    if library == "trackio":
        return _sqlite_steps(
            directory / "trackio" / f"{PROJECT}.db", "SELECT step FROM metrics WHERE run_name=?", run_id
        )
    if library == "mlflow":
        query = "SELECT m.step FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.name=? AND m.key=?"
        return _sqlite_steps(directory / "mlflow.db", query, run_id, KEY)
    if library == "wandb":
        runs = list((directory / "wandb" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
        return set() if not runs else wandb_steps(runs[0])
    if library == "tensorboardX":
        steps: set[int] = set()
        for path in (directory / "tensorboardX" / run_id).glob("events.out.tfevents.*"):
            steps |= tfevents_steps(path, KEY)
        return steps
    raise ValueError(library)


def _sqlite_steps(path: Path, query: str, *params: str) -> set[int]:
    if not path.exists():
        return set()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {int(row[0]) for row in conn.execute(query, params)}
    finally:
        conn.close()


def _shim_steps(env: dict[str, str], run_id: str) -> set[int]:
    from trackio_shim.settings import TrackiodSettings
    from trackiod.read.connection import open_reader
    from trackiod.read.runs import get_run

    settings = TrackiodSettings.load(environ=env)
    if not settings.db_path.exists():
        return set()
    conn = open_reader(settings.db_path)
    try:
        run = get_run(conn, PROJECT, run_id)
        if run is None:
            return set()
        rows = conn.execute(
            "SELECT c.steps FROM chunks c JOIN keys k ON k.id = c.key_id WHERE c.run_id=? AND k.name=?",
            (run["id"], KEY),
        )
        return {int(s) for (blob,) in rows for s in np.frombuffer(blob, "<i8")}
    finally:
        conn.close()


def wandb_steps(path: Path) -> set[int]:
    """History steps in an offline ``.wandb`` file, read up to the first damaged record (a killed writer).

    wandb 0.31 ships no Python reader of its transaction log. It is LevelDB's log framing: a 7-byte file
    header (":W&B", version), then 32 KiB blocks of records, each with a 7-byte header (CRC-32C, little-endian
    length, type: 1 full, 2 first, 3 middle, 4 last); each whole payload is a ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    block, offset, pending, steps = 32768, 7, b"", set()
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        length = int.from_bytes(data[offset + 4 : offset + 6], "little")
        kind = data[offset + 6]
        if offset + 7 + length > len(data) or kind > 4:
            break  # cut short by the kill
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(pending)
        except Exception:
            break
        if record.WhichOneof("record_type") == "history" and any(
            (item.key or "/".join(item.nested_key)) == KEY for item in record.history.item
        ):
            steps.add(int(record.history.step.num))
    return steps


def tfevents_steps(path: Path, tag: str) -> set[int]:
    """Steps of scalar ``tag`` in a TensorBoard event file, read up to the first damaged record.

    TFRecord framing: u64 length, u32 masked CRC of the length, the payload (an ``Event``), u32 masked CRC.
    """
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    offset, steps = 0, set()
    while offset + 12 <= len(data):
        length = int.from_bytes(data[offset : offset + 8], "little")
        end = offset + 12 + length + 4
        if end > len(data):
            break
        event = Event()
        try:
            event.ParseFromString(data[offset + 12 : offset + 12 + length])
        except Exception:
            break
        offset = end
        if any(value.tag == tag for value in event.summary.value):
            steps.add(int(event.step))
    return steps


# ---------------------------------------------------------------------------------------------- the comparisons
#: What is compared, in table order: a label and the library it runs.
VARIANTS = {
    "trackio_shim": "trackio_shim",
    "trackio_shim, daemon stopped": "trackio_shim",
    "trackio": "trackio",
    "wandb (offline)": "wandb",
    "MLflow (sqlite)": "mlflow",
    "tensorboardX": "tensorboardX",
}


@dataclass
class Setup:
    """Where the trackers write: ``env`` reaches a running daemon, ``env_stopped`` a home no daemon serves."""

    directory: Path
    env: dict[str, str]
    env_stopped: dict[str, str]

    def env_for(self, label: str) -> dict[str, str]:
        return self.env_stopped if label.endswith("daemon stopped") else self.env


def compare_latency(setup: Setup, batches: int, calls: int) -> dict[str, dict[str, Any]]:
    """Per-call log() timings of every variant, each in a fresh process; also what each stored after finish()."""
    out: dict[str, dict[str, Any]] = {}
    for n, (label, library) in enumerate(VARIANTS.items()):
        run_id = f"lat{n}"
        env = setup.env_for(label)
        report, samples = latency(env, library, run_id, batches, calls_for(library, calls), setup.directory)
        stopped = label.endswith("daemon stopped")
        stored = None if stopped else stored_steps(library, env, setup.directory, run_id)
        out[label] = {"report": report, "samples": samples, "stored": stored, "logged": report["logged"]}
    return out


def compare_lifecycle(setup: Setup, repeats: int, steps: int) -> dict[str, dict[str, Any]]:
    """import, init() and finish() of every tracker in fresh processes (after one uncounted run that creates
    the stores: MLflow's first run builds its schema); each run's stored steps are read back."""
    out: dict[str, dict[str, Any]] = {}
    for n, (label, library) in enumerate(VARIANTS.items()):
        if label.endswith("daemon stopped"):
            continue
        child(setup.env, "lifecycle", library, f"warm{n}", "10")
        reports, stored = [], []
        for r in range(repeats):
            run_id = f"life{n}x{r}"
            reports.append(child(setup.env, "lifecycle", library, run_id, str(steps)))
            stored.append(stored_steps(library, setup.env, setup.directory, run_id))
        out[label] = {"reports": reports, "stored": stored}
    return out


def compare_kill(setup: Setup, steps: int, pace_ms: float, grace_s: float) -> dict[str, dict[str, Any]]:
    """kill -9 each tracker's training process right after its last log() returns; what each stored.

    After the kill, helper processes the tracker started (wandb's service) are given time to exit on their
    own; for trackio_shim, the daemon gets until its point count stops growing.
    """
    out: dict[str, dict[str, Any]] = {}
    for n, (label, library) in enumerate(VARIANTS.items()):
        if label.endswith("daemon stopped"):
            continue
        run_id = f"kill{n}"
        times = kill_run(setup.env, library, run_id, steps, pace_ms, setup.directory)
        lingered, waited = reap_leftovers(setup.directory)
        stored = stored_steps(library, setup.env, setup.directory, run_id)
        settle = time.monotonic() + 5
        while len(stored) < steps and time.monotonic() < settle:  # the daemon's last batch may still commit
            time.sleep(0.05)
            stored = stored_steps(library, setup.env, setup.directory, run_id)
        returned, killed_at = times[:steps], times[steps]
        required = {int(i) for i in np.flatnonzero(killed_at - returned > grace_s)}
        lost = sorted(set(range(steps)) - stored)
        out[label] = {
            "steps": steps,
            "stored": len(stored & set(range(steps))),
            "required": len(required),
            "missing_required": sorted(required - stored),
            "lost_window_ms": (killed_at - returned[lost[0]]) * 1e3 if lost else 0.0,
            "lingered": lingered,
            "linger_s": waited,
        }
    return out
