"""Export (parquet, csv, jsonl), CSV and TensorBoard import, and the Space that ``trackiod deploy`` generates.

All real: a daemon process, runs logged through the shim, event files written by torch's TensorBoard writer,
CSV files on disk. The Space's push goes to the folder-backed fake Hub (trackiod.testing.folder_hub.FolderHub),
because the Hugging Face Hub cannot be reached from the test machines.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script
from trackio_shim.errors import ProjectExistsError, UsageError
from trackiod.cli import main as cli
from trackiod.read.connection import open_reader
from trackiod.read.runs import history_rows, list_runs
from trackiod.sync.deploy import space_files
from trackiod.testing.folder_hub import FolderHub

LOG_SOME = """
import trackio_shim as wandb
run = wandb.init(project="exp", id="one", config={"lr": 0.1})
for i in range(2500):
    wandb.log({"loss": 1 / (i + 1), "acc": i / 2500})
    if i % 500 == 0:
        wandb.log({"note": f"at {i}"}, commit=False)
wandb.finish()
"""


def runs_of(daemon: DaemonProcess, project: str) -> list[dict[str, Any]]:
    conn = open_reader(daemon.settings().db_path)
    try:
        runs = list_runs(conn, project)
        for run in runs:
            run["history"] = list(history_rows(conn, run))
        return sorted(runs, key=lambda r: r["name"])
    finally:
        conn.close()


def test_export_csv_jsonl_parquet(daemon: DaemonProcess, env: dict[str, str], tmp_path: Path) -> None:
    run_script(LOG_SOME, env)
    (run,) = runs_of(daemon, "exp")
    history = run["history"]
    assert cli(["export", "--project", "exp", "--format", "csv", str(tmp_path / "c")]) == 0
    with open(tmp_path / "c" / "exp" / "one.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(history) == 2500
    assert list(rows[0]) == ["step", "timestamp", "acc", "loss", "note"]
    assert float(rows[1234]["loss"]) == history[1234]["loss"] and rows[501]["note"] == "at 500"
    with open(tmp_path / "c" / "exp" / "runs.csv") as f:
        (meta,) = list(csv.DictReader(f))
    assert json.loads(meta["config"]) == {"lr": 0.1} and json.loads(meta["summary"]) == run["summary"]

    assert cli(["export", "--project", "exp", "--run", "one", "--format", "jsonl", str(tmp_path / "one.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert lines[7] == {"step": 7, "timestamp": history[7]["_timestamp"], "acc": history[7]["acc"], "loss": 1 / 8}

    assert cli(["export", "--project", "exp", "--format", "parquet", str(tmp_path / "p")]) == 0
    points = pq.read_table(next((tmp_path / "p" / "points" / "project=exp" / "run_id=one").glob("*.parquet")))
    loss = points.filter(pc.equal(points["key"], "loss")).sort_by("step")
    np.testing.assert_array_equal(loss["value"].to_numpy(), [h["loss"] for h in history])
    # The export is in the sync layout, so pull restores it into another data directory.
    assert cli(["pull", str(tmp_path / "p"), "--home", str(tmp_path / "restored")]) == 0
    conn = open_reader(tmp_path / "restored" / "trackiod.db")
    try:
        (back,) = list_runs(conn, "exp")
        assert list(history_rows(conn, back)) == history
    finally:
        conn.close()


def test_export_errors_name_what_is_missing(daemon: DaemonProcess, env: dict[str, str], tmp_path: Path, capsys) -> None:
    run_script(LOG_SOME, env)
    assert cli(["export", "--project", "nope", str(tmp_path / "x")]) == 1
    assert "no project 'nope'" in capsys.readouterr().err
    assert cli(["export", "--project", "exp", "--run", "zzz", str(tmp_path / "x")]) == 1
    assert "no run 'zzz'" in capsys.readouterr().err


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_import_csv_through_the_daemon(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    rows = [
        {"step": i, "timestamp": f"2026-01-02T03:04:{i:02d}+00:00", "loss": 1 / (i + 1), "tag": "warm" if i < 3 else ""}
        for i in range(40)
    ]
    path = write_csv(tmp_path / "metrics.csv", rows)
    run = shim.import_csv(path, project="imported", dataset_id="me/ds")
    (stored,) = runs_of(daemon, "imported")
    assert (stored["run_key"], stored["name"], stored["state"], stored["dataset_id"]) == (
        run.id,
        "metrics",
        "finished",
        "me/ds",
    )
    history = stored["history"]
    assert [h["_step"] for h in history] == list(range(40))
    assert [h["loss"] for h in history] == [r["loss"] for r in rows]
    assert history[2]["tag"] == "warm" and "tag" not in history[5]
    first = datetime(2026, 1, 2, 3, 4, 0, tzinfo=timezone.utc).timestamp()
    assert history[4]["_timestamp"] == first + 4  # from the file's timestamp column
    assert stored["created_at"] == first
    with pytest.raises(ProjectExistsError, match="force=True"):
        shim.import_csv(path, project="imported")
    shim.import_csv(path, project="imported", name="again", force=True)
    assert [r["name"] for r in runs_of(daemon, "imported")] == ["again", "metrics"]


def test_import_csv_rejects_files_without_step(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", [{"epoch": 1, "loss": 0.5}])
    with pytest.raises(UsageError, match="needs a 'step' column; its columns are epoch, loss"):
        shim.import_csv(path, project="x")
    path = write_csv(tmp_path / "bad2.csv", [{"step": 1, "loss": 0.5}, {"step": "two", "loss": 0.4}])
    with pytest.raises(UsageError, match="line 3: step 'two' is not a number"):
        shim.import_csv(path, project="x")
    assert not (daemon.settings().db_path.exists() and runs_of(daemon, "x"))


def write_tensorboard(log_dir: Path, env: dict[str, str]) -> None:
    script = f"""
    from torch.utils.tensorboard import SummaryWriter
    for name, scale in (("run_a", 1.0), ("run_b", 2.0)):
        writer = SummaryWriter(log_dir={str(log_dir)!r} + "/" + name)
        for step in range(0, 300, 3):
            writer.add_scalar("train/loss", scale / (step + 1), step)
            if step % 30 == 0:
                writer.add_scalar("eval/acc", step / 300 * scale, step)
        writer.add_text("notes", "hello " + name, 0)
        writer.close()
    """
    run_script(script, env)


def test_import_tensorboard_each_subdirectory_is_a_run(
    daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path, capsys
) -> None:
    write_tensorboard(tmp_path / "tb", env)
    assert cli(["import", "tensorboard", str(tmp_path / "tb"), "--project", "tb"]) == 0
    assert "imported tb/" in capsys.readouterr().out
    runs = runs_of(daemon, "tb")
    assert [r["name"] for r in runs] == ["run_a", "run_b"]
    for run, scale in zip(runs, (1.0, 2.0)):
        rows = run["history"]
        assert [r["_step"] for r in rows] == list(range(0, 300, 3))
        # TensorBoard stores float32: compare at that precision.
        np.testing.assert_allclose([r["train/loss"] for r in rows], [scale / (s + 1) for s in range(0, 300, 3)], 1e-6)
        assert [r["_step"] for r in rows if "eval/acc" in r] == list(range(0, 300, 30))
        assert rows[0]["notes"] == f"hello {run['name']}"
        assert run["created_at"] <= rows[0]["_timestamp"]  # wall times come from the event files
    assert cli(["import", "tensorboard", str(tmp_path / "tb"), "--project", "tb"]) == 2
    assert "already has 2 run(s)" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["import", "tensorboard", str(empty), "--project", "tb2"]) == 2
    assert "no TensorBoard event files" in capsys.readouterr().err


def test_csv_export_imports_back(daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path) -> None:
    run_script(LOG_SOME, env)
    assert cli(["export", "--project", "exp", "--run", "one", "--format", "csv", str(tmp_path / "one.csv")]) == 0
    assert cli(["import", "csv", str(tmp_path / "one.csv"), "--project", "copy"]) == 0
    (original,) = runs_of(daemon, "exp")
    (copy,) = runs_of(daemon, "copy")
    assert [{k: v for k, v in r.items() if k != "_runtime"} for r in copy["history"]] == [
        {k: v for k, v in r.items() if k != "_runtime"} for r in original["history"]
    ]


def test_deploy_generates_a_space_and_pushes_it(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    files = space_files("me/board", "me/data")
    assert set(files) == {"README.md", "app.py", "trackiod_data.py", "requirements.txt", "trackiod_space.json"}
    readme = files["README.md"].decode()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert '<iframe src="https://me-board.hf.space' in readme
    assert json.loads(files["trackiod_space.json"]) == {"dataset": "me/data"}
    ast.parse(files["app.py"])
    with pytest.raises(UsageError, match="ORG/NAME"):
        space_files("board", "me/data")
    hub = FolderHub(tmp_path / "hub")
    monkeypatch.setenv("TRACKIOD_HUB", f"folder:{hub.root}")
    assert cli(["deploy", "--space", "me/board"]) == 0
    assert "me-board.hf.space" in capsys.readouterr().out
    pushed = hub.repo_dir("me/board", "space")
    assert json.loads((pushed / "trackiod_space.json").read_text()) == {"dataset": "me/board-dataset"}
    assert len(hub.commits("me/board")) == 1


def test_space_data_module_reads_a_synced_dataset(daemon: DaemonProcess, env: dict[str, str], tmp_path: Path) -> None:
    run_script(LOG_SOME.replace("wandb.finish()", 'wandb.log({"loss": -5.0}, step=7)\nwandb.finish()'), env)
    assert cli(["export", "--project", "exp", "--format", "parquet", str(tmp_path / "ds")]) == 0
    for name, data in space_files("me/board", "me/data").items():
        (tmp_path / "space" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "space" / name).write_bytes(data)
    sys.path.insert(0, str(tmp_path / "space"))
    try:
        import trackiod_data

        dataset = trackiod_data.Dataset(tmp_path / "ds")
        assert dataset.projects() == ["exp"]
        assert [r["run_id"] for r in dataset.run_rows("exp")] == ["one"]
        assert dataset.keys("exp") == ["acc", "loss"]
        steps, values = dataset.series("exp", "one", "loss")
        (run,) = runs_of(daemon, "exp")
        expected = [(h["_step"], h["loss"]) for h in run["history"]]
        picked = dict(expected)
        assert steps.size == trackiod_data.MAX_POINTS and steps[0] == 0 and steps[-1] == 2499
        assert all(picked[s] == v for s, v in zip(steps.tolist(), values.tolist()))
        trackiod_data.MAX_POINTS = 10**6
        steps, values = dataset.series("exp", "one", "loss")
        assert list(zip(steps.tolist(), values.tolist())) == expected  # the overwrite at step 7 wins, as in the store
        assert picked[7] == -5.0
    finally:
        sys.path.remove(str(tmp_path / "space"))
        sys.modules.pop("trackiod_data", None)
