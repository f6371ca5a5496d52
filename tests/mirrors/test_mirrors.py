"""Mirrors: a real daemon copies committed runs to TensorBoard event files, CSV, MLflow and wandb (offline).

Everything is read back with the other tool's own reader: TensorBoard's EventAccumulator, MLflow's client on
its local file store, wandb's offline run directory. Nothing is faked; wandb runs with WANDB_MODE=offline.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from trackio_shim import Api
from trackio_shim.errors import SettingsError, UsageError
from trackio_shim.mirror_spec import MirrorSpec, parse_mirrors
from trackio_shim.settings import TrackiodSettings

STEPS = 50


def _mirrors(daemon: DaemonProcess) -> list[dict[str, Any]]:
    status = daemon.status()
    return list(status["mirrors"]["mirrors"]) if status else []


def _wait_closed(daemon: DaemonProcess, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until ``count`` mirrors have closed (their run ended and everything was written or given up)."""

    def done() -> list[dict[str, Any]] | None:
        mirrors = _mirrors(daemon)
        ended = [m for m in mirrors if m["state"] in ("closed", "failed")]
        return ended if len(ended) >= count else None

    return list(wait_for(done, timeout=timeout, what=f"{count} mirrors to close"))


def _log_run(shim: Any, run_id: str, mirror: list[str], steps: int = STEPS, **init: Any) -> Any:
    run = shim.init(project="mirrored", id=run_id, config={"lr": 0.01, "model": {"layers": 2}}, mirror=mirror, **init)
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "acc": step / steps, "phase": "warmup" if step < 5 else "main"})
    run.finish()
    return run


def test_tensorboard_and_csv_mirrors_read_back(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb, table = tmp_path / "tb", tmp_path / "out" / "run.csv"
    _log_run(shim, "tb1", [f"tensorboard:{tb}", f"csv:{table}"])
    closed = _wait_closed(daemon, 2)
    assert {m["spec"] for m in closed} == {f"tensorboard:{tb}", f"csv:{table}"}
    for m in closed:
        assert (m["state"], m["points"], m["dropped"], m["last_error"]) == ("closed", 3 * STEPS, 0, None)

    events = EventAccumulator(str(tb), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == list(range(STEPS))
    assert [round(e.value, 6) for e in loss] == [round(1.0 / (s + 1), 6) for s in range(STEPS)]
    assert len(events.Scalars("acc")) == STEPS
    assert "phase" in events.Tags()["tensors"] and "config" in events.Tags()["tensors"]
    config_text = events.Tensors("config")[-1].tensor_proto.string_val[0].decode()
    assert json.loads(config_text) == {"lr": 0.01, "model": {"layers": 2}}

    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * STEPS
    losses = {int(r["step"]): float(r["value"]) for r in rows if r["key"] == "loss"}
    assert losses == {s: 1.0 / (s + 1) for s in range(STEPS)}
    assert {r["value"] for r in rows if r["key"] == "phase"} == {"warmup", "main"}
    assert json.loads((tmp_path / "out" / "run.config.json").read_text())["model"] == {"layers": 2}

    # The local store has everything, as without mirrors.
    history = list(Api().run("mirrored/tb1").scan_history(keys=["loss"]))
    assert len(history) == STEPS


def test_mlflow_mirror_reads_back_and_resumes_the_same_run(
    daemon: DaemonProcess, shim: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 puts its file store behind this switch

    store = tmp_path / "mlruns"
    _log_run(shim, "ml1", [f"mlflow:{store}"])
    _wait_closed(daemon, 1)
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("mirrored")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == run.data.tags["mlflow.runName"]
    assert run.data.tags["trackiod.run"] == "mirrored/ml1"
    assert run.data.params == {"lr": "0.01", "model.layers": "2"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / (s + 1)) for s in range(STEPS)]

    # Resuming the trackiod run continues the same MLflow run.
    resumed = shim.init(project="mirrored", id="ml1", resume="allow", mirror=[f"mlflow:{store}"])
    resumed.log({"loss": 0.001})
    resumed.finish(exit_code=3)
    _wait_closed(daemon, 2)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert max(m.step for m in history) == STEPS and len(history) == STEPS + 1


def test_wandb_mirror_offline(stopped_daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    wandb_dir = tmp_path / "wandb-dir"
    wandb_dir.mkdir()
    stopped_daemon.start(WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_SILENT="true")
    _log_run(shim, "wb1", ["wandb"])
    (closed,) = _wait_closed(stopped_daemon, 1, timeout=120)
    assert (closed["state"], closed["points"], closed["last_error"]) == ("closed", 3 * STEPS, None)
    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*-wb1")
    assert (run_dir / "run-wb1.wandb").stat().st_size > 0
    records = _wandb_history(run_dir / "run-wb1.wandb")
    assert [r["_step"] for r in records] == list(range(STEPS))
    assert [r["loss"] for r in records] == [1.0 / (s + 1) for s in range(STEPS)]
    assert records[0]["phase"] == "warmup"


def _wandb_history(path: Path) -> list[dict[str, Any]]:
    """History rows of an offline .wandb file: wandb's record protos in LevelDB's log framing.

    wandb 0.31 ships no Python reader for its transaction log, so this reads the framing itself (a 7-byte
    file header, then 32 KiB blocks of records with a 7-byte header: checksum, length, type) and decodes
    each record with wandb's own protobuf classes.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()[7:]
    block, payloads, pending, offset = 32768, [], b"", 0
    while offset + 7 <= len(data):
        room = block - (offset + 7) % block  # the file header counts in the first block
        if (offset + 7) % block and room < 7:
            offset += room
            continue
        length = int.from_bytes(data[offset + 4 : offset + 6], "little")
        kind = data[offset + 6]
        chunk = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            payloads.append(pending)
    rows = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
    return rows


def test_daemon_wide_mirrors_and_status(stopped_daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    root = tmp_path / "all-runs"
    stopped_daemon.start(TRACKIOD_MIRRORS=f"csv:{root}")
    _log_run(shim, "a1", [], steps=5)
    _log_run(shim, "a2", [], steps=7)
    _wait_closed(stopped_daemon, 2)
    for run_id, steps in (("a1", 5), ("a2", 7)):
        with open(root / "mirrored" / f"{run_id}.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == 3 * steps
    status = stopped_daemon.status()
    assert status is not None
    assert status["mirrors"]["daemon_mirrors"] == [f"csv:{root}"]
    assert {m["origin"] for m in status["mirrors"]["mirrors"]} == {"daemon"}
    out = subprocess.run(
        [sys.executable, "-m", "trackiod", "status"], env=stopped_daemon.env, capture_output=True, text=True, check=True
    ).stdout
    assert f"daemon-wide: csv:{root}" in out
    assert f"mirrored/a2 -> csv:{root}: closed, 21 points mirrored" in out


def test_a_failing_mirror_loses_no_local_data_and_says_why(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the mirror wants a directory")
    good = tmp_path / "good.csv"
    _log_run(shim, "bad1", [f"tensorboard:{blocker}/tb", f"csv:{good}"])
    closed = {m["spec"]: m for m in _wait_closed(daemon, 2)}
    failed = closed[f"tensorboard:{blocker}/tb"]
    assert failed["state"] == "failed" and failed["points"] == 0
    assert failed["dropped"] == 3 * STEPS
    assert "cannot create the TensorBoard log directory" in failed["last_error"]
    assert closed[f"csv:{good}"]["points"] == 3 * STEPS  # the other mirror of the run is unaffected
    history = list(Api().run("mirrored/bad1").scan_history(keys=["loss", "acc"]))
    assert len(history) == STEPS and history[-1]["loss"] == 1.0 / STEPS


def test_a_full_mirror_queue_drops_for_the_mirror_never_for_the_store(
    stopped_daemon: DaemonProcess, shim: Any, tmp_path: Path
) -> None:
    # A queue of 10 points and commits of 20 points each: every commit overflows, deterministically.
    stopped_daemon.start(TRACKIOD_MIRROR_QUEUE_POINTS="10")
    run = shim.init(project="mirrored", id="full1", mirror=[f"csv:{tmp_path / 'full.csv'}"])
    for step in range(30):
        run.log({f"k{i}": float(step * i) for i in range(20)})
    run.finish()
    (closed,) = _wait_closed(stopped_daemon, 1)
    assert closed["points"] == 0 and closed["dropped"] == 600
    status = stopped_daemon.status()
    assert status is not None and status["mirrors"]["overflow_points"] == 600
    assert len(list(Api().run("mirrored/full1").scan_history())) == 30


def test_mirroring_survives_a_daemon_restart_mid_run(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    table = tmp_path / "restart.csv"
    stopped_daemon.start()
    script = f"""
    import os, signal, sys, time
    import trackio_shim as wandb
    run = wandb.init(project="mirrored", id="rs1", mirror=["csv:{table}"])
    for step in range(10):
        run.log({{"x": float(step)}})
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # the test restarts the daemon meanwhile
    for step in range(10, 20):
        run.log({{"x": float(step)}})
    run.finish()
    """
    import textwrap

    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    wait_for(lambda: any(m["points"] == 10 for m in _mirrors(stopped_daemon)), what="the first 10 points mirrored")
    stopped_daemon.terminate()
    stopped_daemon.start()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == 0
    _wait_closed(stopped_daemon, 1)
    with open(table, newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(20))


def test_mirror_specs_are_checked_where_they_are_given(env: dict[str, str], tmp_path: Path) -> None:
    assert parse_mirrors(["wandb", "tensorboard:rel/tb", "mlflow:file:/x", "wandb"], "t") == [
        MirrorSpec("wandb", None),
        MirrorSpec("tensorboard", os.path.abspath("rel/tb")),
        MirrorSpec("mlflow", "file:/x"),
    ]
    with pytest.raises(UsageError, match=r"unknown mirror kind 'tensorbord'.*use one of 'tensorboard'"):
        parse_mirrors(["tensorbord:/x"], "init(mirror=...)")
    with pytest.raises(UsageError, match=r"mirror 'csv' needs a target"):
        parse_mirrors("csv", "init(mirror=...)")
    with pytest.raises(SettingsError, match="TRACKIOD_MIRRORS"):
        TrackiodSettings.load(environ={**env, "TRACKIOD_MIRRORS": "bogus:/x"})
    result = run_script(
        """
        import trackio_shim as wandb
        try:
            wandb.init(project="p", mirror=["s3:/bucket"])
        except wandb.UsageError as exc:
            print("refused:", exc)
        """,
        env,
    )
    assert "refused: init(mirror=...): unknown mirror kind 's3'" in result.stdout


def test_a_mirror_that_recovers_gets_its_backlog(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    # A directory where the CSV file should be: every write fails until the test removes it.
    table = tmp_path / "late.csv"
    table.mkdir()
    run = shim.init(project="mirrored", id="late1", mirror=[f"csv:{table}"])
    for step in range(STEPS):
        run.log({"loss": float(step)})
    run.finish()

    def failing() -> dict[str, Any] | None:
        found = [m for m in _mirrors(daemon) if m["state"] == "failing" and m["pending"] == STEPS]
        return found[0] if found else None

    stuck = wait_for(failing, timeout=30, what="the mirror to report failing with its backlog")
    assert "IsADirectoryError" in stuck["last_error"] and stuck["points"] == 0
    table.rmdir()
    (closed,) = _wait_closed(daemon, 1)
    assert (closed["state"], closed["points"], closed["pending"], closed["dropped"]) == ("closed", STEPS, 0, 0)
    with open(table, newline="") as f:
        assert [float(r["value"]) for r in csv.DictReader(f)] == [float(s) for s in range(STEPS)]
