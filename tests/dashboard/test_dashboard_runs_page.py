"""The runs page's loading (issue 15 budget: 10,000 runs drawn in 300 ms): what makes it fast, checked in a browser.

- the runs are asked for by index.html before the modules load, not by app.js after (the answer was waited for
  after ~200 ms of module loading);
- the scripts and stylesheets are named by their content (``?v=``) and kept by the browser: a second visit loads
  none of them again (each navigation asked for all 13 again);
- the table's rows draw only the columns in view (a wide table drew every cell of its 50 visible rows); the header
  keeps every column, and scrolling sideways draws the columns come into view, aligned with their header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import READY
from tests.support.dashboard import settings_for
from tests.support.screenshots import save_view

RUNS = 300
CONFIG_KEYS = 24  # the table shows at most 24 of each


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard server alone over 300 runs with 24 config and 10 summary keys (a table 5,000 px wide)."""
    from trackiod.dashboard.app import DashboardServer
    from trackiod.store.writer import Store

    home = tmp_path_factory.mktemp("wide") / "home"
    home.mkdir(mode=0o700)
    store = Store(home / "trackiod.db")
    with store.conn:
        for r in range(RUNS):
            config = {f"k{i:02d}": r * i for i in range(CONFIG_KEYS)}
            row = store.create_run("wide", f"r{r:04d}", f"run-{r}", {}, config, "host", 1)
            summary = {f"m{i}": r + i / 10 for i in range(10)}
            store.update_run(int(row["id"]), state="finished", summary=json.dumps(summary), last_step=9)
    store.close()
    server = DashboardServer(settings_for(home), port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.mark.browser
def test_runs_are_asked_for_before_the_modules_run(wide: str, page: Any) -> None:
    page.goto(f"{wide}/?project=wide&view=runs&live=0")
    page.wait_for_selector(READY)
    timing = page.evaluate(
        """() => ({
            runs: performance.getEntriesByType('resource').filter(e => e.name.includes('/api/runs?'))
                .map(e => e.startTime),
            start: performance.getEntriesByName('start')[0].startTime,
        })"""
    )
    assert len(timing["runs"]) == 1, "one request for the runs: app.js takes index.html's answer"
    assert timing["runs"][0] < timing["start"], timing


@pytest.mark.browser
def test_scripts_are_kept_by_the_browser_between_visits(wide: str, page: Any) -> None:
    url = f"{wide}/?project=wide&view=runs&live=0"
    page.goto(url)
    page.wait_for_selector(READY)
    page.goto(url)
    page.wait_for_selector(READY)
    loaded = page.evaluate(
        "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/static/'))"
        ".map(e => [e.name, e.transferSize])"
    )
    assert loaded, "the page's scripts and stylesheets"
    assert all("?v=" in name for name, _ in loaded), loaded
    assert all(size == 0 for _, size in loaded), f"taken from the browser's cache, not the network: {loaded}"


@pytest.mark.browser
def test_rows_draw_the_columns_in_view_and_follow_a_sideways_scroll(wide: str, page: Any) -> None:
    page.goto(f"{wide}/?project=wide&view=runs&live=0")
    page.wait_for_selector(READY)
    table = page.locator("#runs-table")
    head = table.locator(".row.head .cell")
    row = table.locator(".row[data-run]").first
    total = head.count()
    assert total == 1 + 8 + CONFIG_KEYS + 10, "the header names every column"
    drawn = row.locator(".cell:not(.gap)").count()
    assert drawn < total, (drawn, total)
    last = "summary.m9"
    assert row.locator(f".cell[data-col='{last}']").count() == 0, "the far right column is not drawn yet"
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    page.wait_for_function(f"() => document.querySelector(\"#runs-table .row[data-run] .cell[data-col='{last}']\")")
    cell = table.locator(f".row[data-run] .cell[data-col='{last}']").first
    header = table.locator(".row.head .cell", has_text="s:m9")
    assert cell.bounding_box()["x"] == pytest.approx(header.bounding_box()["x"], abs=1), "aligned with its header"
    assert table.locator(".row[data-run]").first.locator(".cell[data-col='name']").count() == 0
    save_view(page, "runs-table-scrolled-right")
