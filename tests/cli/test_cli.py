"""The ``trackiod`` command for real: start, status, runs, stop, and its error lines.

Every test runs ``python -m trackiod`` in a subprocess against its own data directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import run_script
from trackio_shim.errors import ProtocolVersionError


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_start_status_runs_stop(env: dict[str, str]) -> None:
    started = cli(env, "start")
    assert started.returncode == 0, started.stderr
    assert "trackiod started (pid" in started.stdout
    try:
        again = cli(env, "start")
        assert again.returncode == 0 and "already running" in again.stdout

        run_script(
            """
            import trackio_shim as wandb
            run = wandb.init(project="cli", name="first", config={"lr": 0.1})
            for i in range(100):
                wandb.log({"loss": 1 / (i + 1), "note": "x"})
            wandb.finish()
            """,
            env,
        )
        text = cli(env, "status")
        assert text.returncode == 0, text.stderr
        for label in ("pid", "uptime", "endpoint", "database", "active runs", "commit latency", "spool", "last error"):
            assert label in text.stdout, (label, text.stdout)
        status: dict[str, Any] = json.loads(cli(env, "status", "--json").stdout)
        assert status["running"] is True
        assert status["points_total"] == 200  # 100 steps x (loss, note)
        assert status["malformed_frames"] == 0 and status["last_error"] is None
        assert status["database"] == str(Path(env["TRACKIOD_HOME"]) / "trackiod.db")
        assert status["database_bytes"] > 0
        assert status["active_runs"] == []  # the run finished

        runs = cli(env, "runs")
        assert runs.returncode == 0 and "first" in runs.stdout and "finished" in runs.stdout
        listed = json.loads(cli(env, "runs", "--project", "cli", "--json").stdout)
        assert [(r["name"], r["state"], r["last_step"], r["config"]) for r in listed] == [
            ("first", "finished", 99, {"lr": 0.1})
        ]
        assert json.loads(cli(env, "runs", "--project", "elsewhere", "--json").stdout) == []
    finally:
        stopped = cli(env, "stop")
    assert stopped.returncode == 0 and "trackiod stopped" in stopped.stdout
    assert not (Path(env["TRACKIOD_HOME"]) / "daemon.json").exists()
    after = cli(env, "status")
    assert after.returncode == 3 and "not running" in after.stdout
    # runs reads the database directly: it works with the daemon stopped.
    assert "first" in cli(env, "runs").stdout
    assert cli(env, "stop").stdout.strip() == "trackiod is not running"


def test_errors_are_one_clear_line(env: dict[str, str]) -> None:
    bad = cli({**env, "TRACKIOD_LOG_LEVEL": "loud"}, "status")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("trackiod:") and "LOUD" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli(env, "runs")
    assert missing.returncode == 1 and "no trackiod database" in missing.stderr and "Traceback" not in missing.stderr


def test_a_database_from_a_newer_trackiod_is_refused_clearly(env: dict[str, str]) -> None:
    home = Path(env["TRACKIOD_HOME"])
    home.mkdir(mode=0o700, parents=True)  # private, as trackiod makes it (docs/security.md)
    conn = apsw.Connection(str(home / "trackiod.db"))
    conn.execute("PRAGMA user_version=999")
    conn.close()
    runs = cli(env, "runs")
    assert runs.returncode == 2 and "newer than this trackiod" in runs.stderr and "Traceback" not in runs.stderr
    start = cli(env, "start")  # the daemon dies at start; the command says so instead of waiting it out
    assert start.returncode == 1 and "exited at start" in start.stderr
    assert "newer than this trackiod" in (home / "trackiod.log").read_text()


def test_a_daemon_refuses_an_unsupported_protocol_version_at_init(
    daemon: DaemonProcess, shim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trackio_shim import protocol

    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", 99)
    with pytest.raises(ProtocolVersionError, match="99"):
        shim.init(project="from-the-future")
    assert wait_for(daemon.status)["malformed_frames"] == 0  # refused politely, not as garbage
