"""Deleting the spool loses only the deleted file's frames (issue 18: finding 4, part 6).

A real training script logs while no daemon runs, with a buffer small enough that it spools at once; so its
first spool file holds the SESSION and RUN_START frames. The test deletes that file (or the whole spool
directory) while the script keeps logging, then starts the daemon. Before the fix the shim kept writing into
the deleted file, and the points logged after the deletion were acknowledged and dropped as data of a run the
daemon never heard of. Now: every point logged after the deletion is stored, the run ends ``finished``, and
``trackiod status`` counts the lost frames.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.scripts import spawn_script
from tests.support.training import raw_points

BEFORE, AFTER = 3000, 2000

SCRIPT = """
import json, os, sys, time
from pathlib import Path
import trackio_shim as wandb

gate = Path(os.environ["T_GATE"])
run = wandb.init(project="rel", id=os.environ["T_RUN"])
client = run._client
for step in range(int(os.environ["T_BEFORE"])):
    run.log({"x": step}, step=step)
deadline = time.monotonic() + 30
while client.stats()["spooled_frames"] == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
print("spooled", flush=True)
while not (gate / "deleted").exists():
    time.sleep(0.01)
first = int(os.environ["T_BEFORE"])
for step in range(first, first + int(os.environ["T_AFTER"])):
    run.log({"x": step}, step=step)
    if step % 100 == 0:
        time.sleep(0.01)  # let the pump write batches into the spool while the script logs
print("logged", flush=True)
while not (gate / "finish").exists():
    time.sleep(0.01)
wandb.finish()
print(json.dumps(client.stats()), flush=True)
"""


def _wait_line(proc: subprocess.Popen[str], want: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != want:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"expected {want!r} from the script, got {line!r}; stderr:\n{err}")


def _steps(run_id: str) -> set[int]:
    points = raw_points(run_id) or {}
    return {int(step) for step in points["x"][:, 0]} if "x" in points else set()


def _state(run_id: str) -> str | None:
    from trackio_shim import Api

    try:
        return str(Api().run(f"rel/{run_id}").state)
    except Exception:
        return None


@pytest.mark.parametrize(
    ("what", "back"),
    [("directory", "while-logging"), ("file", "after-exit")],
    ids=["directory-daemon-back-while-logging", "file-daemon-back-after-exit"],
)
def test_deleted_spool_loses_only_its_own_frames(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path, what: str, back: str
) -> None:
    run_id = f"spool-deleted-{what}"
    gate = tmp_path / "gate"
    gate.mkdir()
    spool = stopped_daemon.home / "spool"
    proc = spawn_script(
        SCRIPT,
        {
            **env,
            "T_RUN": run_id,
            "T_GATE": str(gate),
            "T_BEFORE": str(BEFORE),
            "T_AFTER": str(AFTER),
            "TRACKIOD_BUFFER_BYTES": "16384",
        },
    )
    _wait_line(proc, "spooled")
    files = sorted(spool.glob("*.spool"))
    assert files, "the script never spooled"
    if what == "directory":
        shutil.rmtree(spool)
    else:
        for path in files:
            path.unlink()
    (gate / "deleted").touch()
    _wait_line(proc, "logged")
    if back == "while-logging":
        stopped_daemon.start()
    (gate / "finish").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"the script failed:\n{out}\n{err}"
    assert "could neither be delivered nor spooled" not in err, err
    if back == "after-exit":
        stopped_daemon.start()

    after = set(range(BEFORE, BEFORE + AFTER))
    wait_for(lambda: after <= _steps(run_id), timeout=60, what="every point logged after the deletion")
    wait_for(lambda: _state(run_id) == "finished", timeout=30, what="the run to end finished")
    status = wait_for(
        lambda: (s := stopped_daemon.status()) and s["frames_lost"] > 0 and s,
        timeout=30,
        what="trackiod status to count the lost frames",
    )
    stored = _steps(run_id)
    assert stored <= set(range(BEFORE + AFTER)), "a step nobody logged"
    lost = BEFORE + AFTER - len(stored)
    assert lost > 0, "nothing was lost: the deleted file held no points, so the test proves nothing"
    # Only the deleted file's frames are gone: each lost point was logged before the deletion.
    assert status["frames_lost"] >= lost
    assert json.loads(out.strip().splitlines()[-1])["seq"] >= BEFORE + AFTER


SPILLED = """
import json, os, time
from pathlib import Path
import trackio_shim as wandb

gate = Path(os.environ["T_GATE"])
first = wandb.init(project="rel", id=os.environ["T_RUN"] + "-a")
for step in range(500):
    first.log({"x": step}, step=step)
first.finish()  # no daemon: spilled to a closed spool file, which this session now counts on
print("spilled", flush=True)
while not (gate / "deleted").exists():
    time.sleep(0.01)
run = wandb.init(project="rel", id=os.environ["T_RUN"] + "-b")
for step in range(int(os.environ["T_AFTER"])):
    run.log({"x": step}, step=step)
print("logged", flush=True)
while not (gate / "finish").exists():
    time.sleep(0.01)
wandb.finish()
print(json.dumps(run._client.stats()), flush=True)
"""


def test_deleted_closed_spool_file_is_given_up_when_the_daemon_asks_for_it(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    """The daemon asks (NACK) for frames only a closed, deleted spool file held: the shim re-sends the session's
    start, says RESYNC, and goes on. Before the fix it kept pointing the daemon at the missing file, and nothing
    of the session was stored again."""
    run_id = "spool-deleted-closed"
    gate = tmp_path / "gate"
    gate.mkdir()
    spool = stopped_daemon.home / "spool"
    proc = spawn_script(SPILLED, {**env, "T_RUN": run_id, "T_GATE": str(gate), "T_AFTER": str(AFTER)})
    _wait_line(proc, "spilled")
    files = sorted(spool.glob("*.spool"))
    assert files, "finish() did not spill"
    for path in files:
        path.unlink()
    (gate / "deleted").touch()
    _wait_line(proc, "logged")
    stopped_daemon.start()
    wait_for(lambda: set(range(AFTER)) <= _steps(f"{run_id}-b"), timeout=60, what="the second run's points, sent live")
    (gate / "finish").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"the script failed:\n{out}\n{err}"
    wait_for(lambda: _state(f"{run_id}-b") == "finished", timeout=30, what="the second run to end finished")
    status = stopped_daemon.status()
    assert status is not None and status["frames_lost"] > 0, status
