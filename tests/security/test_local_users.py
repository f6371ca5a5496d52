"""Other local users and planted symlinks (issue 18, findings 8, 9, 10; docs/security.md).

"Another user" is a real process running under another uid (OTHER, which needs no passwd entry): the tests run
it with ``subprocess.run(user=OTHER)`` on the system Python (the test virtual environment lives under /root,
which another user cannot enter), and it speaks plain HTTP with urllib. Files "planted by another user" are
real files and links given to OTHER with ``os.lchown``. Both need root; the tests skip without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.daemons import DaemonProcess, Daemons, wait_for
from tests.support.dashboard import fill, settings_for
from tests.support.scripts import run_script

OTHER = 54321
SYSTEM_PYTHON = "/usr/bin/python3"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")
needs_python = pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system python for the other user")

FETCH = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as resp:
        print(resp.status, resp.read()[:200])
except urllib.error.HTTPError as exc:
    print(exc.code, exc.read()[:300])
"""


def _fetch_as(uid: int, url: str) -> tuple[int, str]:
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", FETCH, url],
        user=uid,
        group=uid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    code, _, body = result.stdout.partition(" ")
    return int(code), body


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (socket paths are limited to ~100 bytes; pytest's tmp_path is long)."""
    path = Path(tempfile.mkdtemp(prefix="lu", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------- the loopback dashboard
@needs_root
@needs_python
def test_another_user_cannot_read_the_loopback_dashboard(tmp_path: Path) -> None:
    """Finding 8: another user read the runs table (a secret in a config value) and fetched media: HTTP 200."""
    from trackiod.dashboard.app import DashboardServer

    home = tmp_path / "home"
    fill(home, runs=1, points=10)
    server = DashboardServer(settings_for(home), port=0)
    assert server.token == "", "loopback stays token-free for its owner"
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        wait_for(lambda: _owner_reads(base), timeout=10, what="the dashboard to serve its owner")
        for path in ("/api/projects", "/api/runs?project=proj", "/", "/media/anything.png"):
            code, body = _fetch_as(OTHER, base + path)
            assert code == 403, (path, code, body)
            assert "serves only its owner" in body
        assert httpx.get(f"{base}/api/projects").status_code == 200
    finally:
        assert server.stop(timeout=5)


def _owner_reads(base: str) -> bool:
    try:
        return httpx.get(f"{base}/api/projects", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------- planted symlinks
@needs_root
def test_a_planted_runtime_symlink_is_refused_and_its_target_untouched(env: dict[str, str], short_dir: Path) -> None:
    """Finding 9: make_own_dir followed a planted ``trackiod-UID`` link and chmodded a root-owned 0755 directory."""
    target = short_dir / "system-dir"
    target.mkdir()
    os.chmod(target, 0o755)
    link = short_dir / f"trackiod-{os.getuid()}"
    link.symlink_to(target)
    os.lchown(link, OTHER, OTHER)
    result = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env={**env, "XDG_RUNTIME_DIR": str(short_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "symbolic link" in result.stderr and str(link) in result.stderr, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755, "the link's target was changed"
    assert list(target.iterdir()) == []
    # Even a link this user made is not followed for a folder trackiod names itself.
    os.lchown(link, os.getuid(), os.getgid())
    again = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"],
        env={**env, "XDG_RUNTIME_DIR": str(short_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode != 0 and "symbolic link" in again.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_a_spool_directory_that_is_a_link_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    home = Path(env["TRACKIOD_HOME"])
    home.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "spool").symlink_to(elsewhere)
    result = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--foreground"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "spool directory" in result.stderr and "symbolic link" in result.stderr, result.stderr


def test_a_spool_file_that_is_a_link_is_set_aside_not_followed(
    stopped_daemon: DaemonProcess, env: dict[str, str], tmp_path: Path
) -> None:
    from trackio_shim import protocol as P

    spool = stopped_daemon.settings().spool_dir
    spool.parent.mkdir(mode=0o700)
    spool.mkdir(mode=0o700)
    secret = tmp_path / "not-a-spool"
    secret.write_bytes(b"\x93\x01\x02\x03")
    link = spool / P.spool_name(os.urandom(16), 1)
    link.symlink_to(secret)
    daemon = stopped_daemon.start()
    status = wait_for(lambda: (daemon.status() or {}).get("spool_files_set_aside"), timeout=20, what="set aside")
    assert status == 1
    assert not link.exists() and (spool / (link.name + ".bad")).is_symlink()
    assert secret.read_bytes() == b"\x93\x01\x02\x03"


# ---------------------------------------------------------------------------- tokens
def test_init_does_not_print_the_dashboard_token(daemons: Daemons, env: dict[str, str], tmp_path: Path) -> None:
    """Finding 10: every trainer printed the ``?token=`` URL on stderr, which ends up in shared job logs."""
    token = "tok-" + os.urandom(12).hex()
    daemon = daemons(env, tmp_path / "daemon.log").start(
        TRACKIOD_DASHBOARD="1", TRACKIOD_DASHBOARD_PORT="0", TRACKIOD_DASHBOARD_TOKEN=token
    )
    assert token in (daemon.status() or {}).get("dashboard", "")
    result = run_script(
        """
        import trackio_shim as wandb
        run = wandb.init(project="tok", id="t1")
        wandb.log({"x": 1.0})
        print(run.url)
        wandb.finish()
        """,
        env,
    )
    assert "view it at http://" in result.stderr
    assert token not in result.stderr, result.stderr
    assert token in result.stdout, "run.url, asked for explicitly, still carries it"


def test_show_takes_its_token_from_a_file_or_stdin_never_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    """Finding 10: ``trackiod show --token T`` showed T to every user in ``ps``."""
    home = Path(env["TRACKIOD_HOME"])
    fill(home, runs=1, points=5)
    refused = subprocess.run(
        [sys.executable, "-m", "trackiod", "show", "--token", "T0PSECRET", "--no-browser", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "visible to every user in `ps`" in refused.stderr
    token = "tok-" + os.urandom(12).hex()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackiod", "show", "--token-file", "-", "--no-browser", "--port", "0"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(token + "\n")
        proc.stdin.close()
        line = proc.stdout.readline()
        assert f"token={token}" in line, line
        assert token not in Path(f"/proc/{proc.pid}/cmdline").read_text()
        url = line.split("trackiod dashboard: ", 1)[1].strip()
        base = url.split("?", 1)[0].rstrip("/")
        assert httpx.get(f"{base}/api/projects").status_code == 401
        assert httpx.get(f"{base}/api/projects", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------- init(dir=...)
@needs_root
def test_init_dir_of_another_user_warns_and_a_planted_folder_is_refused(
    daemon: DaemonProcess, env: dict[str, str], short_dir: Path
) -> None:
    """Finding 10: ``init(dir=<a shared tmp dir>)`` wrote into a directory another user created and can read."""
    shared = short_dir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    os.chown(shared, OTHER, OTHER)
    script = f"""
        import os, stat, warnings
        warnings.simplefilter("always")
        import trackio_shim as wandb
        from trackio_shim.errors import AccessError
        run = wandb.init(project="dirs", id="d1", dir={str(shared)!r})
        folder = os.path.join({str(shared)!r}, "trackiod")
        print("dir", run.dir)
        print("mode", oct(stat.S_IMODE(os.lstat(folder).st_mode)), os.lstat(folder).st_uid)
        wandb.finish()
        """
    result = run_script(script, env)
    assert f"belongs to uid {OTHER}" in result.stderr, result.stderr
    assert f"mode 0o700 {os.getuid()}" in result.stdout
    # Now the other user plants <dir>/trackiod as a link to a folder of theirs: run.dir refuses it.
    shutil.rmtree(shared / "trackiod")
    theirs = short_dir / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER, OTHER)
    (shared / "trackiod").symlink_to(theirs)
    os.lchown(shared / "trackiod", OTHER, OTHER)
    planted = run_script(
        f"""
        import trackio_shim as wandb
        from trackio_shim.errors import AccessError
        try:
            wandb.init(project="dirs", id="d2", dir={str(shared)!r})
        except AccessError as exc:
            print("refused:", exc)
        """,
        env,
    )
    assert "refused:" in planted.stdout and "symbolic link" in planted.stdout, planted.stdout
    assert list(theirs.iterdir()) == []


PROBE = """
import socket, sys
results = []
for path in sys.argv[2:]:
    try:
        open(path, "rb").close()
        results.append("read")
    except OSError as exc:
        results.append(type(exc).__name__)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    results.insert(0, "connected")
except OSError as exc:
    results.insert(0, type(exc).__name__)
print(" ".join(results))
"""


@needs_root
@needs_python
def test_another_user_cannot_reach_the_socket_database_or_media(daemon: DaemonProcess, env: dict[str, str]) -> None:
    """What held in issue 18, kept as a test: the socket, the database and media refuse another uid."""
    run_script(
        """
        import numpy as np, trackio_shim as wandb
        wandb.init(project="mine", id="m1")
        wandb.log({"img": wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8)), "x": 1.0})
        wandb.finish()
        """,
        env,
    )
    settings = daemon.settings()
    media = sorted(p for p in (settings.home / "media").rglob("*") if p.is_file())
    assert media, "the run stored no media file"
    sock_path = settings.endpoint[len("ipc://") :]
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", PROBE, sock_path, str(settings.db_path), str(media[0])],
        user=OTHER,
        group=OTHER,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.split() == ["PermissionError"] * 3, (result.stdout, result.stderr)
