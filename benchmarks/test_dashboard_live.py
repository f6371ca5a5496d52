"""The dashboard's live-poll budget (issue 15): a poll that finds nothing new costs at most 2 KB on the wire.

The page polls ``/api/runs?updated_after=T`` every ``TRACKIOD_DASHBOARD_POLL_INTERVAL_S``; when no run changed,
nothing else is asked (no chart request). Measured in headless Chromium on the charts page of finished runs:
every response between the page being ready and N polls later, body plus status line and headers, divided by
the polls. The peer figure is the first page load's bytes, to say what a poll saves.

The page-ready (100 runs x 10 metrics x 100k points) and 10,000-run table budgets are in
benchmarks/test_dashboard.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.test_dashboard import _write_runs
from tests.support.dashboard import settings_for

POLL_BUDGET_BYTES = 2048.0
POLLS = 6


def _wire_bytes(response: Any) -> int:
    """A response's size on the wire without compression: status line, headers, body."""
    head = 17 + sum(len(h["name"]) + len(h["value"]) + 4 for h in response.headers_array()) + 2
    try:
        return head + len(response.body())
    except Exception:  # a response without a body (a redirect): its head alone
        return head


@pytest.mark.benchmark(group="dashboard")
def test_idle_live_poll_bytes(benchmark: Any, tmp_path: Path, figures: Any, mode: Any) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (scripts/setup.sh installs it as root)")
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS

    test = "dashboard: idle live poll"
    runs = mode.size("page_runs")
    home = tmp_path / "home"
    _write_runs(home, "live", runs, 4, 1000)
    from trackiod.dashboard.app import DashboardServer

    server = DashboardServer(settings_for(home, dashboard_poll_interval_s=0.2), port=0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            seen: dict[str, list[tuple[str, int]]] = {"load": [], "polls": []}
            phase = ["load"]
            page.on("response", lambda r: seen[phase[0]].append((r.url, _wire_bytes(r))))
            page.goto(f"{base}/?project=live")
            page.wait_for_selector("body[data-ready='1']")
            loaded = sum(b for _, b in seen["load"])
            phase[0] = "polls"
            polled = seen["polls"]
            deadline = time.monotonic() + 30
            while sum("updated_after=" in u for u, _ in polled) < POLLS and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            polls = sum("updated_after=" in u for u, _ in polled)
            assert polls >= POLLS, f"only {polls} polls in 30 s"
            assert not [u for u, _ in polled if "/api/chart" in u], "nothing new: no chart is asked again"
            per_poll = sum(b for _, b in polled) / polls
        finally:
            browser.close()
            server.stop()
    figures.add(test, "runs on the page", runs, "runs")
    figures.budget(test, "bytes per poll with nothing new", per_poll, "B", POLL_BUDGET_BYTES)
    figures.add(test, "peer: the first page load", loaded, "B")
    figures.add(test, "poll / page load", per_poll / loaded, "x")
    benchmark.pedantic(lambda: None, rounds=1)
    figures.check(test)
