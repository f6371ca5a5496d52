"""Promise: the data directory and the ipc socket are private to their user (docs/security.md).

Real daemons (``python -m trackiod start --foreground``) and real training scripts in subprocesses; directory
modes set with chmod, owners with chown (those cases need root and skip without it).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import Daemons, wait_for
from tests.support.scripts import run_script
from trackio_shim.settings import TrackiodSettings
from trackiod.daemon import control

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root (chown)")


def _start(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (socket paths are limited to ~100 bytes; pytest's tmp_path is long)."""
    path = Path(tempfile.mkdtemp(prefix="acc", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------- the data directory
@pytest.mark.parametrize("mode", [0o755, 0o750, 0o770, 0o707, 0o701])
def test_daemon_refuses_a_data_directory_open_to_others(env: dict[str, str], mode: int) -> None:
    home = Path(env["TRACKIOD_HOME"])
    home.mkdir()
    os.chmod(home, mode)
    result = _start(env)
    assert result.returncode == 2, result.stderr
    assert str(home) in result.stderr and f"chmod 700 {home}" in result.stderr
    assert f"mode {mode:04o}" in result.stderr
    assert not (home / "trackiod.db").exists(), "nothing is written into a directory that was refused"
    assert _mode(home) == mode, "the user's directory is never changed behind their back"


@needs_root
def test_daemon_refuses_a_data_directory_of_another_user(env: dict[str, str]) -> None:
    home = Path(env["TRACKIOD_HOME"])
    home.mkdir(mode=0o700)
    os.chown(home, NOBODY, NOBODY)
    result = _start(env)
    assert result.returncode == 2
    assert f"belongs to uid {NOBODY}" in result.stderr and "TRACKIOD_HOME" in result.stderr


def test_shim_autostart_reports_a_data_directory_open_to_others(env: dict[str, str]) -> None:
    """The training script learns why at init(), not from a daemon log it never reads."""
    home = Path(env["TRACKIOD_HOME"])
    home.mkdir()
    os.chmod(home, 0o755)
    script = """
        import trackio_shim as wandb
        try:
            wandb.init(project="p")
        except wandb.errors.AccessError as exc:
            print("REFUSED", exc)
    """
    result = run_script(script, {**env, "TRACKIOD_AUTOSTART": "1"}, timeout=60)
    assert "REFUSED" in result.stdout and f"chmod 700 {home}" in result.stdout


def test_directories_trackiod_creates_are_private(env: dict[str, str], short_dir: Path) -> None:
    """A fresh data directory, made by `trackiod keys` before any daemon ran, or by the daemon, is 0700."""
    keys_first = {**env, "TRACKIOD_HOME": str(short_dir / "keys-first" / "home")}
    subprocess.run([sys.executable, "-m", "trackiod", "keys"], env=keys_first, check=True, capture_output=True)
    assert _mode(short_dir / "keys-first" / "home") == 0o700
    settings = TrackiodSettings.load(environ={**env, "XDG_RUNTIME_DIR": str(short_dir)})
    settings.ensure_dirs()
    for directory in (settings.home, settings.spool_dir, settings.runtime_dir, settings.runtime_dir.parent):
        assert _mode(directory) == 0o700, directory


# ---------------------------------------------------------------------- the socket
def test_socket_is_0600_even_under_umask_000(env: dict[str, str], tmp_path: Path) -> None:
    """ZeroMQ makes the socket file with the umask; the daemon binds under 077, so no window is ever wider."""
    log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(0),
    )
    try:
        settings = TrackiodSettings.load(environ=env)
        wait_for(lambda: control.request(settings, "status", timeout=0.3), timeout=20, what="the daemon to answer")
        assert _mode(settings.socket_path) == 0o600
        assert _mode(settings.runtime_dir) == 0o700 and _mode(settings.home) == 0o700
        result = run_script(
            'import trackio_shim as w\nr = w.init(project="p")\nr.log({"x": 1.0})\nr.finish()\nprint("ok")', env
        )
        assert "ok" in result.stdout, "the owner just works"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


SHIM_SCRIPT = """
    import trackio_shim as wandb
    try:
        wandb.init(project="p")
    except wandb.errors.AccessError as exc:
        print("REFUSED", exc)
    else:
        print("CONNECTED")
"""


def _open_socket_dir(runtime: Path) -> str:
    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o777)
    return "writable by other users"


def _foreign_socket_dir(runtime: Path) -> str:
    runtime.mkdir(mode=0o700)
    os.chown(runtime, NOBODY, NOBODY)
    return f"belongs to uid {NOBODY}"


@pytest.mark.parametrize(
    "make", [_open_socket_dir, pytest.param(_foreign_socket_dir, marks=needs_root)], ids=["open", "foreign"]
)
def test_daemon_and_shim_refuse_a_socket_directory_others_control(
    env: dict[str, str], short_dir: Path, make: object
) -> None:
    """Whoever can write there could swap trackiod's socket for theirs and receive the training data."""
    runtime = short_dir / "run"
    expected = make(runtime)  # type: ignore[operator]
    before = runtime.stat()
    chosen = {**env, "TRACKIOD_RUNTIME_DIR": str(runtime)}
    result = _start(chosen)
    assert result.returncode == 2 and str(runtime) in result.stderr and expected in result.stderr
    shim = run_script(SHIM_SCRIPT, chosen, timeout=60)
    assert "REFUSED" in shim.stdout and expected in shim.stdout and "CONNECTED" not in shim.stdout
    after = runtime.stat()
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid), "a directory the user chose is theirs"
    assert not (runtime / "trackiod.sock").exists()


@needs_root
def test_a_trackiod_uid_directory_planted_by_another_user_is_refused(env: dict[str, str], short_dir: Path) -> None:
    """In /tmp anyone may create trackiod-UID before you do; trackiod then refuses rather than use it."""
    planted = short_dir / f"trackiod-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, NOBODY, NOBODY)
    default = {**env, "XDG_RUNTIME_DIR": str(short_dir)}
    result = _start(default)
    assert result.returncode == 2 and f"{planted} belongs to uid {NOBODY}" in result.stderr
    shim = run_script(SHIM_SCRIPT, default, timeout=60)
    assert "REFUSED" in shim.stdout and "CONNECTED" not in shim.stdout


def test_default_socket_directories_are_tightened_not_refused(
    env: dict[str, str], short_dir: Path, daemons: Daemons
) -> None:
    """trackiod's own trackiod-UID/<digest> folders are nobody else's business: found wider, they are fixed."""
    default = {**env, "XDG_RUNTIME_DIR": str(short_dir)}
    settings = TrackiodSettings.load(environ=default)
    settings.runtime_dir.mkdir(parents=True)
    for directory in (settings.runtime_dir, settings.runtime_dir.parent):
        os.chmod(directory, 0o777)
    daemons(default, short_dir / "daemon.log").start()
    assert _mode(settings.runtime_dir) == 0o700 and _mode(settings.runtime_dir.parent) == 0o700
    assert _mode(settings.socket_path) == 0o600
