"""Who may read the dashboard: loopback and token rules, path traversal on static and media routes, and the real
servers (``trackiod show``, ``trackiod start --dashboard``, a DashboardServer bound beyond loopback).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.support.daemons import DaemonProcess, wait_for
from tests.support.dashboard import client, fill, settings_for


@pytest.fixture
def home(tmp_path: Path) -> Path:
    fill(tmp_path / "home", runs=1, points=10)
    return tmp_path / "home"


# ---------------------------------------------------------------------- loopback without a token
@pytest.mark.parametrize("host", ["127.0.0.1:7860", "localhost:7860", "[::1]:7860", "127.0.0.1"])
def test_loopback_hosts_are_served(home: Path, host: str) -> None:
    c = client(settings_for(home))
    assert c.get("/api/projects", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:7860", "192.168.1.5:7860", "127.0.0.1.evil.example", ""])
def test_other_host_names_are_refused_without_a_token(home: Path, host: str) -> None:
    """A page on another site that rebinds its name to 127.0.0.1 still sends its own name as Host."""
    c = client(settings_for(home))
    resp = c.get("/api/projects", headers={"host": host})
    assert resp.status_code == 403 and "loopback only" in resp.text
    assert c.get("/static/app.js", headers={"host": host}).status_code == 403


# ---------------------------------------------------------------------- with a token
def test_token_required_on_every_route(home: Path) -> None:
    c = client(settings_for(home), token="s3cret")
    for path in ("/", "/api/projects", "/api/runs?project=proj", "/static/app.js", "/media/x.png"):
        resp = c.get(path)
        assert resp.status_code == 401, path
        assert "token" in resp.text
    assert c.get("/api/projects", params={"token": "wrong"}).status_code == 401
    assert c.get("/api/projects", headers={"Authorization": "Bearer s3cre"}).status_code == 401


def test_token_accepted_by_query_header_bearer_and_cookie(home: Path) -> None:
    c = client(settings_for(home), token="s3cret")
    assert c.get("/api/projects", params={"token": "s3cret"}).status_code == 200
    assert c.get("/api/projects", headers={"X-Trackiod-Token": "s3cret"}).status_code == 200
    assert c.get("/api/projects", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = c.get("/", params={"token": "s3cret", "project": "proj"})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "trackiod_token_7860=s3cret" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # The page's scripts load with the cookie alone (the TestClient keeps it, as a browser does).
    assert c.get("/static/app.js").status_code == 200


def test_token_lifts_the_host_check(home: Path) -> None:
    """Off loopback the token is the guard, so any Host name (a LAN address, a proxy's name) is fine with it."""
    c = client(settings_for(home), token="s3cret", base_url="http://gpu-box.lan:7860")
    assert c.get("/api/projects", params={"token": "s3cret"}).status_code == 200


# ---------------------------------------------------------------------- path traversal
TRAVERSALS = [
    "../app.py",
    "..%2fapp.py",
    "%2e%2e/app.py",
    "%2e%2e%2fapp.py",
    "vendor/../../api.py",
    "vendor/%2e%2e/%2e%2e/api.py",
    "..\\app.py",
    "%2e%2e%5capp.py",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "%2e/index.html",
    "vendor//uplot/LICENSE",
    "index.html%00.js",
    "",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_refuses_traversal(home: Path, path: str) -> None:
    c = client(settings_for(home))
    resp = c.get(f"/static/{path}")
    assert resp.status_code == 404, (path, resp.status_code)
    assert "import " not in resp.text


MEDIA_ESCAPES = [
    "../trackiod.db",
    "%2e%2e/trackiod.db",
    "%2E%2E%2Ftrackiod.db",
    "%252e%252e/trackiod.db",
    "proj/../../trackiod.db",
    "proj/run0/%2e%2e/%2e%2e/%2e%2e/trackiod.db",
    "..%5ctrackiod.db",
    "%2ftmp",
    "link/secret",
    "proj/run0/evil.png",
]


@pytest.mark.parametrize("path", MEDIA_ESCAPES)
def test_media_refuses_traversal_and_links_out(home: Path, tmp_path: Path, path: str) -> None:
    """Raw, percent-encoded and double-encoded ``..``, a linked folder and a linked file all stay inside."""
    media = home / "media" / "proj" / "run0"
    media.mkdir(parents=True)
    (media / "img.png").write_bytes(b"\x89PNG fake")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    os.symlink(outside, home / "media" / "link")
    os.symlink(outside / "secret", media / "evil.png")
    c = client(settings_for(home))
    assert c.get("/media/proj/run0/img.png").content == b"\x89PNG fake", "a file inside the media root is served"
    resp = c.get(f"/media/{path}")
    assert resp.status_code == 404 and b"secret" not in resp.content and b"SQLite" not in resp.content


def test_static_files_are_served(home: Path) -> None:
    c = client(settings_for(home))
    assert "uPlot" in c.get("/static/vendor/uplot/uPlot.esm.js").text
    assert c.get("/static/vendor/uplot/LICENSE").text.startswith("The MIT License")
    assert c.get("/static/nope.js").status_code == 404


# ---------------------------------------------------------------------- real servers
def test_dashboard_binds_loopback_without_a_token_by_default(home: Path) -> None:
    """The promise's first half: with no settings given, only this machine can reach the dashboard."""
    from trackiod.dashboard.app import DashboardServer

    server = DashboardServer(settings_for(home), port=0)
    try:
        assert server.sock.getsockname()[0] == "127.0.0.1" and server.token == ""
    finally:
        server.sock.close()


def test_non_loopback_bind_generates_and_requires_a_token(home: Path) -> None:
    from trackiod.dashboard.app import DashboardServer

    server = DashboardServer(settings_for(home), host="0.0.0.0", port=0)
    server.start()
    try:
        assert server.token and len(server.token) >= 24
        assert f"token={server.token}" in server.url()
        base = f"http://127.0.0.1:{server.port}"
        wait_for(lambda: _reachable(base), timeout=10, what="the dashboard thread to serve")
        assert httpx.get(f"{base}/api/projects").status_code == 401
        assert httpx.get(f"{base}/api/projects", params={"token": server.token}).json()["projects"][0]["name"] == "proj"
    finally:
        assert server.stop(timeout=5), "the server thread stops within its bound"


def test_explicit_token_applies_on_loopback_too(home: Path) -> None:
    from trackiod.dashboard.app import DashboardServer

    server = DashboardServer(settings_for(home, dashboard_token="abc"), port=0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        wait_for(lambda: _reachable(base), timeout=10, what="the dashboard thread to serve")
        assert httpx.get(f"{base}/api/info").status_code == 401
        assert httpx.get(f"{base}/api/info", headers={"Authorization": "Bearer abc"}).status_code == 200
    finally:
        server.stop()


def _reachable(base: str) -> bool:
    try:
        httpx.get(f"{base}/api/info", timeout=1)
        return True
    except httpx.TransportError:
        return False


def _read_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://\S+", line)
    assert match, f"no URL in {line!r}"
    return match.group(0)


def test_trackiod_show_serves_and_stops_on_sigint(env: dict[str, str], home: Path) -> None:
    env = {**env, "TRACKIOD_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trackiod", "show", "--project", "proj", "--port", "0", "--no-browser"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _read_url(proc)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/?project=proj") and "token" not in url
        base = url.split("/?")[0]
        wait_for(lambda: _reachable(base), timeout=10, what="trackiod show to serve")
        assert httpx.get(f"{base}/api/projects").json()["projects"][0]["name"] == "proj"
        proc.send_signal(2)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_shim_show_prints_a_token_url_off_loopback(env: dict[str, str], home: Path) -> None:
    env = {**env, "TRACKIOD_HOME": str(home), "TRACKIOD_DASHBOARD_OPEN_BROWSER": "0"}
    code = "import trackio_shim; trackio_shim.show(project='proj', host='0.0.0.0', port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = _read_url(proc)
        token = re.search(r"token=([\w-]+)", url)
        assert token, url
        port = re.search(r":(\d+)/", url)
        assert port
        base = f"http://127.0.0.1:{port.group(1)}"
        wait_for(lambda: _reachable(base), timeout=10, what="show() to serve")
        assert httpx.get(f"{base}/api/projects").status_code == 401
        assert httpx.get(f"{base}/api/projects", params={"token": token.group(1)}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_daemon_serves_the_dashboard_and_stops_it_on_shutdown(stopped_daemon: DaemonProcess, shim: Any) -> None:
    daemon = stopped_daemon.start(TRACKIOD_DASHBOARD="1", TRACKIOD_DASHBOARD_PORT="0")
    status = daemon.status()
    assert status is not None and status["dashboard"], status
    base = status["dashboard"].rstrip("/")
    run = shim.init(project="served")
    assert run.url == f"{base}/?project=served&view=run&run={run.id}", "run.url points at the served dashboard"
    shim.log({"loss": 1.0})
    shim.finish()
    runs = httpx.get(f"{base}/api/runs", params={"project": "served"}).json()
    assert runs["rows"][0][0] == run.id
    assert daemon.terminate(timeout=20) == 0, "SIGTERM drains and exits with the dashboard thread stopped"
    assert not _reachable(base)
    log = daemon.settings().log_path.read_text()
    assert "dashboard at http://127.0.0.1:" in log and "did not stop in time" not in log


def test_cli_start_dashboard_prints_its_url(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "TRACKIOD_HOME": str(tmp_path / "cli-home")}
    started = subprocess.run(
        [sys.executable, "-m", "trackiod", "start", "--dashboard", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert started.returncode == 0, started.stderr
        match = re.search(r"dashboard: (http://\S+)", started.stdout)
        assert match, started.stdout
        assert httpx.get(f"{match.group(1).rstrip('/')}/api/info").status_code == 200
        status = subprocess.run(
            [sys.executable, "-m", "trackiod", "status"], env=env, capture_output=True, text=True, timeout=30
        )
        assert match.group(1) in status.stdout
    finally:
        stopped = subprocess.run(
            [sys.executable, "-m", "trackiod", "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stopped.returncode == 0, stopped.stderr
