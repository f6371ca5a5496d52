"""``init(sync_tensorboard=True)`` and ``trackio_shim.tensorboard.patch()``: the daemon streams a SummaryWriter's
event files into the run.

All real: a daemon process, training scripts in their own interpreters writing with torch.utils.tensorboard and
tensorboardX, and the values read back through ``Api()``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.event_writing import scalar, summary_event, write_records
from tests.support.scripts import run_script, spawn_script
from trackiod.read.connection import open_reader

pytest.importorskip("tensorboard")


def api_run(shim: Any, path: str) -> Any:
    try:
        return shim.Api().run(path)
    except Exception:  # not created yet
        return None


def test_sync_tensorboard_stores_scalars_histograms_images_and_text(
    daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path
) -> None:
    """The directory also holds an earlier run's event file: that one is not read into this run."""
    (tmp_path / "logs").mkdir()
    stale = tmp_path / "logs" / "events.out.tfevents.1.earlier"
    write_records(stale, [summary_event(0, 1.0, [scalar("stale", 1.0)])])
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    script = f"""
    import numpy as np
    import trackio_shim as wandb
    from torch.utils.tensorboard import SummaryWriter
    run = wandb.init(project="tb", id="torch", sync_tensorboard=True)
    writer = SummaryWriter({str(tmp_path / "logs")!r})
    for step in range(3):
        wall = 1_700_000_000 + step
        writer.add_scalar("train/loss", 1.0 / (step + 1), step, walltime=wall)
        writer.add_histogram("weights", np.arange(100) * (step + 1), step, walltime=wall)
        writer.add_image("sample", np.full((3, 4, 5), step / 3), step, walltime=wall)
        writer.add_text("note", f"step {{step}}", step, walltime=wall)
    writer.close()
    wandb.finish()
    """
    result = run_script(script, env)
    assert "SummaryWriter" not in result.stderr  # no "nothing was stored" warning
    # The daemon reads the files after the run ended too (its grace period): wait for the last values.
    run = wait_for(
        lambda: (r := api_run(shim, "tb/torch")) and len(r.media("sample")) == 3 and r,
        timeout=20,
        what="the TensorBoard values in the run",
    )
    rows = run.history(pandas=False)
    losses = [(r["_step"], r["train/loss"]) for r in rows if "train/loss" in r]
    assert losses == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3, rel=1e-6))]  # TensorBoard keeps float32
    assert [r["_timestamp"] for r in rows if "train/loss" in r] == [1_700_000_000 + s for s in range(3)]
    assert [r["note"] for r in rows if "note" in r] == ["step 0", "step 1", "step 2"]
    assert not any("stale" in r for r in rows)
    histograms = run.media("weights")
    assert [h.step for h in histograms] == [0, 1, 2]
    assert sum(histograms[2]["values"]) == 100 and histograms[2]["bins"][-1] == pytest.approx(297)
    images = run.media("sample")
    assert [(i.kind, i["width"], i["height"]) for i in images] == [("image", 5, 4)] * 3
    assert images[0].local_path is not None and images[0].local_path.read_bytes().startswith(b"\x89PNG")


def test_patch_streams_while_the_run_is_running(
    daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path
) -> None:
    """tensorboardX writers in two subdirectories, patched with a root: keys carry the subdirectory."""
    go = tmp_path / "finish-now"
    script = f"""
    import time
    from pathlib import Path
    import trackio_shim as wandb
    import trackio_shim.tensorboard
    from tensorboardX import SummaryWriter
    trackio_shim.tensorboard.patch(root_logdir={str(tmp_path / "tbx")!r})
    run = wandb.init(project="tb", id="tbx")
    train = SummaryWriter({str(tmp_path / "tbx" / "train")!r})
    evals = SummaryWriter({str(tmp_path / "tbx" / "eval")!r})
    for step in range(5):
        train.add_scalar("loss", 5 - step, step)
    evals.add_scalar("loss", 0.5, 4)
    train.close(); evals.close()  # tensorboardX's flush() does not wait for its writer thread
    deadline = time.monotonic() + 60
    while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    wandb.finish()
    """
    proc = spawn_script(script, env)

    def streamed() -> Any:
        run = api_run(shim, "tb/tbx")
        if run is None:
            return None
        rows = run.history(pandas=False)
        return run if any("eval/loss" in r for r in rows) and len([r for r in rows if "train/loss" in r]) == 5 else None

    run = wait_for(streamed, timeout=20, what="values streamed during the run")
    assert run.state == "running"  # read by the daemon while the training process is still at work
    go.touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = shim.Api().run("tb/tbx").history(pandas=False)
    assert [r["train/loss"] for r in rows if "train/loss" in r] == [5, 4, 3, 2, 1]
    assert [(r["_step"], r["eval/loss"]) for r in rows if "eval/loss" in r] == [(4, 0.5)]


def test_sync_tensorboard_without_a_writer_warns(daemon: DaemonProcess, env: dict[str, str]) -> None:
    script = """
    import trackio_shim as wandb
    wandb.init(project="tb", id="none", sync_tensorboard=True)
    wandb.log({"x": 1})
    wandb.finish()
    """
    result = run_script(script, env)
    assert "no SummaryWriter opened a directory" in result.stderr


def test_a_restarted_daemon_goes_on_reading_where_it_stopped(
    stopped_daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path
) -> None:
    """The watch and its offsets outlive a daemon killed mid-run: the values after the restart are stored once."""
    stopped_daemon.start()
    go = tmp_path / "write-more"
    script = f"""
    import time
    from pathlib import Path
    import trackio_shim as wandb
    from torch.utils.tensorboard import SummaryWriter
    wandb.init(project="tb", id="restart", sync_tensorboard=True)
    writer = SummaryWriter({str(tmp_path / "logs")!r})
    for step in range(3):
        writer.add_scalar("loss", float(step), step)
    writer.flush()
    deadline = time.monotonic() + 60
    while not Path({str(go)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for step in range(3, 5):
        writer.add_scalar("loss", float(step), step)
    writer.close()
    wandb.finish()
    """
    proc = spawn_script(script, env)

    def losses() -> list[tuple[int, float]] | None:
        run = api_run(shim, "tb/restart")
        return None if run is None else [(r["_step"], r["loss"]) for r in run.history(pandas=False) if "loss" in r]

    wait_for(lambda: losses() == [(0, 0.0), (1, 1.0), (2, 2.0)], timeout=20, what="the first values")
    stopped_daemon.kill9()
    stopped_daemon.start()
    go.touch()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    wait_for(lambda: losses() == [(s, float(s)) for s in range(5)], timeout=20, what="the values after the restart")
    conn = open_reader(stopped_daemon.settings().db_path)
    try:
        (points,) = conn.execute("SELECT sum(n) FROM chunks").fetchone()
    finally:
        conn.close()
    assert points == 5  # nothing read twice


def test_a_writer_opened_after_patch_but_before_init_goes_to_the_next_run(
    daemon: DaemonProcess, env: dict[str, str], shim: Any, tmp_path: Path
) -> None:
    script = f"""
    import trackio_shim as wandb
    import trackio_shim.tensorboard
    from torch.utils.tensorboard import SummaryWriter
    trackio_shim.tensorboard.patch()
    writer = SummaryWriter({str(tmp_path / "early")!r})
    writer.add_scalar("x", 1.0, 0)
    wandb.init(project="tb", id="early")
    writer.add_scalar("x", 2.0, 1)
    writer.close()
    wandb.finish()
    """
    run_script(script, env)
    run = wait_for(
        lambda: (r := api_run(shim, "tb/early")) and len(r.history(pandas=False)) == 2 and r, timeout=20, what="x"
    )
    assert [(r["_step"], r["x"]) for r in run.history(pandas=False)] == [(0, 1.0), (1, 2.0)]
