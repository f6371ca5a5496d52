"""The dashboard's web server: a Starlette app (API, static files, media) behind an access guard, run by uvicorn.

Access rules (docs/dashboard.md, "Access"):
- bound to a loopback address without a token, requests must name a loopback host (``Host: 127.0.0.1:PORT``,
  ``localhost``, ``[::1]``), which stops DNS-rebinding pages from reading the dashboard, and must come from a
  socket of the dashboard's own user (trackiod.dashboard.peer), which stops other local users; where the
  owner of a connection cannot be told (not Linux), a token is generated on loopback too;
- bound to any other address, a token is required (one is generated when ``TRACKIOD_DASHBOARD_TOKEN`` is unset)
  and every request must carry it: ``?token=``, an ``Authorization: Bearer`` or ``X-Trackiod-Token`` header, or
  the cookie the page sets when it is opened with ``?token=``. A token that is set explicitly is required on
  loopback too.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from trackio_shim.errors import TrackiodError
from trackio_shim.settings import TrackiodSettings
from trackiod.dashboard import peer
from trackiod.dashboard.api import Api
from trackiod.dashboard.statics import StaticFiles
from trackiod.dashboard.writes import Control, RunWrites
from trackiod.read.connection import Readers

log = logging.getLogger("trackiod.dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def safe_file(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it is a regular file inside ``root`` (after resolving links), else None.

    Refuses absolute paths, ``..`` segments, backslashes and NUL bytes before touching the file system, then
    checks the resolved path again, so neither ``../`` (raw or percent-encoded) nor a symlink leads outside.
    """
    if not relative or "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    try:
        base = root.resolve()
        target = (base / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def _not_the_owner(scope: Scope) -> str | None:
    """Why a token-less loopback request is refused: its socket is not this user's (None: it is)."""
    client, server = scope.get("client"), scope.get("server")
    if not client or not server or not _is_ip(str(client[0])):
        return None  # no TCP peer: the app called in process (tests), which no other user can reach
    uid = peer.peer_uid((str(client[0]), int(client[1])), (str(server[0]), int(server[1])))
    if uid is not None and uid in (os.geteuid(), 0):  # root can read the data directory anyway
        return None
    who = "could not be identified" if uid is None else f"belongs to uid {uid}"
    return (
        f"refused: this dashboard serves only its owner (uid {os.geteuid()}) on loopback, and this connection "
        f"{who}; run your own `trackiod show`, or have the owner start it with a token (docs/security.md)"
    )


class AccessGuard:
    """ASGI middleware enforcing the token and loopback rules on every HTTP request."""

    def __init__(self, app: ASGIApp, token: str, cookie_name: str) -> None:
        self.app = app
        self.token = token
        self.cookie_name = cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if not self.token:
            host = request.headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                response: Response = PlainTextResponse(
                    f"refused: this dashboard serves loopback only and the request named host {host!r}; "
                    "open it as http://127.0.0.1:PORT/ or start it with a token (see docs/dashboard.md)",
                    status_code=403,
                )
                await response(scope, receive, send)
                return
            refusal = _not_the_owner(scope)
            if refusal:
                await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        given = self._presented(request)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            response = PlainTextResponse(
                "refused: this dashboard needs its token; open the URL that `trackiod show` printed "
                "(it ends in ?token=...), or send it as an 'Authorization: Bearer' header",
                status_code=401,
            )
            await response(scope, receive, send)
            return
        if request.query_params.get("token") and scope["path"] == "/":
            # Scripts and styles the page loads cannot carry the token in their URLs; a cookie does.
            cookie = f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Lax"

            async def send_with_cookie(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        await self.app(scope, receive, send)

    def _presented(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return (
            request.query_params.get("token")
            or request.headers.get("x-trackiod-token")
            or request.cookies.get(self.cookie_name)
        )


def create_app(
    settings: TrackiodSettings,
    token: str = "",
    cookie_name: str = "trackiod_token",
    control: Control | None = None,
    writable: bool = True,
) -> ASGIApp:
    """The dashboard as an ASGI app (the token, when set, is required on every request); edits go to the daemon
    through ``control`` when ``writable`` (trackiod.dashboard.writes)."""
    readers = Readers(settings.db_path)
    api = Api(settings, readers)
    media_root = settings.media_dir

    def endpoint(handler: Any) -> Any:
        def run(request: Request) -> Response:
            return api.handle(handler, request)

        return run

    statics = StaticFiles(STATIC_DIR)

    def index(request: Request) -> Response:
        return Response(statics.index(), media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    def static(request: Request) -> Response:
        path = safe_file(STATIC_DIR, request.path_params["path"])
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return statics.response(request, path)

    def media(request: Request) -> Response:
        path = safe_file(media_root, request.path_params["path"])
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        # Logged HTML is the training script's, not ours: even opened directly, it runs in a sandbox (an
        # opaque origin), so its scripts cannot read the dashboard's API with the user's token cookie.
        headers = {
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox allow-scripts",
        }
        return FileResponse(path, headers=headers)

    def sync_route(path: str, handler: Any) -> Route:
        return Route(path, handler, methods=["GET", "HEAD"])

    # trackio's page paths open the same page, which reads its view from the path (embed links made for trackio).
    pages = [sync_route(path, index) for path in ("/", "/metrics", "/runs", "/run", "/system")]
    routes = [*pages, sync_route("/static/{path:path}", static)]
    routes.append(sync_route("/media/{path:path}", media))
    routes.extend(sync_route(path, endpoint(handler)) for path, handler in api.routes())
    routes.extend(Route(path, handler, methods=["POST"]) for path, handler in RunWrites(control, writable).routes())
    app = Starlette(routes=routes)
    app.state.readers = readers
    return AccessGuard(app, token, cookie_name)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; with a nonzero port, the next free one of the following 20."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    last: OSError | None = None
    for candidate in [port] if port == 0 else range(port, port + 21):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), candidate))
        except OSError as exc:
            sock.close()
            last = exc
            continue
        # Accepted connections inherit this: without it, a response written as headers then body can wait
        # 40 ms for the client's delayed ACK (Nagle's algorithm).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    raise TrackiodError(f"cannot serve the dashboard on {host}:{port} (or the next 20 ports): {last}")


class DashboardServer:
    """The dashboard on one socket: run it in the foreground (``trackiod show``) or in a thread (the daemon)."""

    def __init__(
        self,
        settings: TrackiodSettings,
        host: str | None = None,
        port: int | None = None,
        control: Control | None = None,
    ) -> None:
        self.settings = settings
        self.host = host or settings.dashboard_host
        requested = settings.dashboard_port if port is None else port
        # Loopback needs no token where the owner of each connection can be checked (trackiod.dashboard.peer).
        tokenless = is_loopback(self.host) and peer.available()
        self.token = settings.dashboard_token or ("" if tokenless else secrets.token_urlsafe(24))
        self.sock = _bind(self.host, requested)
        self.port = int(self.sock.getsockname()[1])
        # Edits need loopback or a token the user chose (a generated one is printed in logs and URLs).
        writable = is_loopback(self.host) or bool(settings.dashboard_token)
        self.app = create_app(settings, self.token, f"trackiod_token_{self.port}", control, writable)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def url(self, project: str | None = None) -> str:
        """The address to open: the token and the project, when there are any, in the query string."""
        from urllib.parse import urlencode

        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        query = {k: v for k, v in (("project", project), ("token", self.token)) if v}
        return f"http://{host}:{self.port}/" + (f"?{urlencode(query)}" if query else "")

    def _uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", log_config=None)
        self._server = uvicorn.Server(config)
        return self._server

    def serve(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C) or :meth:`stop`."""
        try:
            self._uvicorn().run(sockets=[self.sock])
        finally:
            self.close()

    def start(self) -> None:
        """Serve from a daemon thread (uvicorn's own event loop); stop with :meth:`stop`."""
        server = self._uvicorn()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.sock]}, name="trackiod-dashboard", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the server to exit and wait up to ``timeout`` seconds; True if it stopped in time."""
        if self._server is not None:
            self._server.should_exit = True
        stopped = True
        if self._thread is not None:
            self._thread.join(timeout)
            stopped = not self._thread.is_alive()
            if not stopped:
                self._server.force_exit = True
                self._thread.join(1.0)
                stopped = not self._thread.is_alive()
        self.close()
        return stopped

    def close(self) -> None:
        readers = getattr(getattr(self.app, "app", None), "state", None)
        if readers is not None and hasattr(readers, "readers"):
            readers.readers.close()
        try:
            self.sock.close()
        except OSError:
            pass


def open_browser(url: str) -> bool:
    """Open ``url`` in the user's browser when there is a display to show it on; True if one was started."""
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("BROWSER")
    if not display and os.uname().sysname != "Darwin":
        return False
    import webbrowser

    try:
        return bool(webbrowser.open(url, new=2))
    except webbrowser.Error:
        return False
