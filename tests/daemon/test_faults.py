"""Faults (docs/faults.md): a full disk while ingesting, a damaged database at start, kill -9 in a checkpoint.

Everything is real: daemons are processes, the full disk is a size-limited tmpfs the test mounts (it needs
root, or a user namespace: ``unshare -Urm pytest tests/daemon/test_faults.py``; without either those tests skip and
say so), corruption is bytes written over a real database file, and the kill is SIGKILL while the daemon's
checkpoint is copying the WAL into the database file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import apsw
import numpy as np
import pytest

from tests.support.daemons import DaemonProcess, Daemons, wait_for
from tests.support.training import assert_complete, report_of, start_training
from trackiod.daemon.integrity import ensure_usable, find_problem
from trackiod.store.writer import Store


def integrity_ok(db: Path) -> bool:
    """``PRAGMA integrity_check`` passes; read-only, so a WAL left by a kill stays for the daemon to replay."""
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", *args], env=env, capture_output=True, text=True, timeout=60
    )


# ---------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs mounted for this test (skips, saying why, where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem to fill")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a size-limited tmpfs ({done.stderr.strip() or 'not permitted'}); run as root or in a "
            "user namespace: unshare -Urm python -m pytest tests/daemon/test_faults.py"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a ballast file until the filesystem refuses more; returns it."""
    ballast = directory / "ballast"
    block = b"\0" * (256 << 10)
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
    small = b"\0" * 4096
    with open(ballast, "ab", buffering=0) as f:  # the last pages too, so nothing is left for anyone
        try:
            while True:
                f.write(small)
        except OSError:
            pass
    return ballast


@pytest.mark.slow
def test_disk_full_stalls_reports_and_resumes_without_loss(
    small_fs: Path, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemons: Daemons
) -> None:
    home = small_fs / "home"
    monkeypatch.setenv("TRACKIOD_HOME", str(home))
    env = {
        **env,
        "TRACKIOD_HOME": str(home),
        "TRACKIOD_SAMPLE_INTERVAL_S": "0",
        "TRACKIOD_BUFFER_BYTES": str(256 << 10),  # the shim tries its spool (on the same full disk) early
    }
    daemon = daemons(env, tmp_path / "daemon-stdout.log").start()  # its stderr lives off the small disk
    go, stop = tmp_path / "go", tmp_path / "stop"
    proc = start_training(env, "full", go=go, stop=stop, pace=20)
    wait_for(go.exists, timeout=60, what="500 steps logged")
    wait_for(lambda: daemon.status()["points_total"] > 0, what="points stored before the disk fills")  # type: ignore[index]
    ballast = fill(small_fs)

    def writes() -> dict[str, object]:
        status = daemon.status()
        assert status is not None, "the daemon stopped answering while the disk was full"
        return status["writes"]  # type: ignore[no-any-return]

    wait_for(lambda: writes()["state"] == "stalled", timeout=60, what="the daemon to notice the full disk")
    wait_for(lambda: writes().get("failed_tries", 0) >= 2, timeout=30, what="a retry that failed again")
    stalled = writes()
    assert "disk full" in str(stalled["cause"])
    shown = cli(env, "status")
    assert "STALLED" in shown.stdout and "disk full" in shown.stdout, shown.stdout
    acked_during = daemon.status()["commits"]  # type: ignore[index]
    assert proc.poll() is None, "training must go on while the disk is full"

    ballast.unlink()
    wait_for(lambda: writes()["state"] == "ok", timeout=30, what="writes to resume once space is back")
    assert daemon.status()["commits"] > acked_during  # type: ignore[index]
    stop.touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    assert "trackiod cannot write to" in err, err  # the daemon's notice, as the shim's warning
    assert "cannot write to the spool" in err, err  # the shim's spool is on the full disk too
    print(err)
    assert_complete("full", report["steps"], timeout=60)
    assert daemon.terminate() == 0
    log = (tmp_path / "daemon-stdout.log").read_text()
    assert "cannot write to" in log and "disk full" in log
    assert "writes to" in log and "resumed after" in log
    assert integrity_ok(home / "trackiod.db")


# ---------------------------------------------------------------------------------------------- damaged database
def build_database(db: Path, keys: int = 20, steps: int = 10_000) -> None:
    """A small but real database: one run, ``keys`` series of ``steps`` points (sealed chunks), checkpointed."""
    store = Store(db)
    store.conn.execute("BEGIN")
    run = store.create_run("old", "oldrun01", "old", {}, {}, "host", 1)
    step_arr = np.arange(steps, dtype=np.int64)
    for k in range(keys):
        store.write_series(run["id"], store.key_id(f"k{k}"), step_arr, step_arr * 0.1, step_arr * 1.0 + k)
    store.conn.execute("COMMIT")
    store.close()


def damage(db: Path, how: str) -> None:
    data = bytearray(db.read_bytes())
    rng = np.random.default_rng(7)
    if how == "not-sqlite":
        db.write_bytes(rng.bytes(len(data)))
    elif how == "header":
        data[:100] = rng.bytes(100)
        db.write_bytes(bytes(data))
    elif how == "truncated":
        db.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "page":
        conn = apsw.Connection(str(db))
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='chunks_by_series'").fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        start = (root - 1) * page_size
        data[start : start + page_size] = rng.bytes(page_size)
        db.write_bytes(bytes(data))
    else:
        raise AssertionError(how)


HOW = ["not-sqlite", "header", "truncated", "page"]


@pytest.mark.parametrize("how", HOW)
def test_find_problem_sees_each_kind_of_damage(tmp_path: Path, how: str) -> None:
    db = tmp_path / "trackiod.db"
    build_database(db)
    assert find_problem(db) is None and find_problem(db, "full") is None
    damage(db, how)
    assert find_problem(db, "quick") is not None
    assert find_problem(db, "full") is not None
    if how == "page":  # "off" reads only the schema: a damaged index page is found by quick_check, not by it
        assert find_problem(db, "off") is None


def test_ensure_usable_moves_database_wal_shm_and_media_aside(tmp_path: Path) -> None:
    db, media = tmp_path / "trackiod.db", tmp_path / "media"
    build_database(db)
    damage(db, "page")
    Path(f"{db}-wal").write_bytes(b"w")
    Path(f"{db}-shm").write_bytes(b"s")
    (media / "1").mkdir(parents=True)
    (media / "1" / "img.png").write_bytes(b"png")
    damaged = db.read_bytes()
    recovery = ensure_usable(db, media)
    assert recovery is not None
    assert not db.exists() and not media.exists()
    assert recovery.moved_to.name.startswith("trackiod.db.corrupt-")
    assert recovery.moved_to.read_bytes() == damaged
    assert Path(f"{recovery.moved_to}-wal").read_bytes() == b"w"
    assert Path(f"{recovery.moved_to}-shm").exists()  # the WAL index: SQLite rebuilds it, its bytes do not matter
    suffix = recovery.moved_to.name[len("trackiod.db") :]
    assert (tmp_path / f"media{suffix}" / "1" / "img.png").read_bytes() == b"png"
    assert str(db) in recovery.message() and str(recovery.moved_to) in recovery.message()


@pytest.mark.parametrize("how", HOW)
def test_damaged_database_at_start_is_moved_aside_and_a_fresh_one_works(
    env: dict[str, str], how: str, tmp_path: Path
) -> None:
    home = Path(env["TRACKIOD_HOME"])
    db = home / "trackiod.db"
    build_database(db)
    damage(db, how)
    damaged = db.read_bytes()
    started = cli(env, "start")
    try:
        assert started.returncode == 0, started.stderr
        assert "damaged" in started.stderr and str(db) in started.stderr, started.stderr
        status = json.loads(cli(env, "status", "--json").stdout)
        moved = Path(status["database_recovered"]["moved_to"])
        assert moved.parent == home and moved.name.startswith("trackiod.db.corrupt-")
        assert moved.read_bytes() == damaged, "the damaged file must be kept as it was"
        assert "recovered" in cli(env, "status").stdout
        proc = start_training(env, "fresh", steps=200)
        report_of(proc)
        assert_complete("fresh", 200)
    finally:
        assert cli(env, "stop").returncode == 0
    assert "damaged" in (home / "trackiod.log").read_text()
    assert integrity_ok(db)
    assert ensure_usable(db, home / "media") is None


# ---------------------------------------------------------------------------------------------- kill -9 in a checkpoint
CHECKPOINT_STEPS = 30_000


def kill_in_checkpoint(daemon: DaemonProcess, db: Path, reader: apsw.Connection) -> bool:
    """SIGTERM (whose shutdown checkpoint copies the WAL into the database), SIGKILL once the file grows.

    ``reader`` holds a snapshot from before the training, so the daemon's own checkpoints could copy none of its
    pages (as a dashboard reading through a long query holds them); it lets go just before the SIGTERM.
    Returns True when the kill landed inside the checkpoint: the database file had started to grow and the
    WAL was not yet truncated (the checkpoint's last act).
    """
    wal = Path(f"{db}-wal")
    before = db.stat().st_size
    assert wal.stat().st_size > 4 << 20, "the WAL holds too little for a checkpoint to take a while"
    reader.close()
    daemon.signal(15)
    wait_for(lambda: db.stat().st_size > before or not daemon.alive, timeout=30, interval=0.0002, what="a checkpoint")
    daemon.kill9()
    return db.stat().st_size > before and wal.exists() and wal.stat().st_size > 0


@pytest.mark.slow
def test_kill9_during_wal_checkpoint_leaves_a_sound_database(
    stopped_daemon: DaemonProcess, env: dict[str, str]
) -> None:
    """Three times: a big WAL (a reader's snapshot holds the daemon's checkpoints off), then kill -9 inside the
    shutdown checkpoint."""
    db = stopped_daemon.home / "trackiod.db"
    landed = 0
    for attempt in range(3):
        stopped_daemon.start(
            TRACKIOD_MAINTENANCE_INTERVAL_S="600", TRACKIOD_CHECKPOINT_PAGES="16384", TRACKIOD_SAMPLE_INTERVAL_S="0"
        )
        assert stopped_daemon.status()["database_recovered"] is None  # type: ignore[index]
        reader = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM runs").fetchall()  # the read snapshot starts here
        report_of(start_training(env, f"ckpt{attempt}", steps=CHECKPOINT_STEPS))
        landed += kill_in_checkpoint(stopped_daemon, db, reader)
        assert integrity_ok(db), f"attempt {attempt}: integrity_check failed after kill -9 in a checkpoint"
    assert landed >= 2, f"only {landed} of 3 kills landed inside a checkpoint; the test proves too little"
    stopped_daemon.start()
    try:
        assert stopped_daemon.status()["database_recovered"] is None  # type: ignore[index]
        for attempt in range(3):
            assert_complete(f"ckpt{attempt}", CHECKPOINT_STEPS)
    finally:
        assert stopped_daemon.terminate() == 0
    assert integrity_ok(db)
