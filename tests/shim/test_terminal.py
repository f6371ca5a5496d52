"""What users see at the terminal: init's line, finish's summary, silence, the progress bar."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.support.daemons import DaemonProcess
from tests.support.scripts import run_script
from trackio_shim.sdk.terminal import dashboard_url
from trackio_shim.settings import TrackiodSettings
from trackiod.cli.progress import Progress

_SCRIPT = """
import trackio_shim as wandb
run = wandb.init(project="tty", id=RUN, name="quiet-river")
for i in range(10):
    run.log({"a": i, "b": i * 2})
run.finish()
"""


def test_init_and_finish_print_one_line_each(daemon: DaemonProcess, env: dict[str, str]) -> None:
    err = run_script(_SCRIPT.replace("RUN", "'t1'"), env).stderr.splitlines()
    assert err == [
        "trackiod: run quiet-river (tty/t1) started; run `trackiod show` to see it",
        "trackiod: run quiet-river (tty/t1) finished: 20 points stored, nothing left buffered",
    ]


def test_wandb_silent_and_trackiod_silent_suppress_both_lines(daemon: DaemonProcess, env: dict[str, str]) -> None:
    assert run_script(_SCRIPT.replace("RUN", "'t2'"), {**env, "WANDB_SILENT": "true"}).stderr == ""
    assert run_script(_SCRIPT.replace("RUN", "'t3'"), {**env, "TRACKIOD_SILENT": "1"}).stderr == ""


def test_finish_says_what_was_spooled_when_no_daemon_answers(env: dict[str, str]) -> None:
    err = run_script(_SCRIPT.replace("RUN", "'t4'"), env).stderr
    finish_line = [line for line in err.splitlines() if "finished" in line]
    assert (
        len(finish_line) == 1
        and "messages spooled to" in finish_line[0]
        and "stored when trackiod runs" in (finish_line[0])
    )


def test_dashboard_url_is_read_from_daemon_json(daemon: DaemonProcess, env: dict[str, str]) -> None:
    settings = TrackiodSettings.load(environ=env)
    assert json.loads(settings.state_path.read_text())["dashboard"] is None  # no dashboard served here
    assert daemon.status()["dashboard"] is None
    assert dashboard_url(settings) is None
    state = json.loads(settings.state_path.read_text())
    settings.state_path.write_text(json.dumps({**state, "dashboard": "http://127.0.0.1:7860"}))
    assert dashboard_url(settings) == "http://127.0.0.1:7860"
    err = run_script(_SCRIPT.replace("RUN", "'t5'"), env).stderr.splitlines()
    assert (
        err[0]
        == "trackiod: run quiet-river (tty/t5) started; view it at http://127.0.0.1:7860/?project=tty&view=run&run=t5"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_on_a_terminal_and_prints_one_line_elsewhere(tmp_path: Path) -> None:
    piped = io.StringIO()
    with Progress("copy", total=2048, unit="B", stream=piped) as bar:
        for _ in range(4):
            bar.update(512)
    assert piped.getvalue().count("\n") == 1
    assert piped.getvalue().startswith("copy [") and "100% 2.0 KiB/2.0 KiB" in piped.getvalue()
    tty = _Terminal()
    with Progress("import", total=None, stream=tty) as bar:
        bar.update(3)
    assert tty.getvalue().startswith("\rimport 3 ") and tty.getvalue().endswith("\x1b[K\n")
    broken = io.StringIO()
    try:
        with Progress("export", total=10, stream=broken) as bar:
            bar.update(5)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert "50%" in broken.getvalue() and broken.getvalue().rstrip().endswith("(interrupted)")
