"""Shared fixtures: an isolated TRACKIOD_HOME, real daemon processes, and deadline-based waiting.

Everything here is real: daemons are ``python -m trackiod start --foreground`` subprocesses, clients talk to
them over ZeroMQ ipc sockets, and assertions read the SQLite file back. Nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class DaemonProcess:
    """A real trackiod daemon in a subprocess, for one TRACKIOD_HOME."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return Path(self.env["TRACKIOD_HOME"])

    def settings(self) -> Any:
        from trackio_shim.settings import TrackiodSettings

        return TrackiodSettings.load(environ=self.env)

    def start(self, wait: bool = True, **extra_env: str) -> DaemonProcess:
        env = {**self.env, **extra_env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trackiod", "start", "--foreground"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self.status, timeout=20, what="the daemon to answer status")
        return self

    def status(self) -> dict[str, Any] | None:
        from trackiod.daemon import control

        answer = control.request(self.settings(), "status", timeout=0.3)
        return answer[1] if answer else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self._reap(10)

    def terminate(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        return self._reap(timeout)

    def _reap(self, timeout: float) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def cleanup(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self._reap(10)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated environment: its own TRACKIOD_HOME, no autostart, fast heartbeats, no WANDB_* leaking in."""
    for name in list(os.environ):
        if name.startswith(("WANDB_", "TRACKIOD_")):
            monkeypatch.delenv(name)
    values = {
        "TRACKIOD_HOME": str(tmp_path / "home"),
        "TRACKIOD_AUTOSTART": "0",
        "TRACKIOD_HEARTBEAT_INTERVAL_S": "0.5",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@pytest.fixture
def daemon(env: dict[str, str], tmp_path: Path) -> Iterator[DaemonProcess]:
    """A running daemon for this test's home; killed at teardown if the test left it running."""
    proc = DaemonProcess(env, tmp_path / "daemon-stdout.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def stopped_daemon(env: dict[str, str], tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon handle that is not started yet (tests start, kill and restart it themselves)."""
    proc = DaemonProcess(env, tmp_path / "daemon-stdout.log")
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def shim(env: dict[str, str]) -> Iterator[Any]:
    """trackio_shim used in this process, reset afterwards (runs finished, session closed)."""
    import trackio_shim

    try:
        yield trackio_shim
    finally:
        trackio_shim.teardown()


def run_script(
    code: str, env: dict[str, str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a training script in a fresh interpreter (real atexit, real process exit)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"script failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def spawn_script(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a training script without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hypothesis_profiles() -> None:
    """Hypothesis: "ci" (the default: few examples, no deadline on 2 shared cores) and "deep" for long local runs.

    Pick one with HYPOTHESIS_PROFILE=deep; the example database lives in .hypothesis/ (gitignored).
    """
    try:
        from hypothesis import settings
        from hypothesis.database import DirectoryBasedExampleDatabase
    except ImportError:  # only the dev extra has it
        return
    database = DirectoryBasedExampleDatabase(str(ROOT / ".hypothesis" / "examples"))
    settings.register_profile("ci", max_examples=40, deadline=None, database=database)
    settings.register_profile("deep", max_examples=2000, deadline=None, database=database)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_hypothesis_profiles()
