"""``trackiod show``: serve the dashboard in the foreground, print its URL, open a browser where there is one."""

from __future__ import annotations

import argparse
from typing import Any

from trackio_shim.settings import TrackiodSettings
from trackiod.dashboard.server import serve


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``show`` on the ``trackiod`` parser (called from trackiod.cli)."""
    show = sub.add_parser("show", parents=[common], help="serve the dashboard (loopback unless --host)")
    show.add_argument("--project", help="open this project")
    add_server_flags(show)
    show.add_argument("--no-browser", action="store_true", help="print the URL only (TRACKIOD_DASHBOARD_OPEN_BROWSER)")
    show.set_defaults(func=cmd_show)


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (TRACKIOD_DASHBOARD_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (TRACKIOD_DASHBOARD_PORT, default 7860)")
    parser.add_argument("--token", help="require this token (TRACKIOD_DASHBOARD_TOKEN; generated off loopback)")


def server_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dashboard settings given as flags, for TrackiodSettings.load."""
    return {
        "dashboard_host": getattr(args, "host", None),
        "dashboard_port": getattr(args, "port", None),
        "dashboard_token": getattr(args, "token", None),
        "dashboard_open_browser": False if getattr(args, "no_browser", False) else None,
    }


def cmd_show(args: argparse.Namespace) -> int:
    settings = TrackiodSettings.load(home=args.home, log_level=args.log_level, **server_overrides(args))
    return serve(settings, args.project)
