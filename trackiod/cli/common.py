"""What every command shares: its settings, built once from the flags, and the query-only database reader."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import apsw

from trackio_shim.settings import TrackiodSettings
from trackiod.read.connection import open_reader


def settings_for(args: argparse.Namespace) -> TrackiodSettings:
    """The settings a command runs with: the environment, overridden by whichever of the flags it takes."""
    return TrackiodSettings.load(
        home=args.home,
        log_level=args.log_level,
        flush_interval_s=getattr(args, "flush_interval", None),
        sample_interval_s=getattr(args, "sample_interval", None),
        dashboard=True if getattr(args, "dashboard", False) else None,
        listen=getattr(args, "listen", None),
        forward=getattr(args, "forward", None),
        dashboard_host=getattr(args, "host", None),
        dashboard_port=getattr(args, "port", None),
        dashboard_token=getattr(args, "token", None),
        dashboard_open_browser=False if getattr(args, "no_browser", False) else None,
    )


@contextmanager
def reader(settings: TrackiodSettings) -> Iterator[apsw.Connection]:
    """A query-only connection to the database, closed afterwards; works with the daemon running or stopped.

    Raises:
        FileNotFoundError: nothing was ever logged under ``settings.home`` (the CLI prints it as one line, exit 1).
    """
    conn = open_reader(settings.db_path)
    try:
        yield conn
    finally:
        conn.close()
