"""Training scripts in fresh interpreters (real atexit, real process exit), and the ones a test must not leave.

``run_script`` waits for its script, with a timeout that kills it. ``spawn_script`` does not wait, so every
process it starts is recorded in ``SPAWNED``; conftest's autouse fixture kills, at each test's teardown, the
scripts that test started and left running (a test that failed half-way, a script told to hang), and a
session fixture does the same for scripts started by module-scoped fixtures.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


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


class Spawned:
    """The script processes started by ``spawn_script``, in order, until they are reaped."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def add(self, proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
        self._procs.append(proc)
        return proc

    def mark(self) -> int:
        """A position to reap from later: the scripts started after this call."""
        return len(self._procs)

    def reap(self, since: int = 0) -> list[int]:
        """Kill the scripts started since ``since`` that still run and close every pipe; returns the pids killed."""
        procs, self._procs[since:] = self._procs[since:], []
        killed = []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                killed.append(proc.pid)
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        return killed


SPAWNED = Spawned()


def spawn_script(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a training script without waiting for it (killed at the test's teardown if it is still running)."""
    return SPAWNED.add(
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
