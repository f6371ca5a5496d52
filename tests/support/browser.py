"""Headless Chromium for the dashboard's browser tests and benchmark: its flags, the page-ready mark, screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.daemons import ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach Google's services, which a closed network
# refuses, and it can stall. --no-sandbox: CI runs as root.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = ROOT / "test-output" / "screenshots"
READY = "body[data-ready='1']"


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
