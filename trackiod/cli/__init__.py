"""The ``trackiod`` command: start, stop, status, runs, show, energy, card, sync and the rest.

Each command-group module adds its commands with ``register(subparsers, common)``; every handler is
``handler(args, settings) -> int``, with the settings built once here from the flags (trackiod.cli.common).
Errors are one clear line; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trackio_shim.errors import TrackiodError
from trackiod import __version__
from trackiod.cli import attachments, daemon, data, energy, runs, show
from trackiod.cli.common import settings_for


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackiod", description="Local experiment-tracking daemon.")
    parser.add_argument("--version", action="version", version=f"trackiod {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="data directory (TRACKIOD_HOME)")
    common.add_argument("--log-level", help="daemon log level (TRACKIOD_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (daemon, runs, show, energy, data, attachments):
        group.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trackiod`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, settings_for(args)))
    except FileNotFoundError as exc:  # no database yet, a missing input file: what to fix is in the message
        if args.debug:
            raise
        print(f"trackiod: {exc}", file=sys.stderr)
        return 1
    except TrackiodError as exc:
        if args.debug:
            raise
        print(f"trackiod: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
