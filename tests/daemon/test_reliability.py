"""The issue's reliability tests: real daemons, real ZeroMQ sockets, real SQLite, real training processes.

Every test logs ``value = step * 10 + k`` for keys ``k0..k9`` and reads the run back through
``trackio_shim.Api().run(...).scan_history()``; it also reads the raw chunk blobs, because scan_history shows
one value per step and so would hide a point stored twice.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.daemons import DaemonProcess, Daemons, daemons_for, wait_for
from tests.support.training import KEYS, PROJECT, assert_complete, report_of, start_training, stored_points
from trackio_shim import protocol as P
from trackiod.ingest.spool import read_frames


def received(daemon: DaemonProcess) -> int:
    """Frames the running daemon has taken off its socket since it started (0 if it does not answer)."""
    status = daemon.status()
    return int(status["frames_total"]) if status else 0


def taken_in(daemon: DaemonProcess) -> int:
    """Points the running daemon has taken into its batches since it started (0 if it does not answer)."""
    status = daemon.status()
    return int(status["points_total"]) if status else 0


def committed(daemon: DaemonProcess) -> int:
    """As :func:`taken_in`, but 0 until the daemon has committed at least one batch."""
    status = daemon.status()
    return int(status["points_total"]) if status and status["commits"] else 0


def state_of(run_id: str) -> tuple[str, int | None] | None:
    from trackio_shim import Api
    from trackio_shim.errors import RunNotFoundError

    try:
        run = Api().run(f"{PROJECT}/{run_id}")
    except (RunNotFoundError, FileNotFoundError):
        return None
    return run.state, run.exit_code


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_concurrent_runs_store_every_point_exactly_once(daemon: DaemonProcess, env: dict[str, str]) -> None:
    steps = 50_000
    procs = [start_training(env, f"conc{i}", steps=steps) for i in range(4)]
    reports = [report_of(p, timeout=150) for p in procs]
    assert [r["steps"] for r in reports] == [steps] * 4
    for i in range(4):
        assert_complete(f"conc{i}", steps)
    status = daemon.status()
    assert status is not None and status["malformed_frames"] == 0


@pytest.mark.slow
def test_kill9_daemon_three_times_loses_and_duplicates_nothing(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    daemon = stopped_daemon.start()
    stop = tmp_path / "stop"
    proc = start_training(env, "kill9", stop=stop, pace=5)
    try:
        # Each daemon is killed once it has committed some points of its own, at a different depth each time.
        for points in (5_000, 30_000, 60_000):
            wait_for(lambda n=points: committed(daemon) >= n, timeout=30, what=f"the daemon to commit {points} points")
            assert proc.poll() is None, "the training script ended before the kill"
            daemon.kill9()
            daemon.start()
        wait_for(lambda: committed(daemon) >= 20_000, timeout=30, what="commits after the last restart")
        assert proc.poll() is None
    finally:
        stop.touch()
    report = report_of(proc)
    assert report["steps"] > 10_000
    assert_complete("kill9", report["steps"])
    status = daemon.status()
    assert status is not None and status["malformed_frames"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("buffer_bytes", [None, 256 * 1024], ids=["buffered", "spooling"])
def test_late_start_delivers_everything(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path, buffer_bytes: int | None
) -> None:
    # With a small buffer the shim spills to its spool while no daemon answers, then hands it over.
    extra = {"TRACKIOD_BUFFER_BYTES": str(buffer_bytes)} if buffer_bytes else {}
    stop, go = tmp_path / "stop", tmp_path / "go"
    proc = start_training({**env, **extra}, "late", stop=stop, go=go, pace=20)
    try:
        wait_for(go.exists, timeout=30, what="training to start logging")
        time.sleep(5)  # the scenario: the daemon comes up five seconds into training
        assert proc.poll() is None, "the training script ended before the daemon started"
        if buffer_bytes:
            assert list((stopped_daemon.home / "spool").glob("*.spool")), "the shim never spooled"
        stopped_daemon.start()
        wait_for(lambda: stored_points("late") > 0, timeout=30, what="the backlog to be committed")
        assert proc.poll() is None
    finally:
        stop.touch()
    report = report_of(proc)
    assert report["p99_ms"] < 50, report
    assert_complete("late", report["steps"])
    wait_for(lambda: not list((stopped_daemon.home / "spool").glob("*.spool")), timeout=10, what="spool ingested")


@pytest.mark.slow
@pytest.mark.parametrize("buffer_bytes", [None, 256 * 1024], ids=["spilled-at-finish", "spooling-while-logging"])
def test_no_daemon_ever_spools_then_ingests_at_next_start(
    stopped_daemon: DaemonProcess, env: dict[str, str], buffer_bytes: int | None
) -> None:
    # The small buffer makes the shim spool while it logs, so finish() meets a spool file that is still open.
    extra = {"TRACKIOD_BUFFER_BYTES": str(buffer_bytes)} if buffer_bytes else {}
    steps = 20_000
    started = time.monotonic()
    proc = start_training({**env, **extra}, "nodaemon", steps=steps)
    report = report_of(proc, timeout=60)
    assert time.monotonic() - started < 30, "a script with no daemon took too long to exit"
    assert report["finish_s"] < 10, f"finish() took {report['finish_s']:.1f}s with no daemon"
    spool = stopped_daemon.home / "spool"
    logged = sum(msg[0] == P.LOG for path in spool.glob("*.spool") for msg in read_frames(path, 1 << 24))
    assert logged == steps, "the spool does not hold every LOG frame"
    finishes = sum(msg[0] == P.RUN_FINISH for path in spool.glob("*.spool") for msg in read_frames(path, 1 << 24))
    assert finishes == 1, "the spool does not hold the RUN_FINISH frame"
    assert not (stopped_daemon.home / "trackiod.db").exists()

    stopped_daemon.start()
    assert_complete("nodaemon", steps)
    assert not list(spool.glob("*.spool")), "ingested spool files must be removed"
    assert state_of("nodaemon") == ("finished", 0)


@pytest.mark.slow
def test_frozen_daemon_log_stays_fast_and_loses_nothing(
    daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    stop, go = tmp_path / "stop", tmp_path / "go"
    proc = start_training(env, "frozen", stop=stop, go=go, pace=10)
    try:
        wait_for(go.exists, timeout=30, what="training to start logging")
        wait_for(lambda: received(daemon) > 0, timeout=10, what="the daemon to receive frames")
        daemon.signal(signal.SIGSTOP)
        try:
            time.sleep(10)  # the scenario: the daemon is frozen for ten seconds
            assert proc.poll() is None, "the training script ended during the freeze"
        finally:
            daemon.signal(signal.SIGCONT)
        frozen_total = received(daemon)
        wait_for(lambda: received(daemon) > frozen_total + 500, timeout=30, what="logging to go on after SIGCONT")
    finally:
        stop.touch()
    report = report_of(proc)
    assert report["steps"] > 10_000
    # Loose sanity bounds (the budget is checked by the benchmarks): log() never waits for the daemon.
    assert report["p99_ms"] < 50, report
    assert report["max_ms"] < 250, report
    assert_complete("frozen", report["steps"])


@pytest.mark.slow
def test_sigterm_drains_everything_received(stopped_daemon: DaemonProcess, shim: Any) -> None:
    # Long flush deadline and maintenance period: only the drain can commit these points. A drained socket
    # commits after a fifth of the flush interval (daemon/loop.py), two minutes here.
    daemon = stopped_daemon.start(TRACKIOD_FLUSH_INTERVAL_S="600", TRACKIOD_MAINTENANCE_INTERVAL_S="600")
    run = shim.init(project=PROJECT, id="drain")
    steps = 3000
    for step in range(steps):
        run.log({f"k{k}": step * 10 + k for k in range(KEYS)})
    # points_total counts points taken into the open batch: all of them received, none committed yet.
    wait_for(lambda: taken_in(daemon) == steps * KEYS, timeout=20, what="every point received")
    assert stored_points("drain") == 0, "points were committed before the drain; the test proves nothing"
    assert daemon.terminate() == 0
    assert_complete("drain", steps, timeout=0.5)


@pytest.mark.slow
def test_autostart_race_leaves_exactly_one_daemon(env: dict[str, str]) -> None:
    from trackio_shim.settings import TrackiodSettings
    from trackiod.daemon import control

    home = Path(env["TRACKIOD_HOME"])
    auto = {**env, "TRACKIOD_AUTOSTART": "1"}
    settings = TrackiodSettings.load(environ=auto)
    assert control.request(settings, "status", timeout=0.3) is None
    steps = 2000
    try:
        procs = [start_training(auto, f"auto{i}", steps=steps) for i in range(6)]
        reports = [report_of(p, timeout=90) for p in procs]
        assert [r["steps"] for r in reports] == [steps] * 6
        # Losers of the lock may take a moment to exit; then exactly one daemon serves this home.
        wait_for(lambda: len(daemons_for(home)) == 1, timeout=15, what="exactly one daemon for this home")
        (survivor,) = daemons_for(home)
        assert control.daemon_pid(settings) == survivor.pid
        answer = control.request(settings, "status", timeout=2)
        assert answer is not None and answer[1]["pid"] == survivor.pid
        for i in range(6):
            assert_complete(f"auto{i}", steps)
            assert state_of(f"auto{i}") == ("finished", 0)
    finally:
        for proc in daemons_for(home):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except psutil.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_daemons_started_at_once_leave_exactly_one(env: dict[str, str], tmp_path: Path, daemons: Daemons) -> None:
    # No autostart lock in front of them: the daemon's own lock alone must keep one alive.
    racers = [daemons(env, tmp_path / f"racer{i}.log") for i in range(4)]
    for racer in racers:
        racer.start(wait=False)
    wait_for(lambda: sum(r.alive for r in racers) == 1, timeout=30, what="the losers to exit")
    (winner,) = [r for r in racers if r.alive]
    assert [r.proc.returncode for r in racers if r is not winner] == [0, 0, 0]  # type: ignore[union-attr]
    status = wait_for(winner.status, timeout=20, what="the winner to answer")
    assert status["pid"] == winner.proc.pid  # type: ignore[union-attr]
    assert daemons_for(winner.home) == [psutil.Process(status["pid"])]
    proc = start_training(env, "racer", steps=1000)
    report_of(proc)
    assert_complete("racer", 1000)


@pytest.mark.slow
def test_run_states_crashed_failed_finished(daemon: DaemonProcess, env: dict[str, str]) -> None:
    steps = 500
    ends = {"crashy": "hang", "failing": "raise", "exiting": "exit3", "clean": "finish", "unfinished": "atexit"}
    procs = {run_id: start_training(env, run_id, steps=steps, end=end) for run_id, end in ends.items()}
    hung = procs.pop("crashy")
    try:
        wait_for(lambda: stored_points("crashy") == steps * KEYS, timeout=30, what="the doomed run's data")
        assert state_of("crashy") == ("running", None)
    finally:
        hung.kill()  # SIGKILL: no atexit, no finish()
        hung.communicate(timeout=10)
    for run_id, proc in procs.items():
        report_of(proc, returncode={"failing": 1, "exiting": 3}.get(run_id, 0))
    wait_for(lambda: state_of("crashy") == ("crashed", None), timeout=20, what="the killed run to be crashed")
    assert state_of("failing") == ("failed", 1)
    assert state_of("exiting") == ("failed", 3)
    assert state_of("clean") == ("finished", 0)
    assert state_of("unfinished") == ("finished", 0)
    for run_id in ends:
        assert_complete(run_id, steps)
