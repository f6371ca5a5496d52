"""``trackiod show``: serve the dashboard in the foreground, print its URL, open a browser where there is one."""

from __future__ import annotations

import argparse
from typing import Any

from trackio_shim.settings import TrackiodSettings
from trackiod.daemon.control import request
from trackiod.dashboard.server import serve


def cmd_show(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    # Edits made on the page are written by the daemon (the single writer), asked over its socket.
    return serve(settings, args.project, control=lambda what, body: request(settings, what, body, 5.0))


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The dashboard's address and token flags, shared by ``show`` and ``start --dashboard``."""
    parser.add_argument("--host", help="address to bind (TRACKIOD_DASHBOARD_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (TRACKIOD_DASHBOARD_PORT, default 7860)")
    parser.add_argument("--token", help="require this token (TRACKIOD_DASHBOARD_TOKEN; generated off loopback)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``show`` to the ``trackiod`` parser's subcommands."""
    show = sub.add_parser("show", parents=[common], help="serve the dashboard (loopback unless --host)")
    show.add_argument("--project", help="open this project")
    add_server_flags(show)
    show.add_argument("--no-browser", action="store_true", help="print the URL only (TRACKIOD_DASHBOARD_OPEN_BROWSER)")
    show.set_defaults(func=cmd_show)
