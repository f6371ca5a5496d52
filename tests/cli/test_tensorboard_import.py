"""``trackiod import tensorboard``: histograms, images and hparams too, the events' own wall times, and a line for
each kind of value it did not import.

All real: event files written by torch's SummaryWriter in a fresh interpreter, a daemon process, the runs read
back through ``Api()``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.daemons import DaemonProcess
from tests.support.event_writing import scalar, summary_event, tensor_value, write_records
from tests.support.scripts import run_script
from trackiod.cli import main as cli

pytest.importorskip("tensorboard")

#: The events' wall times: long before the import, so a run stretched to the import time would show.
T0 = 1_600_000_000.0


def write_event_dir(log_dir: Path, env: dict[str, str]) -> None:
    script = f"""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter({str(log_dir)!r})
    for step in range(10):
        wall = {T0} + 10 * step
        writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=wall)
        if step % 5 == 0:
            writer.add_histogram("weights", np.linspace(-1, 1, 50) * (step + 1), step, walltime=wall)
    writer.add_image("sample", np.zeros((3, 6, 7)), 9, walltime={T0} + 90)
    writer.add_text("notes", "first run", 0, walltime={T0})
    writer.add_pr_curve("pr", np.array([0, 1, 1]), np.array([0.1, 0.8, 0.6]), 9, walltime={T0} + 90)
    writer.close()
    hp = SummaryWriter({str(log_dir / "hp")!r})
    hp.add_hparams({{"lr": 0.01, "optimizer": "adam"}}, {{"hp/accuracy": 0.75}}, run_name=".")
    hp.close()
    """
    run_script(script, env)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def test_import_tensorboard_keeps_media_hparams_and_wall_times(
    daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_event_dir(tmp_path / "tb", env)
    assert cli(["import", "tensorboard", str(tmp_path / "tb"), "--project", "imp", "--name", "base"]) == 0
    captured = capsys.readouterr()
    assert "imported imp/" in captured.out
    assert "base: skipped 1 value(s) of pr: pr_curves summaries are not stored" in captured.err

    runs = {r.name: r for r in shim.Api().runs("imp")}
    assert sorted(runs) == ["base", "base/hp"]
    run = runs["base"]
    # The run spans the events' wall times, not the import's.
    assert (run.created_at, run.ended_at, run.state) == (iso(T0), iso(T0 + 90), "finished")
    rows = run.history(pandas=False)
    assert [(r["_step"], r["_timestamp"]) for r in rows if "loss" in r] == [(s, T0 + 10 * s) for s in range(10)]
    assert [r["notes"] for r in rows if "notes" in r] == ["first run"]
    histograms = run.media("weights")
    assert [h.step for h in histograms] == [0, 5]
    assert sum(histograms[1]["values"]) == 50
    assert histograms[1]["bins"][0] == pytest.approx(-6) and histograms[1]["bins"][-1] == pytest.approx(6)
    (image,) = run.media("sample")
    assert (image.step, image["width"], image["height"]) == (9, 7, 6)
    assert image.local_path is not None and image.local_path.read_bytes().startswith(b"\x89PNG")

    hparams = runs["base/hp"]
    assert hparams.config["lr"] == 0.01 and hparams.config["optimizer"] == "adam"
    assert [r["hp/accuracy"] for r in hparams.history(pandas=False)] == [pytest.approx(0.75)]


def test_import_tensorboard_damaged_file_names_it(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "events.out.tfevents.1.host").write_bytes(b"\xff" * 64)
    assert cli(["import", "tensorboard", str(bad), "--project", "bad"]) == 2
    assert "is damaged (its length fails its CRC)" in capsys.readouterr().err


def test_the_python_import_warns_what_it_skipped(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    (tmp_path / "tb").mkdir()
    curve = tensor_value("pr", np.zeros((2, 3)), "pr_curves")
    write_records(tmp_path / "tb" / "events.out.tfevents.1.host", [summary_event(0, T0, [curve, scalar("a", 1.0)])])
    with pytest.warns(
        UserWarning, match="import of tb: skipped 1 value\\(s\\) of pr: pr_curves summaries are not stored"
    ):
        (run,) = shim.import_tf_events(tmp_path / "tb", project="warned")
    assert [r["a"] for r in shim.Api().run(f"warned/{run.id}").history(pandas=False)] == [1.0]


def test_an_imported_csv_run_ends_at_its_last_timestamp(daemon: DaemonProcess, shim: Any, tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(f"step,timestamp,loss\n0,{T0},1.0\n1,{T0 + 30},0.5\n")
    run = shim.import_csv(path, project="csv-times")
    stored = shim.Api().run(f"csv-times/{run.id}")
    assert (stored.created_at, stored.ended_at) == (iso(T0), iso(T0 + 30))
