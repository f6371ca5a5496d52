"""``trackiod show``: serve the dashboard in the foreground, print its URL, open a browser where there is one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trackio_shim.settings import TrackiodSettings


def cmd_show(args: argparse.Namespace, settings: TrackiodSettings) -> int:
    # Imported here: the web stack (Starlette, uvicorn) and zmq load only for the commands that use them, so
    # that `trackiod runs` and the other reads start fast (benchmarks/test_history.py).
    from trackiod.daemon.control import dashboard_control
    from trackiod.dashboard.server import serve

    # Edits made on the page are written by the daemon (the single writer), asked over its socket.
    return serve(settings, args.project, control=dashboard_control(settings))


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The dashboard's address and token flags, shared by ``show`` and ``start --dashboard``."""
    parser.add_argument("--host", help="address to bind (TRACKIOD_DASHBOARD_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (TRACKIOD_DASHBOARD_PORT, default 7860)")
    parser.add_argument(
        "--token-file",
        dest="token",
        type=read_token,
        metavar="FILE",
        help="require the token in FILE, or on stdin for '-' (else TRACKIOD_DASHBOARD_TOKEN; generated off loopback)",
    )
    parser.add_argument("--token", dest="token", type=_inline_token, metavar="T", help=argparse.SUPPRESS)


def read_token(source: str) -> str:
    """The token in a file (or stdin for ``-``): a command line is visible to every user in ``ps``, a file is not.

    Raises:
        argparse.ArgumentTypeError: the file cannot be read or is empty.
    """
    try:
        text = sys.stdin.readline() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read the token from {source}: {exc.strerror}") from None
    token = text.strip()
    if not token:
        raise argparse.ArgumentTypeError(f"no token in {'stdin' if source == '-' else source}")
    return token


def _inline_token(value: str) -> str:
    raise argparse.ArgumentTypeError(
        "a token on the command line is visible to every user in `ps`; put it in TRACKIOD_DASHBOARD_TOKEN, "
        "or pass --token-file FILE (a file only you can read) or --token-file - (read from stdin)"
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``show`` to the ``trackiod`` parser's subcommands."""
    show = sub.add_parser("show", parents=[common], help="serve the dashboard (loopback unless --host)")
    show.add_argument("--project", help="open this project")
    add_server_flags(show)
    show.add_argument("--no-browser", action="store_true", help="print the URL only (TRACKIOD_DASHBOARD_OPEN_BROWSER)")
    show.set_defaults(func=cmd_show)
