"""Real daemon processes for tests, every one owned by a tracker that reaps it, and deadline-based waiting.

A daemon is ``python -m trackiod start --foreground`` in a subprocess; clients talk to it over its ZeroMQ
socket and assertions read the SQLite file back. Nothing is mocked.

Ownership follows pyzmq's test fixtures: a ``Daemons`` tracker makes every DaemonProcess a test uses and
reaps them all when the test ends, whatever happened, so a start that times out or an assertion between two
starts leaks nothing. A daemon the tracker made may be left running for teardown on purpose; a daemon found
running for a test's home that no tracker made (an autostarted or ``trackiod start`` daemon the test forgot)
is a leak: it is killed and the test fails (``stray_daemons`` / ``fail_on_strays``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

# How long a daemon nobody owns may take to finish exiting on its own (one just told to stop) before it counts
# as left running.
STRAY_GRACE_S = 10.0


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
    """A real trackiod daemon in a subprocess, for one TRACKIOD_HOME. Made by a ``Daemons`` tracker."""

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
        """Kill the daemon if it still runs (SIGCONT first: a test may have frozen it with SIGSTOP), and reap one
        that exited on its own (a loser of the start lock), closing its log file."""
        if self.proc is None:
            return
        if self.alive:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
        if not self._log.closed:
            self._reap(10)


class Daemons:
    """Makes DaemonProcess objects and owns them: ``close()`` (or leaving the ``with`` block) reaps every one.

    The ``daemons`` fixture is one per test; module-scoped fixtures use their own ``with Daemons() as ...``.
    Calling it takes DaemonProcess's arguments and returns the daemon not started yet, already tracked, so
    ``daemons(env, log).start()`` leaks nothing even when the start times out.
    """

    def __init__(self) -> None:
        self.made: list[DaemonProcess] = []

    def __call__(self, env: dict[str, str], log_path: Path) -> DaemonProcess:
        daemon = DaemonProcess(env, log_path)
        self.made.append(daemon)
        return daemon

    def close(self) -> None:
        """Kill what still runs, then fail if a daemon nobody made is left for one of these homes."""
        for daemon in reversed(self.made):
            daemon.cleanup()
        fail_on_strays(stray_daemons({daemon.home for daemon in self.made}))

    def __enter__(self) -> Daemons:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _daemon_home(proc: psutil.Process) -> Path | None:
    """The TRACKIOD_HOME of a running ``trackiod start`` process, None for any other process."""
    try:
        cmdline = proc.cmdline()
        if "trackiod" not in cmdline or "start" not in cmdline or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        home = proc.environ().get("TRACKIOD_HOME")
    except psutil.Error:
        return None
    return Path(home) if home else None


def daemons_under(roots: Iterable[Path]) -> list[tuple[psutil.Process, Path]]:
    """Every running ``trackiod start`` process whose TRACKIOD_HOME is one of ``roots`` or below one, with it."""
    roots = [Path(root) for root in roots]
    found = []
    for proc in psutil.process_iter():
        home = _daemon_home(proc)
        if home is not None and any(home == root or root in home.parents for root in roots):
            found.append((proc, home))
    return found


def daemons_for(home: Path) -> list[psutil.Process]:
    """The running daemon processes of exactly this TRACKIOD_HOME (more than one only while they race)."""
    return [proc for proc, found in daemons_under([home]) if found == Path(home)]


def stray_daemons(roots: Iterable[Path]) -> list[tuple[int, Path]]:
    """Daemons still running with a TRACKIOD_HOME at or under one of ``roots`` once the owned ones are reaped.

    Each gets ``STRAY_GRACE_S`` to finish an exit already under way; those left then are killed and returned
    as (pid, home), for the caller to fail the test with.
    """
    roots = [Path(root) for root in roots]
    if not roots:
        return []
    strays = daemons_under(roots)
    if strays:
        _, alive = psutil.wait_procs([proc for proc, _ in strays], timeout=STRAY_GRACE_S)
        strays = [(proc, home) for proc, home in strays if proc in alive]
    for proc, _ in strays:
        try:
            proc.resume()
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs([proc for proc, _ in strays], timeout=10)
    return [(proc.pid, home) for proc, home in strays]


def fail_on_strays(strays: list[tuple[int, Path]]) -> None:
    """Fail the test (at its teardown) naming each daemon that was left running and has now been killed."""
    if strays:
        listed = ", ".join(f"pid {pid} for {home}" for pid, home in strays)
        pytest.fail(f"daemon(s) left running that no fixture started (killed now): {listed}", pytrace=False)
