"""A small team on one machine: node daemons started the way an operator starts them, and what each stored.

Complements tests/support/nodes.py (homes, ports, keys): a node daemon started with CLI flags (so its role
is stored in node.json as `trackiod start --forward` stores it), the daemon a training process autostarted
(stopped by the test that caused it), and every rank's series of every run of a project, with the number
of points each series holds as stored (a frame applied twice would count twice).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.daemons import DaemonProcess, Daemons, daemons_for, wait_for
from trackiod.read.connection import open_reader
from trackiod.read.ranks import rank_key_ids
from trackiod.read.runs import list_runs
from trackiod.read.series import read_series


class FlaggedDaemon(DaemonProcess):
    """A node daemon started with ``trackiod start --foreground FLAGS`` (``--forward URL``, ``--listen URL``)."""

    def __init__(self, env: dict[str, str], log_path: Path, flags: list[str]) -> None:
        super().__init__(env, log_path)
        self.flags = flags

    def start(self, wait: bool = True, **extra_env: str) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trackiod", "start", "--foreground", *self.flags],
            env={**self.env, **extra_env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self.status, timeout=20, what="the daemon to answer status")
        return self


def flagged(daemons: Daemons, env: dict[str, str], log_path: Path, *flags: str) -> FlaggedDaemon:
    """A FlaggedDaemon owned by the ``daemons`` tracker (reaped at the test's end), not started yet."""
    daemon = FlaggedDaemon(env, log_path, list(flags))
    daemons.made.append(daemon)
    return daemon


def stop_autostarted(env: dict[str, str], timeout: float = 30) -> None:
    """Stop the daemon a training process autostarted for this home (``trackiod stop``), and wait for it."""
    subprocess.run([sys.executable, "-m", "trackiod", "stop"], env=env, capture_output=True, timeout=timeout + 10)
    wait_for(lambda: not daemons_for(Path(env["TRACKIOD_HOME"])), timeout=timeout, what="the autostarted daemon")


def stored(home: Path, project: str, key: str = "x") -> dict[str, dict[str, Any]]:
    """``{run_key: {state, ranks: {rank: (values by step, stored points)}}}`` for every run of ``project``."""
    db = home / "trackiod.db"
    if not db.exists():
        return {}
    conn = open_reader(db)
    try:
        out: dict[str, dict[str, Any]] = {}
        for run in list_runs(conn, project):
            ranks = {}
            for rank, (series_id, _) in rank_key_ids(conn, run["id"], key).items():
                values = [float(v) for v in read_series(conn, run["id"], series_id)[2]]
                (points,) = conn.execute(
                    "SELECT points FROM run_keys WHERE run_id=? AND key_id=?", (run["id"], series_id)
                ).fetchone()
                ranks[rank] = (values, int(points))
            out[run["run_key"]] = {"state": run["state"], "ranks": ranks}
        return out
    finally:
        conn.close()
