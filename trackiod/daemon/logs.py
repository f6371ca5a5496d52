"""Where the daemon's log goes: its log file, and stderr when it runs in the foreground."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from trackio_shim.settings import TrackiodSettings


def setup_logging(settings: TrackiodSettings, to_stderr: bool) -> None:
    """Log to ``TRACKIOD_HOME/trackiod.log`` (and stderr in the foreground, for journald)."""
    root = logging.getLogger("trackiod")
    root.setLevel(settings.log_level.upper())
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(settings.log_path)]
    if to_stderr and not _is_same_file(sys.stderr, settings.log_path):
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)


def _is_same_file(stream: Any, path: Path) -> bool:
    # An autostarted daemon's stderr is its log file already (so crashes at start are written down).
    try:
        mine, theirs = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
