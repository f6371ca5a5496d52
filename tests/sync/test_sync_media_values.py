"""Export and pull carry the rich values of schema version 8: a gallery's element files, a video, a chart's table.

Everything is real: a daemon stores what a training script logged, `trackiod export --format parquet` writes the
dataset and `trackiod pull` restores it into a new home."""

from __future__ import annotations

from pathlib import Path

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script
from trackio_shim.settings import TrackiodSettings
from trackiod.cli import main as cli
from trackiod.read.connection import open_reader
from trackiod.read.media import media_keys, read_media
from trackiod.read.runs import list_runs

LOG = """
import numpy as np
import trackio_shim as wandb
run = wandb.init(project="values", id="r1")
run.log({"g": [wandb.Image(np.full((3, 3), i, np.uint8)) for i in range(3)],
         "v": wandb.Video(np.zeros((2, 1, 4, 4), np.uint8)),
         "c": wandb.plot.bar(wandb.Table(columns=["k", "n"], data=[["a", 1]]), "k", "n")})
run.finish()
"""


def _values(home: Path) -> dict[str, tuple[str, dict]]:
    settings = TrackiodSettings.load(environ={}, home=str(home), runtime_dir=str(home / "rt"))
    conn = open_reader(settings.db_path)
    (run,) = list_runs(conn, "values")
    out = {}
    for key, (key_id, kind, _) in media_keys(conn, run["id"]).items():
        (value,) = read_media(conn, run["id"], key_id)[2]
        out[key] = (kind, value)
    return out


def test_galleries_videos_and_charts_export_and_pull_with_their_files(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    run_script(LOG, env)
    assert daemon.terminate() == 0
    out = tmp_path / "export"
    assert cli(["export", "--project", "values", "--format", "parquet", str(out)]) == 0
    back = tmp_path / "back"
    assert cli(["pull", str(out), "--home", str(back)]) == 0
    before, after = _values(daemon.home), _values(back)
    assert before == after and {k: kind for k, (kind, _) in after.items()} == {
        "g": "gallery",
        "v": "video",
        "c": "plot",
    }
    for home, values in ((daemon.home, before), (back, after)):
        files = [item["path"] for item in values["g"][1]["items"]] + [values["v"][1]["path"], values["c"][1]["path"]]
        assert len(files) == 5 and all((home / "media" / f).is_file() for f in files)
