"""A run whose end still waits in a spool file is not `crashed`; `trackiod stop` says trainers may restart it
(issue 18, finding 14). Real daemons, real training scripts, states read back through ``Api()``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import spawn_script

# Logs 10 steps live, waits until the test has stopped the daemon, then either logs 10 more and finishes (they
# go to the spool) or, with END=exit, leaves without finishing and without spooling anything (os._exit).
SPOOLING = """
import os, time
from pathlib import Path
import trackio_shim as wandb
wandb.init(project="pend", id=os.environ["RUN"])
for i in range(10):
    wandb.log({"ok": float(i)})
Path(os.environ["READY"]).touch()
gone = Path(os.environ["GONE"])
while not gone.exists():
    time.sleep(0.01)
if os.environ.get("END") == "exit":
    os._exit(0)
for i in range(10, 20):
    wandb.log({"ok": float(i)})
wandb.finish()
"""


def _state(run_id: str) -> str | None:
    from trackio_shim import Api
    from trackio_shim.errors import RunNotFoundError

    try:
        return str(Api().run(f"pend/{run_id}").state)
    except (RunNotFoundError, FileNotFoundError):
        return None


def _steps(run_id: str) -> int:
    from trackio_shim import Api

    return len(list(Api().run(f"pend/{run_id}").scan_history(keys=["ok"])))


def test_a_finished_run_is_not_crashed_while_its_spool_file_waits(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    daemon = stopped_daemon.start()
    gone = tmp_path / "gone"
    procs = []
    for run_id, end in (("spooled", "finish"), ("dead", "exit")):  # "dead": crash detection's witness
        ready = tmp_path / f"ready-{run_id}"
        procs.append(spawn_script(SPOOLING, {**env, "RUN": run_id, "READY": str(ready), "GONE": str(gone), "END": end}))
        wait_for(ready.exists, timeout=60, what=f"{run_id} to log its first steps")
        wait_for(lambda r=run_id: _steps(r) == 10, timeout=20, what=f"{run_id}'s first steps to be stored")
    assert daemon.proc is not None
    daemon.proc.kill()
    daemon.proc.wait(timeout=20)
    gone.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    spool = daemon.settings().spool_dir
    files = sorted(spool.glob("*.spool"))
    assert files, "the trainer spooled nothing"
    # The spool file is pending: held as if its reader had not reached it yet (a long spool read in slices).
    held = [os.open(path, os.O_RDONLY) for path in files]
    try:
        for fd in held:
            fcntl.flock(fd, fcntl.LOCK_EX)
        daemon.start()
        wait_for(lambda: _state("dead") == "crashed", timeout=30, what="crash detection to run")
        assert _state("spooled") == "running", "marked crashed while its RUN_FINISH waited in the spool"
    finally:
        for fd in held:
            os.close(fd)
    wait_for(lambda: _state("spooled") == "finished", timeout=30, what="the spooled finish")
    assert _steps("spooled") == 20


def test_stop_says_that_running_trainers_may_restart_the_daemon(daemon: DaemonProcess, env: dict[str, str]) -> None:
    trainer = spawn_script(
        """
        import time, trackio_shim as wandb
        wandb.init(project="pend", id="busy")
        print("up", flush=True)
        while True:
            wandb.log({"ok": 1.0})
            time.sleep(0.01)
        """,
        {**env, "TRACKIOD_AUTOSTART": "0"},
    )
    try:
        assert trainer.stdout is not None and trainer.stdout.readline().strip() == "up"
        wait_for(lambda: _state("busy") == "running", timeout=20, what="the run to start")
        result = _stop(env)
        assert result.returncode == 0, result.stderr
        assert "trackiod stopped" in result.stdout
        assert "busy (" in result.stderr and "start trackiod again" in result.stderr, result.stderr
        assert "TRACKIOD_AUTOSTART=0" in result.stderr
    finally:
        trainer.kill()
        trainer.wait(timeout=20)


def _stop(env: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", "stop"], env=env, capture_output=True, text=True, timeout=120
    )
