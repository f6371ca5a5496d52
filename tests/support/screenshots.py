"""Screenshots of the dashboard's views from the browser tests, kept as test artifacts to look at.

They go to ``TRACKIOD_SCREENSHOTS`` when set (CI can upload that folder), else to a folder under the system's
temporary directory, so a test run leaves nothing in the worktree.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def screenshot_dir() -> Path:
    chosen = os.environ.get("TRACKIOD_SCREENSHOTS")
    folder = Path(chosen) if chosen else Path(tempfile.gettempdir()) / "trackiod-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_view(page: Any, name: str, full_page: bool = False) -> Path:
    """Save the page as ``name``.png in the screenshot folder; returns its path."""
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
